"""Serving benchmark: closed-loop load on /query, the Serve graph against a one-request-at-a-time baseline.

(No `from __future__ import annotations`: FastAPI must resolve the baseline's local request model.)

    python -m bench.serve --index INDEX_DIR [--out bench/results] [--seconds 45] [--concurrency 1 4 16 64] [--runs ...]
                          [--repeat 3] [--label NAME]

Runs, each against a fresh server process on loopback:
  baseline      one FastAPI process calling the same answer pipeline in-process (rag.answering), one request at a time
  serve-batch   `rag serve` with its defaults (dynamic batching in the generator)
  serve-nobatch `rag serve` with generator max_batch_size 1
At concurrency 1, 4, 16 and 64, each of N clients sends its next request as soon as the last one
ends, for --seconds; a 503 is counted as rejected and retried after a short pause. Time to first
token and the gaps between streamed tokens (inter-token latency) are measured with streamed chat
completions on the Serve runs, and a burst: while 4 answers stream, 12 more requests arrive at once;
the running answers' longest gap between tokens is how long the burst froze them. The whole set runs --repeat times
(each against fresh servers); the
summary gives each figure's median and range over the repeats, and ratios to the baseline are taken
within each repeat. Writes serve[-LABEL].json and serve[-LABEL].png.
"""

import argparse
import asyncio
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.harness import QUESTIONS, free_port, percentile, plot_spread, spread, start_server, stop_server, wait_ready
from bench.paths import RESULTS

CONCURRENCY = [1, 4, 16, 64]
RUNS = ("baseline", "serve-batch", "serve-nobatch")


def baseline_app(index: str, default_tokens: int):
    """The single-process version: the same core code on one worker thread, so requests run strictly one at a time.

    The models are loaded on that thread too (rag.models.ModelThread explains why).
    """
    from fastapi import FastAPI
    from pydantic import BaseModel

    from rag.answering import local_pipeline
    from rag.config import Settings
    from rag.llm.engines import load_engine
    from rag.model_thread import ModelThread
    from rag.search import Searcher
    from rag.types import AnswerRequest

    settings = Settings()
    worker = ModelThread("baseline")
    searcher = worker.submit(Searcher.from_index_dir, index, settings).result()
    pipeline = local_pipeline(searcher, worker.submit(load_engine, settings.llm).result())
    app = FastAPI()

    class Query(BaseModel):
        question: str
        max_tokens: int = default_tokens

    @app.get("/readyz")
    def ready() -> dict:
        return {"status": "ready"}

    @app.post("/query")
    async def query(q: Query) -> dict:
        request = AnswerRequest(q.question, max_tokens=q.max_tokens)
        a = await asyncio.get_running_loop().run_in_executor(worker, lambda: asyncio.run(pipeline.answer(request)))
        return {"answer": a.text, "citations": [c.file for c in a.chunks]}

    return app


async def closed_loop(url: str, concurrency: int, seconds: float, stream: bool = False) -> dict:
    """N clients, each sending its next request when the last ends, until ``seconds`` have passed."""
    import httpx

    latencies: list[float] = []
    ttfts: list[float] = []
    gaps: list[float] = []  # between consecutive streamed deltas of one answer
    rejected = errors = 0
    stop_at = time.monotonic() + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        nonlocal rejected, errors
        n = i
        while time.monotonic() < stop_at:
            question = QUESTIONS[n % len(QUESTIONS)]
            n += concurrency
            started = time.perf_counter()
            try:
                if stream:
                    body = {"messages": [{"role": "user", "content": question}], "stream": True}
                    async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                        if r.status_code != 200:
                            rejected += r.status_code == 503
                            errors += r.status_code != 503
                            await asyncio.sleep(0.5)
                            continue
                        arrivals: list[float] = []
                        async for line in r.aiter_lines():
                            _token_times(line, arrivals)
                        ttfts.append(arrivals[0] - started)
                        # The last event carries the source list, sent at once after the answer: not a token gap.
                        gaps.extend(b - a for a, b in itertools.pairwise(arrivals[:-1]))
                else:
                    r = await http.post(f"{url}/query", json={"question": question})
                    if r.status_code != 200:
                        rejected += r.status_code == 503
                        errors += r.status_code != 503
                        await asyncio.sleep(0.5)
                        continue
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency + 4)) as http:
        await asyncio.gather(*(client(i, http) for i in range(concurrency)))
    wall = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "completed": len(latencies),
        "rejected_503": rejected,
        "errors": errors,
        "wall_s": wall,
        "rps": len(latencies) / wall,
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "p99_s": percentile(latencies, 99),
        **(
            {
                "ttft_p50_s": percentile(ttfts, 50),
                "ttft_p95_s": percentile(ttfts, 95),
                "itl_p50_s": percentile(gaps, 50),
                "itl_p95_s": percentile(gaps, 95),
                "itl_p99_s": percentile(gaps, 99),
                "itl_max_s": max(gaps, default=None),
            }
            if stream
            else {}
        ),
    }


