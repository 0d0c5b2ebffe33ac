"""Soak test: steady closed-loop load on the service, the generator replica's resident memory sampled throughout.

    python -m bench.soak --index INDEX_DIR [--minutes 20] [--concurrency 16] [--out bench/results]

Starts `rag serve` on loopback, finds the generator replica's process (from /readyz?verbose=true),
then keeps --concurrency clients busy for --minutes (each sends its next question, half /query and
half streamed chat, as soon as its last answer ends) while sampling that process's resident memory
every few seconds. Passes when the memory at the end is within 10% of its level after the first two
minutes and every response was a 200. Writes soak.json and soak.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path

from bench.harness import QUESTIONS, free_port, start_server, stop_server, wait_ready
from bench.paths import RESULTS

WARM_S = 120  # memory after this is the reference: model loaded, buffers at their working size


def resident_by_kind(pid: int) -> dict[str, int]:
    """Resident MB by kind of mapping: glibc's heaps (the main one and its 64 MB thread arenas), mappings of their own
    (the KV buffers' shared anonymous ones, and anonymous ones larger than an arena: blocks above malloc's mmap
    threshold, which the kernel merges when adjacent), the rest of the anonymous memory, and files. This is what
    told the KV buffers moving into the heaps (where freeing them returns nothing) from a leak."""
    out = {"heaps_mb": 0, "own_mappings_mb": 0, "other_anon_mb": 0, "files_mb": 0}
    kind = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if not fields[0].endswith(":"):  # a mapping's header: address range, perms, offset, dev, inode[, path]
            start, end = (int(x, 16) for x in fields[0].split("-"))
            path = fields[5] if len(fields) > 5 else ""
            arena = start % (64 << 20) == 0 and end - start <= 64 << 20
            own = path == "/dev/zero" or (not path and end - start > 64 << 20)  # /dev/zero: rag.models.mapped_zeros
            kind = (
                "heaps_mb"
                if path == "[heap]" or (not path and arena)
                else "own_mappings_mb"
                if own
                else "files_mb"
                if path.startswith("/")
                else "other_anon_mb"
                if not path
                else None
            )
        elif fields[0] == "Rss:" and kind:
            out[kind] += int(fields[1]) // 1024
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def load(url: str, concurrency: int, seconds: float, pid: int, sample_s: float) -> dict:
    import httpx

    statuses: Counter[int | str] = Counter()  # HTTP status, or the name of the client's error
    samples: list[dict] = []
    started = time.monotonic()
    stop_at = started + seconds

    async def client(i: int, http: httpx.AsyncClient) -> None:
        n = i
        while time.monotonic() < stop_at:
            question = QUESTIONS[n % len(QUESTIONS)]
            status: int | str
            try:
                if n % 2:
                    body = {"messages": [{"role": "user", "content": question}], "stream": True}
                    async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                        async for _ in r.aiter_lines():
                            pass
                        status = r.status_code
                else:
                    status = (await http.post(f"{url}/query", json={"question": question})).status_code
            except httpx.HTTPError as err:
                status = type(err).__name__
            statuses[status] += 1
            n += concurrency

    async def sampler(http: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            # The KV buffers' width beside the memory: what the cache's share of it should follow.
            details = (await http.get(f"{url}/readyz", params={"verbose": "true"})).json()
            samples.append(
                {
                    "t_s": round(time.monotonic() - started, 1),
                    "rss_mb": round(rss_mb(pid), 1),
                    "answers": sum(statuses.values()),
                    "kv_columns": details.get("generator", {}).get("batching", {}).get("columns"),
                    **resident_by_kind(pid),
                }
            )
            await asyncio.sleep(sample_s)

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency + 4)) as http:
        await asyncio.gather(sampler(http), *(client(i, http) for i in range(concurrency)))
    # Once every client has had its last answer: what the replica keeps when idle again.
    samples.append(
        {
            "t_s": round(time.monotonic() - started, 1),
            "rss_mb": round(rss_mb(pid), 1),
            "answers": sum(statuses.values()),
            "after_load": True,
        }
    )
    return {"samples": samples, "statuses": {str(k): v for k, v in statuses.items()}}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    minutes = [s["t_s"] / 60 for s in samples]
    ax.plot(minutes, [s["rss_mb"] for s in samples], "-", label="generator replica RSS")
    for kind, style, color in (
        ("heaps_mb", "malloc heaps", "tab:purple"),
        ("own_mappings_mb", "own mappings", "tab:green"),
    ):
        points = [(m, s[kind]) for m, s in zip(minutes, samples, strict=True) if kind in s]
        if points:
            ax.plot(*zip(*points, strict=True), "-", color=color, linewidth=0.8, alpha=0.7, label=f"of which {style}")
    reference = result["rss_after_warmup_mb"]
    ax.axhline(reference, color="grey", linestyle=":", label=f"after {WARM_S // 60} min: {reference:.0f} MB")
    ax.axhline(reference * 1.1, color="red", linestyle="--", label="+10%")
    ax.set_xlabel("minutes of closed-loop load")
    ax.set_ylabel("resident memory (MB)")
    ax.set_title(
        f"Soak: {result['concurrency']} clients for {result['minutes']:g} min, {result['answers']} answers, "
        f"statuses {result['statuses']}"
    )
    ax.legend(loc="center right", fontsize=8)
    columns = [(s["t_s"] / 60, s["kv_columns"]) for s in samples if s.get("kv_columns") is not None]
    if columns:
        width = ax.twinx()
        width.plot(*zip(*columns, strict=True), color="tab:orange", alpha=0.5, linewidth=0.8)
        width.set_ylabel("KV buffer columns (orange)")
        width.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True)
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--sample-s", type=float, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server("serve-batch", args.index, port, args.max_tokens)
    try:
        wait_ready(url, proc)
        replica = httpx.get(f"{url}/readyz", params={"verbose": "true"}, timeout=30).json()["generator"]["replica"]
        pid = int(replica.split(":")[1])
        print(f"generator replica pid {pid}; {args.concurrency} clients for {args.minutes:g} min", flush=True)
        result = asyncio.run(load(url, args.concurrency, args.minutes * 60, pid, args.sample_s))
    finally:
        stop_server(proc)
    summarize(result, args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "soak.png")
    print(
        f"RSS after {WARM_S} s {result['rss_after_warmup_mb']:.0f} MB, at the end of the load "
        f"{result['rss_end_mb']:.0f} MB ({result['end_over_warmup'] - 1:+.1%}), peak {result['rss_peak_mb']:.0f} MB, "
        f"idle after it {result['rss_after_load_mb']:.0f} MB; {result['answers']} answers, statuses "
        f"{result['statuses']}; {'PASS' if result['passed'] else 'FAIL'}"
    )


def summarize(result: dict, args: argparse.Namespace) -> None:
    """The criterion: the last sample taken under load within 10% of the 2-minute level, and only 200s. (The sample
    after the load ended is lower, the batch having emptied: it would flatter the figure.)"""
    samples = result["samples"]
    loaded = [s for s in samples if not s.get("after_load")]
    reference = next(s["rss_mb"] for s in loaded if s["t_s"] >= WARM_S)
    end = loaded[-1]["rss_mb"]
    result.update(
        concurrency=args.concurrency,
        minutes=args.minutes,
        max_tokens=args.max_tokens,
        answers=samples[-1]["answers"],
        rss_after_warmup_mb=reference,
        rss_end_mb=end,
        rss_peak_mb=max(s["rss_mb"] for s in loaded),
        rss_after_load_mb=samples[-1]["rss_mb"],
        end_over_warmup=round(end / reference, 4),
        passed=end <= reference * 1.1 and set(result["statuses"]) == {"200"},
    )


if __name__ == "__main__":
    main()
