"""What the serving benchmarks share: the questions they ask, a server started on loopback and stopped again, and the
median and spread of repeated runs. (bench/serve.py, soak.py, cb_compare.py and collections.py import it.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

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
        cmd = [sys.executable, str(REPO / "bench" / "serve.py"), "--baseline-server", str(port), "--index", index, "--max-tokens", str(max_tokens)]
    else:
        overrides = [f"serve.port={port}", f"llm.max_new_tokens={max_tokens}"]
        if kind == "serve-nobatch":
            overrides.append("serve.generator.max_batch_size=1")
        cmd = [sys.executable, "-m", "cli.main", "serve", "--index", index]
        for o in overrides:
            cmd += ["--set", o]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


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
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def spread(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "runs": 0}
    ordered = sorted(values)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {"median": median, "min": ordered[0], "max": ordered[-1], "runs": len(ordered)}