def _token_times(line: str, times: list[float]) -> None:
    """The arrival time of a streamed event that carries text (not the opening role-only event)."""
    if line.startswith("data: {") and '"content": ""' not in line:
        times.append(time.perf_counter())


async def burst(url: str, running: int = 4, arriving: int = 12, tokens: int = 128) -> dict:
    """``running`` answers stream; once each has three tokens out, ``arriving`` requests come at once. Returns the
    running answers' longest gap between tokens after the burst, and the newcomers' time to first token."""
    import httpx

    streaming = asyncio.Event()
    ready = 0

    async def stream(i: int, http: httpx.AsyncClient, signal: bool) -> list[float]:
        nonlocal ready
        body = {
            "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            "stream": True,
            "max_tokens": tokens,
        }
        times = [time.perf_counter()]
        async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            async for line in r.aiter_lines():
                _token_times(line, times)
                if signal and len(times) == 4:
                    ready += 1
                    if ready == running:
                        streaming.set()
        return times

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=running + arriving + 4)) as http:
        runners = [asyncio.create_task(stream(i, http, True)) for i in range(running)]
        await streaming.wait()
        burst_at = time.perf_counter()
        newcomers = await asyncio.gather(*(stream(running + i, http, False) for i in range(arriving)))
        runs = await asyncio.gather(*runners)
    # The last event of each answer is its source list, sent at once: not a gap between tokens.
    stalls = [max((b - a for a, b in itertools.pairwise(t[1:-1]) if b > burst_at), default=0.0) for t in runs]
    ttfts = [t[1] - t[0] for t in newcomers if len(t) > 1]
    return {
        "running": running,
        "arriving": arriving,
        "stall_max_s": max(stalls),
        "stalls_s": stalls,
        "newcomer_ttft_p50_s": percentile(ttfts, 50),
        "newcomer_ttft_max_s": max(ttfts, default=None),
    }


def bench_server(kind: str, index: str, seconds: float, max_tokens: int, levels: list[int]) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(kind, index, port, max_tokens)
    try:
        wait_ready(url, proc)
        asyncio.run(closed_loop(url, 2, 5))  # warm-up: first batches, caches
        result: dict[str, Any] = {"query": []}
        for c in levels:
            row = asyncio.run(closed_loop(url, c, seconds))
            print(
                f"  {kind} c={c}: {row['rps']:.2f} req/s, p95 {row['p95_s']}, "
                f"503s {row['rejected_503']}, errors {row['errors']}",
                flush=True,
            )
            result["query"].append(row)
        if kind != "baseline":
            result["stream"] = [asyncio.run(closed_loop(url, c, seconds, stream=True)) for c in (1, 16) if c in levels]
            for row in result["stream"]:
                print(
                    f"  {kind} c={row['concurrency']} streamed: TTFT p95 {row['ttft_p95_s']}, "
                    f"inter-token p95 {row['itl_p95_s']}, max {row['itl_max_s']}",
                    flush=True,
                )
            result["burst"] = asyncio.run(burst(url))
            print(f"  {kind} burst: running answers froze up to {result['burst']['stall_max_s']:.1f} s", flush=True)
        return result
    finally:
        stop_server(proc)


def summarize(repeats: list[dict]) -> dict:
    """Each figure's median and range over the repeats, per run and concurrency."""
    summary: dict = {}
    for kind in repeats[0]:
        summary[kind] = {}
        for section, keys in (
            ("query", ("rps", "rps_ratio_to_baseline", "p50_s", "p95_s")),
            ("stream", ("ttft_p50_s", "ttft_p95_s", "itl_p50_s", "itl_p95_s", "itl_p99_s", "itl_max_s")),
        ):
            for i, row in enumerate(repeats[0][kind].get(section, [])):
                rows = [r[kind][section][i] for r in repeats]
                entry = summary[kind].setdefault(f"c{row['concurrency']}", {})
                entry.update({key: spread([r.get(key) for r in rows]) for key in keys})
        if "burst" in repeats[0][kind]:
            summary[kind]["burst"] = {
                key: spread([r[kind]["burst"][key] for r in repeats])
                for key in ("stall_max_s", "newcomer_ttft_p50_s", "newcomer_ttft_max_s")
            }
    return summary


