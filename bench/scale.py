"""An index far larger than the shared data, served from disk: its resident memory, its hybrid search time and its dense
recall against exact search.

    python -m bench.scale --source INDEX_DIR --chunks 3750000 --out DIR [--segment-rows 375000] [--runs 3]
                          [--queries 200] [--set index.nlist=1024] [--search-set retrieval.rescore=400] [--cold]
                          [--results bench/results]

The collection is made from the source index's own chunks (the SEC filings'), resampled: each synthetic chunk is a
real one's text, header and metadata, with its vector jittered (Gaussian noise, 0.05 a dimension, renormalised), so
neighbourhoods and term statistics stay those of real text. Files hold as many chunks as the source's files do on
average. It is written as --segment-rows segments through the project's own writer (rag.store.versions; the FAISS
kind by --set index.kind=..., IVF-PQ by default here) into DIR/index, an ordinary index directory that `rag search`,
`rag index versions` and `rag serve` open like any other. An existing DIR/index of the same size is reused.

Then, --runs times, a fresh process opens the index (with the version's settings and --search-set, which need no
rebuild) and searches it one query at a time on one thread: the SEC questions (--queries of them, cycled), embedded
beforehand (query embedding is not timed), in the retrieval mode configured (hybrid; --search-set
retrieval.mode=dense for dense only); it records each search's milliseconds and stages, its resident memory
(anonymous, and file pages mapped: the page cache's share of it) and the machine's page cache before and after.
Dense recall@10 compares the index's top 10 (its compressed codes re-scored, retrieval.rescore) with an exact search
over the stored vectors. Writes scale.json and scale.png; with --cold (root), the page cache is emptied before each
run, as after a reboot, and they are scale-cold.json and scale-cold.png (--name names them otherwise).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.harness import bar_spread, proc_bytes, spread
from bench.paths import DATASETS, RESULTS

NOISE = 0.05
K = 10
SEED = 0


def build(source: Path, root: Path, chunks: int, segment_rows: int, overrides: list[str]) -> dict:
    """The synthetic collection of ``chunks`` chunks in segments of ``segment_rows``, published as one version."""
    from rag.clock import utc_now
    from rag.config import load_settings
    from rag.doc_metadata import FIELDS
    from rag.store.files import FORMAT, EmbeddingInfo, FileEntry, IndexInfo, Manifest, RunStats
    from rag.store.versions import IndexDir, open_index

    settings = load_settings(None, ["index.kind=ivfpq", *overrides])
    base = open_index(source)
    texts = base.read()
    vectors = np.concatenate([np.asarray(s.vectors, dtype=np.float32) for s in base.segments.values()])
    per_file = max(1, round(len(texts) / texts["file"].nunique()))
    rng = np.random.default_rng(SEED)
    model = base.manifest.embedding.model
    started = time.perf_counter()
    entries: list = []
    written: list = []
    with IndexDir(root).writing(purpose="a synthetic collection") as writer:
        for start in range(0, chunks, segment_rows):
            n = min(segment_rows, chunks - start)
            picked = rng.integers(0, len(texts), n)
            part = texts.iloc[picked].reset_index(drop=True)
            ids = np.arange(start, start + n)
            part["file"] = [f"synthetic-{i // per_file:07d}.pdf" for i in ids]
            part["chunk_index"] = ids % per_file
            part["chunk_id"] = [f"syn:{i}" for i in ids]
            part["doc_hash"] = [f"{i // per_file:064x}" for i in ids]
            jittered = vectors[picked] + rng.normal(0, NOISE, (n, vectors.shape[1])).astype(np.float32)
            jittered /= np.linalg.norm(jittered, axis=1, keepdims=True)
            # Built on the first segment's training, as a collection's later segments are.
            written.append(writer.add_segment(part, jittered, settings.index, model, written))
            firsts = part.drop_duplicates("file")
            counts = part["file"].value_counts()
            entries += [
                FileEntry(
                    file=row.file,
                    status="indexed",
                    doc_hash=row.doc_hash,
                    size_bytes=0,
                    pages=1,
                    chunks=int(counts[row.file]),
                    metadata=_metadata(row, FIELDS),
                )
                for row in firsts.itertuples()
            ]
            print(f"segment {len(written)}: {start + n:,} of {chunks:,} chunks, {time.perf_counter() - started:.0f} s")
        seconds = round(time.perf_counter() - started, 1)
        manifest = Manifest(
            version=FORMAT,
            created_at=utc_now(),
            docs_dir=str(root.parent / "docs"),
            fingerprint="synthetic",
            settings=settings.model_dump(mode="json"),
            embedding=EmbeddingInfo(**base.manifest.embedding.model_dump()),
            index=IndexInfo(kind=settings.index.kind, built_on="cpu", vectors=chunks),
            files=_merged(entries),
            run=RunStats(
                seconds=seconds,
                files_processed=0,
                pages_processed=0,
                chunks_embedded=0,
                pages_per_s=0,
                chunks_per_s=round(chunks / seconds, 1),
            ),
            segments=[w.ref for w in written],
        )
        writer.publish_manifest(manifest, keep=1)
    return {"build_s": seconds, "segments": len(written)}


def _metadata(row, fields) -> dict:
    """A chunk row's metadata as the manifest keeps it: JSON values, what is missing left out."""
    values = {f: getattr(row, f) for f in fields}
    values = {f: v.tolist() if isinstance(v, np.ndarray | np.generic) else v for f, v in values.items()}
    return {f: v for f, v in values.items() if v is not None and v == v}  # NaN: a gap in a float column


