"""What a retriever replica pays to take up a version: BM25 built from the chunks when the version is opened (how
every replica loaded one before BM25 was stored with the version) against BM25 stored with it and memory-mapped.

    python -m bench.reload --index INDEX_DIR [--runs 3] [--out bench/results]

Each run opens the index's current version in a fresh interpreter (so neither way finds the other's objects; both
find the files in the page cache, as a replica reloading a version just written does), takes its BM25 either way and
scores one query, and reports the seconds that took and the memory the process grew by. Writes reload.json and
reload.png: median, min and max of --runs runs per way, and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import bar_spread, proc_bytes, spread
from bench.paths import REPO, RESULTS

WAYS = ("built", "stored")
QUERY = "What were total net sales for the quarter?"


def take_up(index: str, way: str) -> dict:
    """One way of taking up the current version, in this process: the store opened, then its BM25."""
    from rag.store.files import search_texts
    from rag.store.lexical import Bm25
    from rag.store.versions import open_index

    before, started = proc_bytes("VmRSS"), time.perf_counter()
    store = open_index(index)
    opened = time.perf_counter()
    bm25 = Bm25.build(search_texts(store.read())) if way == "built" else store.lexical()
    bm25.scores(QUERY)
    done = time.perf_counter()
    return {
        "seconds": done - started,
        "bm25_seconds": done - opened,
        "rss_growth_bytes": proc_bytes("VmRSS") - before,
        "chunks": len(store.chunks),
        "stored": store.manifest.lexical > 0,
    }


def measure(index: str, runs: int) -> dict:
    child = [sys.executable, "-m", "bench.reload", "--child", "--index", index, "--way"]
    samples: dict[str, list[dict]] = {way: [] for way in WAYS}
    for _ in range(runs):
        for way in WAYS:  # interleaved: a noisy moment on a shared machine touches both ways alike
            done = subprocess.run([*child, way], cwd=REPO, capture_output=True, text=True, check=True)
            samples[way].append(json.loads(done.stdout.strip().splitlines()[-1]))
    if not samples["stored"][0]["stored"]:
        raise SystemExit(f"{index}'s current version was written before BM25 was stored with it: run rag ingest")
    figures = {
        way: {key: spread([s[key] for s in samples[way]]) for key in ("seconds", "bm25_seconds", "rss_growth_bytes")}
        for way in WAYS
    }
    return {
        "index": index,
        "chunks": samples["built"][0]["chunks"],
        "runs": runs,
        "ways": figures,
        "built_over_stored": {
            key: figures["built"][key]["median"] / figures["stored"][key]["median"]
            for key in ("seconds", "rss_growth_bytes")
        },
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, key, scale, label in (
        (axes[0], "seconds", 1, "seconds to take up the version"),
        (axes[1], "rss_growth_bytes", 2**20, "memory the process grew by (MB)"),
    ):
        for x, way in enumerate(WAYS):
            bar_spread(ax, x, result["ways"][way][key], "tab:blue" if way == "stored" else "tab:gray", scale)
        ax.set_xticks(range(len(WAYS)), ["BM25 built on load", "BM25 stored, mmapped"])
        ax.set_ylabel(label)
    fig.suptitle(f"Taking up a version of {result['chunks']} chunks (median, min-max of {result['runs']} runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--way", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(take_up(args.index, args.way)))
        return
    result = measure(args.index, args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reload.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "reload.png")
    print(json.dumps(result["built_over_stored"]))


if __name__ == "__main__":
    main()
