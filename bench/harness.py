"""What the benchmarks share: the questions the serving ones ask, a server started on loopback and stopped again, the
median and spread of repeated runs, and the command line of a benchmark run per documents folder."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.paths import REPO, RESULTS

QUESTIONS = [
    "What were Apple's total net sales for the three months ended July 1, 2023?",
    "How much did Amazon spend on technology and infrastructure?",
    "What risks does Intel describe about its manufacturing?",
    "What was NVIDIA's data center revenue?",
    "How much cash did Microsoft return to shareholders?",
    "What are Apple's research and development expenses?",
    "How did Amazon's operating income change?",
    "What does Intel say about restructuring?",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kind: str, index: str, port: int, max_tokens: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    if kind == "baseline":
        cmd = [
            sys.executable,
            "-m",
            "bench.serve",
            "--baseline-server",
            str(port),
            "--index",
            index,
            "--max-tokens",
            str(max_tokens),
        ]
    else:
        overrides = [f"serve.port={port}", f"llm.max_new_tokens={max_tokens}"]
        if kind == "serve-nobatch":
            overrides.append("serve.generator.max_batch_size=1")
        cmd = [sys.executable, "-m", "cli.main", "serve", "--index", index]
        for o in overrides:
            cmd += ["--set", o]
    return subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(url)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    # Through this interpreter, so it works without the virtual environment on PATH.
    subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "stop", "--force"], capture_output=True)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def proc_bytes(field: str, path: str = "/proc/self/status") -> int:
    """A field of a /proc file that counts kB, in bytes: this process's VmRSS, VmHWM, RssAnon, RssFile
    (/proc/self/status), or the machine's page cache, Cached (/proc/meminfo)."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in {path}")


def spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "runs": 0}
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {"median": median, "min": ordered[0], "max": ordered[-1], "runs": len(ordered)}


def each_folder(description: str, default_docs: list[Path], measure, name: str, plot, line) -> None:
    """The command line of a benchmark run per documents folder (--docs, --limit, --out): ``measure(folder, limit)``
    for each, ``line(result)`` printed and ``name``.json written as each folder ends (a long run keeps what it has
    measured), then ``plot(results, path)`` draws ``name``.png."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, nargs="+", default=default_docs)
    parser.add_argument("--limit", type=int, help="only the first N files of each folder")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for folder in args.docs:
        results.append(measure(folder, args.limit))
        print(line(results[-1]), flush=True)
        (args.out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / f"{name}.png")


def plot_spread(ax, xs: list, figures: list[dict], label: str) -> None:
    """Medians joined by a line, each with a bar from the min to the max of its runs (``figures``: ``spread()``s)."""
    medians = [f["median"] for f in figures]
    low = [m - f["min"] for m, f in zip(medians, figures, strict=True)]
    high = [f["max"] - m for m, f in zip(medians, figures, strict=True)]
    ax.errorbar(xs, medians, yerr=[low, high], fmt="o-", capsize=4, label=label)


def bar_spread(ax, x: float, figure: dict, color: str, scale: float = 1) -> None:
    """A bar at the median of ``figure`` (a ``spread()``, divided by ``scale``), with a line from its min to max."""
    median = figure["median"] / scale
    ax.bar(x, median, color=color)
    low, high = median - figure["min"] / scale, figure["max"] / scale - median
    ax.errorbar(x, median, yerr=[[low], [high]], color="k", capsize=4)