def _merged(entries: list) -> list:
    """One entry per file: a file cut by a segment boundary has chunks in both."""
    by_file: dict = {}
    for e in entries:
        if e.file in by_file:
            by_file[e.file].chunks += e.chunks
        else:
            by_file[e.file] = e
    return list(by_file.values())


def serve_once(root: Path, queries: Path, overrides: list[str]) -> dict:
    """One process's run (python -m bench.scale --serve): open, search every query (the version's settings, then
    ``overrides``), report."""
    import faiss

    from rag.config import Settings, load_settings
    from rag.search import EmbeddedQuery, Searcher
    from rag.store.versions import open_index

    faiss.omp_set_num_threads(1)
    cached_before = proc_bytes("Cached", "/proc/meminfo")
    loaded = json.loads(queries.read_text())
    started = time.perf_counter()
    store = open_index(root)
    settings = load_settings(None, overrides, base=Settings.model_validate(store.manifest.settings))
    # The encoder a replica holds is loaded and counted; the queries come embedded, so it is not timed.
    searcher = Searcher.over(store, settings)
    open_s = time.perf_counter() - started
    after_open = {"anon": proc_bytes("RssAnon"), "file": proc_bytes("RssFile")}
    ms, recall, stages = [], [], []
    for q in loaded:
        vector = np.asarray(q["vector"], dtype=np.float32)
        t = time.perf_counter()
        found = searcher.search(q["question"], K, embedded=EmbeddedQuery(q["question"], vector))
        ms.append((time.perf_counter() - t) * 1000)
        stages.append(found.timings_ms)
        got = {h.row for h in store.search(vector, K, rescore=settings.retrieval.rescore, nprobe=searcher.nprobe)}
        recall.append(len(got & set(q["exact"])) / K)
    return {
        "open_s": round(open_s, 2),
        "ms": ms,
        "mode": searcher.cfg.mode,
        "rescore": settings.retrieval.rescore,
        "nprobe": searcher.nprobe,
        "first_10_ms": ms[:10],  # from a cold page cache (--cold), what the first searches after a reboot cost
        "stage_ms": {k: float(np.median([t.get(k, 0.0) for t in stages])) for k in stages[0]},
        "recall_at_10": float(np.mean(recall)),
        "rss_anon_after_open": after_open["anon"],
        "rss_file_after_open": after_open["file"],
        "rss_anon": proc_bytes("RssAnon"),
        "rss_file": proc_bytes("RssFile"),
        "peak_rss": proc_bytes("VmHWM"),
        "page_cache_before": cached_before,
        "page_cache_after": proc_bytes("Cached", "/proc/meminfo"),
    }


def exact_top(store, vectors: np.ndarray) -> list[list[int]]:
    """The exact top K of each query over the stored vectors, read segment by segment (memory-mapped)."""
    best = [np.empty(0, dtype=np.int64)] * len(vectors)
    scores = [np.empty(0, dtype=np.float32)] * len(vectors)
    offset = 0
    for segment in store.segments.values():
        stored = segment.vectors
        for start in range(0, len(stored), 200_000):
            block = np.asarray(stored[start : start + 200_000], dtype=np.float32) @ vectors.T
            for i in range(len(vectors)):
                top = np.argpartition(-block[:, i], K)[:K]
                rows = np.concatenate([best[i], top + offset + start])
                values = np.concatenate([scores[i], block[top, i]])
                keep = np.argsort(-values)[:K]
                best[i], scores[i] = rows[keep], values[keep]
        offset += len(stored)
    return [b.tolist() for b in best]


def queries(root: Path, count: int, out: Path) -> None:
    """The SEC questions embedded by the index's model, with their exact top K, written to ``out``."""
    from eval.datasets import load_dataset
    from rag.config import Settings
    from rag.embedding import TextEncoder
    from rag.store.versions import open_index
    from rag.types import retrieval_query

    questions = [q.question for q in load_dataset(DATASETS / "sec-10q" / "qna_data.csv")]
    questions = [questions[i % len(questions)] for i in range(count)]
    store = open_index(root)
    cfg = Settings.model_validate(store.manifest.settings).embedding
    encoder = TextEncoder(cfg.model_copy(update={"model": store.manifest.embedding.model}))
    vectors = encoder.encode([retrieval_query(q, ()) for q in questions], query=True).astype(np.float32)
    exact = exact_top(store, vectors)
    out.write_text(
        json.dumps(
            [
                {"question": q, "vector": v.tolist(), "exact": e}
                for q, v, e in zip(questions, vectors, exact, strict=True)
            ]
        )
    )


