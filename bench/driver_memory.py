"""The ingestion driver's peak memory against the size of the run: it should not grow with the corpus, since the
pipeline's tasks write the segments and the driver receives one row per file.

    python -m bench.driver_memory [--docs FOLDER[:N] ...] [--runs 1] [--out bench/results] [--baseline JSON]

Each run is a fresh interpreter that runs `rag ingest`'s job (ingest.job.run_ingest, default settings) over the
folder's first N PDFs (all without :N) into a scratch index, and reports its own peak resident memory (VmHWM: the
driver alone; Ray's workers and the embedding actors are other processes), the chunks and the seconds. Writes
driver_memory.json and driver_memory.png: median, min and max per folder; --baseline draws another run's JSON beside
it (bench/results/driver_memory_before.json: this bench run from a checkout of the code before the pipeline's tasks
wrote the segments, when the driver gathered every chunk and vector and built the index itself).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import proc_bytes, spread
from bench.paths import DATASETS, REPO, RESULTS

DEFAULT = [
    f"{DATASETS / 'sec-10q' / 'docs'}:5",
    str(DATASETS / "sec-10q" / "docs"),
    str(DATASETS / "filings-mixed" / "docs"),
]


def child(folder: str) -> dict:
    """One ingestion in this process, of ``folder`` (``PATH:N``: its first N PDFs)."""
    from ingest.job import run_ingest
    from rag.config import load_settings

    path, _, limit = folder.partition(":")
    with tempfile.TemporaryDirectory(prefix="bench-driver-") as scratch:
        docs = Path(scratch) / "docs"
        docs.mkdir()
        for pdf in sorted(Path(path).glob("*.pdf"))[: int(limit) if limit else None]:
            (docs / pdf.name).symlink_to(pdf.resolve())
        started = time.perf_counter()
        result = run_ingest(docs, Path(scratch) / "index", load_settings(None, []))
        return {
            "files": len(list(docs.iterdir())),
            "pages": result.manifest.run.pages_processed,
            "chunks": result.chunks_total,
            "segments": len(result.manifest.segments),
            "seconds": time.perf_counter() - started,
            "driver_peak_rss_bytes": proc_bytes("VmHWM"),
        }


def measure(folders: list[str], runs: int) -> list[dict]:
    results = []
    for folder in folders:
        samples = []
        for _ in range(runs):
            done = subprocess.run(
                [sys.executable, "-m", "bench.driver_memory", "--child", folder],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=True,
            )
            samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
        first = samples[0]
        results.append(
            {
                "docs": folder,
                **{k: first[k] for k in ("files", "pages", "chunks", "segments")},
                "seconds": spread([s["seconds"] for s in samples]),
                "driver_peak_rss_bytes": spread([s["driver_peak_rss_bytes"] for s in samples]),
            }
        )
        print(json.dumps(results[-1]), flush=True)
    return results


def plot(results: list[dict], path: Path, baseline: list[dict] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.harness import plot_spread

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for label, series in (("driver gathering the chunks (before)", baseline), ("tasks writing segments", results)):
        if not series:
            continue
        scaled = [{k: v / 2**20 for k, v in r["driver_peak_rss_bytes"].items() if k != "runs"} for r in series]
        plot_spread(ax, [r["chunks"] for r in series], scaled, label)
        for r, s in zip(series, scaled, strict=True):
            ax.annotate(f"{r['files']} files", (r["chunks"], s["median"]), textcoords="offset points", xytext=(4, 6))
    ax.legend(loc="lower right")
    ax.set_xlabel("chunks in the run")
    ax.set_ylabel("MiB")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.12)  # room above the highest point for its label
    runs = results[0]["driver_peak_rss_bytes"]["runs"]
    ax.set_title(f"The ingestion driver's peak memory ({runs} run{'s' if runs > 1 else ''} each)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", nargs="+", default=DEFAULT, metavar="FOLDER[:N]")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--baseline", type=Path, help="another run's driver_memory.json, drawn beside")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    results = measure(args.docs, args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "driver_memory.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "driver_memory.png", json.loads(args.baseline.read_text()) if args.baseline else None)


if __name__ == "__main__":
    main()
