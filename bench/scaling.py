"""What an index costs as it grows: bytes per chunk and search time per query for flat, IVF and IVF-PQ indexes.

    python -m bench.scaling --index INDEX_DIR [--vectors 1000000] [--runs 3] [--out bench/results]

The vectors are the index's own embeddings, resampled with a little noise up to --vectors (so they keep the
neighbourhoods real text has, which random vectors would not), queried with other resampled vectors. Each index
kind is built by the project's own rag.store.vectors.build_index; search is timed one query at a time on one thread (a
core's share), --runs times, and recall@10 is measured against the flat index. Also measured on the real index:
bytes per chunk in the chunk store (on disk, in memory) and in the BM25 index. Writes scaling.json and scaling.png;
docs/scaling.md turns these into a 1-million-page plan.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc
from pathlib import Path

import faiss
import numpy as np

from bench.paths import RESULTS
from rag.config import IndexConfig, Settings
from rag.store.files import CHUNKS_FILE
from rag.store.vectors import build_index
from rag.store.versions import open_index

QUERIES = 50
K = 10
RERANK = 100


def resample(base: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.05) -> np.ndarray:
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):  # in slices: the noise for a million rows at once would double the peak
        rows = min(100_000, n - start)
        block = base[rng.integers(0, len(base), rows)] + rng.normal(0, noise, (rows, base.shape[1])).astype(np.float32)
        out[start : start + rows] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def searcher(index: faiss.Index, vectors: np.ndarray, rerank: int):
    """Top K of one query: the index's own, or its top ``rerank`` re-scored with the whole vectors (which need not be
    in memory: a memory-mapped embeddings.npy serves, reading ``rerank`` rows per query)."""

    def search(q: np.ndarray) -> np.ndarray:
        if not rerank:
            return index.search(q[None, :], K)[1][0]
        candidates = index.search(q[None, :], rerank)[1][0]
        candidates = candidates[candidates >= 0]
        return candidates[np.argsort(-(vectors[candidates] @ q))[:K]]

    return search


def time_search(search, queries: np.ndarray, runs: int) -> list[float]:
    """Milliseconds per query, one query at a time, median over the queries of each run."""
    per_run = []
    for _ in range(runs):
        times = []
        for q in queries:
            started = time.perf_counter()
            search(q)
            times.append((time.perf_counter() - started) * 1000)
        per_run.append(statistics.median(times))
    return per_run


def chunk_store_costs(index_dir: str) -> tuple[dict, np.ndarray]:
    """Bytes per chunk of the real index (the chunk table on disk and loaded, the BM25 index built over it), and its
    vectors."""
    from rag.store.files import search_texts
    from rag.store.lexical import Bm25

    store = open_index(index_dir)
    n = len(store.chunks)
    tracemalloc.start()
    bm25 = Bm25.build(search_texts(store.read()))
    bm25_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del bm25
    return {
        "chunks": n,
        "pages": sum(e.pages for e in store.manifest.files),
        "chunk_store_disk_bytes_per_chunk": round(sum((p / CHUNKS_FILE).stat().st_size for p in store.segments) / n, 1),
        "chunk_store_memory_bytes_per_chunk": round(int(store.chunks.memory_usage(deep=True).sum()) / n, 1),
        "bm25_memory_bytes_per_chunk": round(bm25_bytes / n, 1),
        "embedding_dim": store.manifest.embedding.dim,
    }, np.concatenate([np.asarray(s.vectors, dtype=np.float32) for s in store.segments.values()])


def retriever_costs(index_dir: str, runs: int) -> dict:
    """One retriever's search (hybrid: query embedding, FAISS, BM25, fusion) on the real index, on one thread:
    milliseconds per search by stage, median of each run over bench/harness.py's questions."""
    from bench.harness import QUESTIONS
    from rag.devices import set_cpu_threads
    from rag.search import Searcher

    set_cpu_threads(1)
    searcher = Searcher.from_index_dir(index_dir, Settings())
    searcher.search(QUESTIONS[0], 5)  # loads the encoder, builds BM25
    per_run: list[dict[str, float]] = []
    for _ in range(runs):
        stages: dict[str, list[float]] = {}
        for question in QUESTIONS:
            for stage, ms in searcher.search(question, 5).timings_ms.items():
                stages.setdefault(stage, []).append(ms)
        per_run.append({stage: statistics.median(ms) for stage, ms in stages.items()})
    total = [r["total_ms"] for r in per_run]
    return {
        "mode": searcher.cfg.mode,
        "ms_per_search": round(statistics.median(total), 2),
        "ms_per_search_runs": [round(t, 2) for t in total],
        "stages_ms": {k: round(statistics.median(r[k] for r in per_run), 2) for k in per_run[0]},
        "searches_per_s_per_core": round(1000 / statistics.median(total), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--nlist", type=int, default=1024, help="IVF cells (about the square root of --vectors)")
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--pq-m", type=int, default=48)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    faiss.omp_set_num_threads(1)  # per core: a replica's search is one query on one thread
    store, base = chunk_store_costs(args.index)
    print(json.dumps(store), flush=True)
    retriever = retriever_costs(args.index, args.runs)
    print(json.dumps(retriever), flush=True)
    rng = np.random.default_rng(0)
    vectors = resample(base, args.vectors, rng)
    queries = resample(base, QUERIES, rng)
    kinds = {  # name: (config, candidates re-scored with the whole vectors)
        "flat": (IndexConfig(kind="flat"), 0),
        "ivf": (IndexConfig(kind="ivf", nlist=args.nlist, nprobe=args.nprobe), 0),
        "ivfpq": (IndexConfig(kind="ivfpq", nlist=args.nlist, nprobe=args.nprobe, pq_m=args.pq_m), 0),
        f"ivfpq+rerank{RERANK}": (
            IndexConfig(kind="ivfpq", nlist=args.nlist, nprobe=args.nprobe, pq_m=args.pq_m),
            RERANK,
        ),
    }
    results, truth, built = {}, None, {}
    for name, (cfg, rerank) in kinds.items():
        faiss.omp_set_num_threads(2)  # building may use the machine
        started = time.perf_counter()
        if cfg.kind not in built:
            built = {cfg.kind: build_index(vectors, cfg)[0]}  # one index in memory at a time
        index = built[cfg.kind]
        build_s = time.perf_counter() - started
        faiss.omp_set_num_threads(1)
        search = searcher(index, vectors, rerank)
        ms = time_search(search, queries, args.runs)
        found = [search(q) for q in queries]
        if truth is None:
            truth = found
        recall = float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))
        size = len(faiss.serialize_index(index))
        results[name] = {
            "build_s": round(build_s, 1),
            "bytes": size,
            "bytes_per_vector": round(size / args.vectors, 1),
            "rerank": rerank,
            "ms_per_query_runs": [round(m, 3) for m in ms],
            "ms_per_query": round(statistics.median(ms), 3),
            "recall_at_10": round(recall, 3),
        }
        print(name, json.dumps(results[name]), flush=True)
    for r in results.values():
        r["speedup_vs_flat"] = round(results["flat"]["ms_per_query"] / r["ms_per_query"], 1)
        r["speedup_vs_flat_range"] = [
            round(f / s, 1) for f, s in zip(results["flat"]["ms_per_query_runs"], r["ms_per_query_runs"], strict=True)
        ]
    out = {
        "vectors": args.vectors,
        "nlist": args.nlist,
        "nprobe": args.nprobe,
        "pq_m": args.pq_m,
        "runs": args.runs,
        "queries": QUERIES,
        "threads": 1,
        "chunk_store": store,
        "retriever": retriever,
        "indexes": results,
        "settings_default_kind": Settings().index.kind,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaling.json").write_text(json.dumps(out, indent=2) + "\n")
    plot(out, args.out / "scaling.png")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["indexes"])
    rows = [result["indexes"][n] for n in names]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].bar_label(axes[0].bar(names, [r["bytes_per_vector"] for r in rows], color="tab:blue"), fmt="%.0f")
    axes[0].set_title("bytes per vector")
    spread = [
        [r["ms_per_query"] - min(r["ms_per_query_runs"]) for r in rows],
        [max(r["ms_per_query_runs"]) - r["ms_per_query"] for r in rows],
    ]
    axes[1].bar_label(
        axes[1].bar(names, [r["ms_per_query"] for r in rows], yerr=spread, color="tab:orange", capsize=4), fmt="%.2f"
    )
    axes[1].set_title("ms per query, one thread (median, range of runs)")
    axes[2].bar_label(axes[2].bar(names, [r["recall_at_10"] for r in rows], color="tab:green"), fmt="%.2f")
    axes[2].set_ylim(0, 1.05)
    axes[2].set_title("recall@10 against flat")
    fig.suptitle(
        f"{result['vectors']:,} vectors of dimension {result['chunk_store']['embedding_dim']}, "
        f"nlist {result['nlist']}, nprobe {result['nprobe']}, pq_m {result['pq_m']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