def drop_page_cache() -> None:
    """Empty the machine's page cache (root only), so that a run reads the index from disk as after a reboot."""
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError as err:
        raise SystemExit(f"--cold needs root to empty the page cache (/proc/sys/vm/drop_caches): {err}") from None


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    bars = {"p50": result["p50_ms"], "p95": result["p95_ms"]}
    for x, f in enumerate(bars.values()):
        bar_spread(axes[0], x, f, "tab:blue")
    axes[0].axhline(100, color="tab:red", linestyle="--", label="target p95 (issue 32: hybrid, 3.75 M chunks)")
    axes[0].set_xticks(range(len(bars)), list(bars))
    axes[0].set_ylabel(f"ms per {result['mode']} search (one thread)")
    memory = {"anonymous": result["rss_anon_bytes"], "file pages mapped": result["rss_file_bytes"]}
    for x, f in enumerate(memory.values()):
        axes[1].bar(x, f["median"] / 2**30, color="tab:gray" if x else "tab:blue")
    axes[1].axhline(2, color="tab:red", linestyle="--", label="target 2 GB (at 3.75 M chunks)")
    axes[1].set_xticks(range(len(memory)), list(memory))
    axes[1].set_ylabel("GiB resident after the queries")
    for ax in axes:  # room above the bars and the target lines for the legend
        ax.set_ylim(0, ax.get_ylim()[1] * 1.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(
        f"{result['chunks']:,} chunks in {result['segments']} segments ({result['index']['kind']}), "
        f"recall@10 {result['recall_at_10']['median']:.3f} (median, min-max of {len(result['runs'])} runs)\n"
        f"page cache: {result['page_cache']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, help="an index whose chunks and vectors are resampled")
    parser.add_argument("--chunks", type=int, default=3_750_000)
    parser.add_argument("--segment-rows", type=int, default=375_000)
    parser.add_argument("--out", type=Path, required=True, help="the collection's folder (DIR/index)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--set", action="append", default=[], help="settings for the build, as rag's --set")
    parser.add_argument(
        "--search-set", action="append", default=[], help="settings for searching (index.nprobe=32), as rag's --set"
    )
    parser.add_argument(
        "--cold", action="store_true", help="empty the page cache before each run (root): the index read from disk"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", help="of the files written in --results (default scale, or scale-cold)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # one measuring process
    args = parser.parse_args()
    root = args.out / "index"
    query_file = args.out / "queries.json"
    if args.serve:
        print(json.dumps(serve_once(root, query_file, args.search_set)))
        return
    from rag.store.versions import current_manifest

    built = None
    if not (root.exists() and current_manifest(root).index.vectors == args.chunks):
        if args.source is None:
            parser.error(f"{root} holds no collection of {args.chunks:,} chunks: give --source to build one")
        built = build(args.source, root, args.chunks, args.segment_rows, args.set)
        query_file.unlink(missing_ok=True)
    if not query_file.exists():
        queries(root, args.queries, query_file)
    runs = []
    for run in range(args.runs):
        if args.cold:
            drop_page_cache()
        done = subprocess.run(
            [sys.executable, "-m", "bench.scale", "--out", str(args.out), "--serve"]
            + [f"--search-set={o}" for o in args.search_set],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise SystemExit(f"the measuring process failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = runs[-1]
        print(
            f"run {run + 1}: p50 {np.percentile(r['ms'], 50):.1f} ms, p95 {np.percentile(r['ms'], 95):.1f} ms, "
            f"RSS {r['rss_anon'] / 2**30:.2f} GiB anonymous + {r['rss_file'] / 2**30:.2f} GiB mapped, "
            f"recall@10 {r['recall_at_10']:.3f}; median ms by stage {r['stage_ms']}"
        )
    manifest = current_manifest(root)
    on_disk = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    result = {
        "chunks": args.chunks,
        "segments": len(manifest.segments),
        "index": manifest.settings["index"],
        "rescore": runs[0]["rescore"],
        "nprobe": runs[0]["nprobe"],
        "search_set": args.search_set,
        "mode": runs[0]["mode"],
        "page_cache": "emptied before each run" if args.cold else "as the machine had it (warm once built or run)",
        "queries": args.queries,
        "threads": 1,
        "built": built,
        "bytes_on_disk": on_disk,
        "p50_ms": spread([float(np.percentile(r["ms"], 50)) for r in runs]),
        "p95_ms": spread([float(np.percentile(r["ms"], 95)) for r in runs]),
        "recall_at_10": spread([r["recall_at_10"] for r in runs]),
        "rss_anon_bytes": spread([r["rss_anon"] for r in runs]),
        "rss_file_bytes": spread([r["rss_file"] for r in runs]),
        "peak_rss_bytes": spread([r["peak_rss"] for r in runs]),
        "open_s": spread([r["open_s"] for r in runs]),
        "runs": [{k: v for k, v in r.items() if k != "ms"} for r in runs],
    }
    args.results.mkdir(parents=True, exist_ok=True)
    name = args.name or ("scale-cold" if args.cold else "scale")
    (args.results / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.results / f"{name}.png")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
