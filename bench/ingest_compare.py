"""Ingestion throughput of this tree against an earlier revision, on the same documents, in one run.

    python -m bench.ingest_compare [--before 2fc7653] [--runs 3] [--docs ../shared/datasets/sec-10q/docs]

Each run is `rag ingest` as a fresh process (its own local Ray), timed wall-clock from start to exit.
The two revisions alternate (before, after, before, after, ...) so that drift in a shared machine's
load falls on both. The earlier revision runs from a git worktree. Writes bench/results/
ingest_compare.{json,png}: median and spread of each, and the ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.paths import DATASETS, REPO, RESULTS

DEFAULT_DOCS = DATASETS / "sec-10q" / "docs"


def cli_module(tree: Path) -> str:
    return "cli.main" if (tree / "cli" / "main.py").is_file() else "rag.cli"


def ingest_once(tree: Path, docs: Path, index_dir: Path) -> dict:
    # -m with the tree as working directory: that tree's packages come first on sys.path.
    cmd = [sys.executable, "-m", cli_module(tree), "ingest", str(docs), "--index", str(index_dir)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} in {tree} failed:\n{proc.stderr[-3000:]}")
    from rag.store.versions import current_manifest  # reads an older tree's unversioned index too

    manifest = current_manifest(index_dir)
    pages = sum(e.pages for e in manifest.files)
    return {
        "wall_seconds": round(wall, 2),
        "pages": pages,
        "chunks": manifest.index.vectors,
        "pages_per_s": round(pages / wall, 3),
    }


def summarise(runs: list[dict]) -> dict:
    walls = [r["wall_seconds"] for r in runs]
    return {
        "runs": runs,
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "max_s": max(walls),
        "median_pages_per_s": statistics.median(r["pages_per_s"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="2fc7653", help="the revision to compare with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-ingest-compare-"))
    before_tree = work / "before"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(before_tree), args.before],
        check=True,
        capture_output=True,
    )
    trees = {"before": before_tree, "after": REPO}
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    try:
        for i in range(args.runs):
            for name, tree in trees.items():
                result = ingest_once(tree, args.docs.resolve(), work / f"{name}-{i}")
                runs[name].append(result)
                print(f"{name} run {i + 1}: {result['wall_seconds']:.1f} s, {result['chunks']} chunks", flush=True)
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before_tree)], capture_output=True)
    results = {
        "docs": str(args.docs),
        "before_revision": args.before,
        "cpus": os.cpu_count(),
        **{name: summarise(r) for name, r in runs.items()},
    }
    results["after_over_before_time"] = round(results["after"]["median_s"] / results["before"]["median_s"], 3)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ingest_compare.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "ingest_compare.png")
    print(
        f"median before {results['before']['median_s']:.1f} s, after {results['after']['median_s']:.1f} s: "
        f"after takes {results['after_over_before_time']:.2f}x the time"
    )


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    names = ["before", "after"]
    for x, name in enumerate(names):
        walls = [r["wall_seconds"] for r in results[name]["runs"]]
        ax.scatter([x] * len(walls), walls, color="#3b7dd8", zorder=3)
        ax.hlines(results[name]["median_s"], x - 0.2, x + 0.2, color="k")
    ax.set_xticks(range(2), [f"before ({results['before_revision']})", "after (this tree)"])
    ax.set_ylim(0, None)
    ax.set_ylabel("wall seconds, start to exit")
    ax.set_title(
        f"rag ingest, {results['after']['runs'][0]['pages']} pages\n"
        f"median time after/before: {results['after_over_before_time']:.2f}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
