"""Vector search over one index version: the configured FAISS index built over vectors, and ``IndexStore``, one
version loaded (rag.index_files reads and writes its files).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from rag.config import IndexConfig
from rag.doc_metadata import FIELDS, with_header
from rag.index_files import read_chunks, read_faiss, read_manifest, read_vectors

log = logging.getLogger(__name__)

# faiss warns below about 39 training points per IVF cell; fewer cells beat a badly trained quantizer.
_MIN_POINTS_PER_CELL = 39
# Likewise per code of a product quantizer's sub-space (8 bits: 256 codes).
_MIN_POINTS_FOR_PQ = 256 * _MIN_POINTS_PER_CELL


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
    if cfg.kind in ("ivf", "ivfpq") and nlist >= 1:
        quantizer = faiss.IndexFlatIP(dim)
        ivf: faiss.IndexIVF
        if cfg.kind == "ivfpq" and n >= _MIN_POINTS_FOR_PQ:
            if dim % cfg.pq_m:
                raise ValueError(f"index.pq_m {cfg.pq_m} must divide the embedding dimension {dim}")
            ivf = faiss.IndexIVFPQ(quantizer, dim, nlist, cfg.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        else:
            if cfg.kind == "ivfpq":
                log.warning(
                    "only %d vectors: too few to train product quantizers, keeping whole vectors in the IVF cells", n
                )
            ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.nprobe = min(cfg.nprobe, nlist)
        return ivf
    if cfg.kind != "flat":
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
    """One loaded index version (rag.versions.open_index finds the current one): search vectors, read chunks and the
    manifest. Its three parts are checked against each other before it serves."""

    def __init__(self, root: str | Path, version: str = ""):
        self.root = Path(root)
        self.version = version
        self.manifest = read_manifest(self.root)
        self.chunks = read_chunks(self.root)
        self.index = read_faiss(self.root)
        counts = {"manifest": self.manifest.index.vectors, "faiss": self.index.ntotal, "chunks": len(self.chunks)}
        if len(set(counts.values())) > 1:
            raise ValueError(f"{self.root} is inconsistent, not serving it: {counts}")
        # One row per file with its metadata: filters and question matching work on files, not chunks.
        self.files = self.chunks.drop_duplicates("file")[["file", *FIELDS]].reset_index(drop=True)
        self.files = self.files.astype(object).where(self.files.notna(), None)
        for column in ("fiscal_year", "fiscal_quarter"):  # Parquet stores a column with gaps as floats: 2018.0
            self.files[column] = [None if v is None else int(v) for v in self.files[column]]
        # Mapped now, so a version pruned from disk while it is still being served stays readable.
        self.vectors = read_vectors(self.root, mapped=True)

    def search_text(self, row: int) -> str:
        """What was embedded for a chunk: its header, then its text."""
        return with_header(str(self.chunks.at[row, "header"]), str(self.chunks.at[row, "text"]))

    @property
    def embedding_model(self) -> str:
        return self.manifest.embedding.model

    def search(self, query: np.ndarray, k: int, rows: np.ndarray | None = None) -> list[Hit]:
        """The k nearest chunks to one query vector; ``rows``: only among these chunk rows (a filter's selection).

        A selection is applied inside FAISS (an ID selector), so it still returns k hits whenever k rows
        are selected; approximate indexes (IVF, HNSW) that find fewer inside it are completed by an
        exact search over the selected rows' stored vectors.
        """
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        wanted = min(k, self.index.ntotal if rows is None else len(rows))
        if wanted == 0:
            return []
        params = None if rows is None else _search_params(self.index, faiss.IDSelectorBatch(rows.astype(np.int64)))
        scores, ids = self.index.search(query, wanted, params=params)
        hits = [Hit(int(r), float(s)) for r, s in zip(ids[0], scores[0], strict=True) if r >= 0]
        if rows is not None and len(hits) < wanted:
            selected = np.sort(rows)
            exact = np.asarray(self.vectors[selected], dtype=np.float32) @ query[0]
            hits = [Hit(int(selected[i]), float(exact[i])) for i in np.argsort(-exact)[:wanted]]
        return hits


def _search_params(index: faiss.Index, selector) -> faiss.SearchParameters:
    """Search parameters carrying a selector, of the type each index kind requires (keeping its own nprobe/efSearch)."""
    if isinstance(index, faiss.IndexIVF):
        return faiss.SearchParametersIVF(sel=selector, nprobe=index.nprobe)
    if isinstance(index, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=index.hnsw.efSearch)
    return faiss.SearchParameters(sel=selector)
