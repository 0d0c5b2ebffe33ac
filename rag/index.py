"""The index on disk: FAISS vectors, the chunk store and the manifest, written by ingestion, read by serving and eval.

An index directory holds:
    faiss.index      vectors, row i of the chunk store is FAISS id i
    chunks.parquet   one row per chunk: chunk_id, file, page (1-based), chunk_index, text, char_start,
                     char_end, doc_hash
    embeddings.npy   the vectors again, float32, so an incremental run can rebuild the index
                     without re-embedding what did not change
    manifest.json    config, model and dimension, one entry per input file
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from rag.config import IndexConfig

log = logging.getLogger(__name__)

INDEX_FILE = "faiss.index"
CHUNKS_FILE = "chunks.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
MANIFEST_FILE = "manifest.json"

CHUNK_COLUMNS = ["chunk_id", "file", "page", "chunk_index", "text", "char_start", "char_end", "doc_hash"]

# faiss warns below about 39 training points per IVF cell; fewer cells beat a badly trained quantizer.
_MIN_POINTS_PER_CELL = 39


def faiss_gpus() -> int:
    """GPUs faiss can use: zero with faiss-cpu, or with faiss-gpu on a machine without CUDA."""
    get = getattr(faiss, "get_num_gpus", None)
    return get() if get else 0


def _empty_index(dim: int, cfg: IndexConfig, n: int) -> faiss.Index:
    if cfg.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = cfg.hnsw_ef_search
        return index
    nlist = min(cfg.nlist, n // _MIN_POINTS_PER_CELL)
    if cfg.kind == "ivf" and nlist >= 1:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = min(cfg.nprobe, nlist)
        return index
    if cfg.kind == "ivf":
        log.warning("only %d vectors: too few to train IVF cells, building an exact index instead", n)
    return faiss.IndexFlatIP(dim)


def build_index(vectors: np.ndarray, cfg: IndexConfig) -> tuple[faiss.Index, str]:
    """Build the configured index over ``vectors``; returns it (on the CPU, ready to save) and where it was built."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = _empty_index(vectors.shape[1], cfg, len(vectors))
    # faiss has no GPU HNSW; everything else trains and adds on the GPU when one is there.
    on_gpu = cfg.use_gpu == "auto" and faiss_gpus() > 0 and not isinstance(index, faiss.IndexHNSWFlat)
    if on_gpu:
        resources = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(resources, 0, index)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    if on_gpu:
        index = faiss.index_gpu_to_cpu(index)
    return index, "gpu" if on_gpu else "cpu"


@dataclass
class Hit:
    row: int  # position in the chunk store
    score: float


class IndexStore:
    """A loaded index directory: search vectors, read chunks and the manifest."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        manifest_path = self.root / MANIFEST_FILE
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{self.root} is not an index directory: {MANIFEST_FILE} is missing")
        self.manifest = json.loads(manifest_path.read_text())
        self.chunks = pd.read_parquet(self.root / CHUNKS_FILE)
        self.index = faiss.read_index(str(self.root / INDEX_FILE))
        if self.index.ntotal != len(self.chunks):
            raise ValueError(f"{self.root}: {self.index.ntotal} vectors but {len(self.chunks)} chunks")

    @property
    def embedding_model(self) -> str:
        return self.manifest["embedding"]["model"]

    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        k = min(k, self.index.ntotal)
        if k == 0:
            return [[] for _ in range(len(queries))]
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return [
            [Hit(int(r), float(s)) for r, s in zip(row_ids, row_scores) if r >= 0]
            for row_ids, row_scores in zip(rows, scores)
        ]