LATENCIES = (
    ("ttft_p95_s", "TTFT p95"),
    ("itl_p95_s", "inter-token p95"),
    ("itl_max_s", "inter-token max"),
    ("stall_max_s", "burst stall"),
)


def plot(labelled: dict[str, dict], path: Path) -> None:
    """Throughput (median and range) against concurrency, and the streaming latencies at the highest level, for one
    results file or several side by side (``--compare``: e.g. before and after a change)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    bars = []
    for label, results in labelled.items():
        for kind, levels in results["summary"].items():
            name = f"{label} {kind}".strip()
            xs = sorted(int(c[1:]) for c in levels if c.startswith("c"))
            figures = [levels[f"c{x}"]["rps"] for x in xs]
            if xs:
                plot_spread(ax1, xs, figures, name)
            top = {**(levels[f"c{xs[-1]}"] if xs else {}), **levels.get("burst", {})}
            if kind != "baseline":
                bars.append((name, [top.get(key, {}).get("median") or 0 for key, _ in LATENCIES]))
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("concurrent clients (closed loop)")
    ax1.set_ylabel("/query requests / s (median, range)")
    ax1.set_ylim(bottom=0)
    ax1.legend(fontsize=8)
    ax1.set_title(f"Throughput, {next(iter(labelled.values()))['max_tokens']} new tokens")
    width = 0.8 / max(1, len(bars))
    for i, (name, values) in enumerate(bars):
        ax2.bar([j + i * width for j in range(len(LATENCIES))], values, width, label=name)
    ax2.set_xticks([j + width * (len(bars) - 1) / 2 for j in range(len(LATENCIES))], [t for _, t in LATENCIES])
    ax2.set_yscale("log")
    ax2.set_ylabel("seconds (median of runs, log scale)")
    ax2.set_title("Streaming at the highest concurrency; burst: 12 arrivals while 4 stream")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="*",
        default=CONCURRENCY,
        help="closed-loop levels to run (none: only the burst, on the Serve runs)",
    )
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS, help="which servers to measure")
    parser.add_argument("--repeat", type=int, default=3, help="times to run the whole set, for a median and a range")
    parser.add_argument("--label", help="results go to serve-LABEL.json/png (e.g. before, after)")
    parser.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        metavar="JSON",
        help="plot results files side by side (labelled by their names) into serve-compare.png; runs nothing",
    )
    parser.add_argument("--baseline-server", type=int, help=argparse.SUPPRESS)  # internal: serve the baseline
    args = parser.parse_args()

    if args.compare:
        labelled = {path.stem.removeprefix("serve-"): json.loads(path.read_text()) for path in args.compare}
        plot(labelled, args.out / "serve-compare.png")
        return

    if args.baseline_server:
        import uvicorn

        uvicorn.run(
            baseline_app(args.index, args.max_tokens), host="127.0.0.1", port=args.baseline_server, log_level="warning"
        )
        return

    results = {
        "cpus": os.cpu_count(),
        "seconds": args.seconds,
        "max_tokens": args.max_tokens,
        "repeat": args.repeat,
        "repeats": [],
    }
    for i in range(args.repeat):
        runs = {}
        for kind in args.runs:
            print(f"repeat {i + 1}/{args.repeat}: {kind} ...", flush=True)
            runs[kind] = bench_server(kind, args.index, args.seconds, args.max_tokens, args.concurrency)
        base = {r["concurrency"]: r["rps"] for r in runs.get("baseline", {}).get("query", [])}
        for data in runs.values():
            for row in data["query"]:
                row["rps_ratio_to_baseline"] = (
                    row["rps"] / base[row["concurrency"]] if base.get(row["concurrency"]) else None
                )
        results["repeats"].append(runs)
    results["summary"] = summarize(results["repeats"])
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"serve-{args.label}" if args.label else "serve"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    plot({args.label or "": results}, args.out / f"{name}.png")

    def fmt(figure: dict) -> str:
        if figure["median"] is None:
            return "-"
        return f"{figure['median']:.2f} [{figure['min']:.2f}-{figure['max']:.2f}]"

    print(f"median [min-max] over {args.repeat} runs")
    for kind, levels in results["summary"].items():
        for level, figures in levels.items():
            line = ", ".join(f"{key} {fmt(figure)}" for key, figure in figures.items())
            print(f"{kind:<15}{level:>5}  {line}")


if __name__ == "__main__":
    main()
