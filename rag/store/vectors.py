"""FAISS: the configured index built over vectors, and the search parameters each kind takes (rag.store.reader
searches it)."""

from __future__ import annotations

import logging

import faiss
import numpy as np

from rag.config import IndexConfig

log = logging.getLogger(__name__)

# faiss warns below about 39 training points per IVF cell; fewer cells beat a badly trained quantizer.
_MIN_POINTS_PER_CELL = 39
# Likewise per code of a product quantizer's sub-space (8 bits: 256 codes).
_MIN_POINTS_FOR_PQ = 256 * _MIN_POINTS_PER_CELL


def faiss_gpus() -> int:
    """GPUs faiss can use: zero with faiss-cpu, or with faiss-gpu on a machine without CUDA."""
    get = getattr(faiss, "get_num_gpus", None)
    return get() if get else 0


def kind_for(n: int, cfg: IndexConfig) -> str:
    """The kind of index ``build_index`` makes of ``n`` vectors: the configured one (auto: by their number), or a
    simpler one where too few vectors train it."""
    wanted = ("flat" if n < cfg.flat_below else "ivfpq") if cfg.kind == "auto" else cfg.kind
    if wanted in ("ivf", "ivfpq") and n // _MIN_POINTS_PER_CELL < 1:
        return "flat"
    return "ivf" if wanted == "ivfpq" and n < _MIN_POINTS_FOR_PQ else wanted


def _empty_index(dim: int, cfg: IndexConfig, n: int) -> faiss.Index:
    kind = kind_for(n, cfg)
    if kind != cfg.kind and cfg.kind != "auto":
        log.warning("only %d vectors: too few to train %s, building %s instead", n, cfg.kind, kind)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = cfg.hnsw_ef_search
        return index
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    nlist = min(cfg.nlist, n // _MIN_POINTS_PER_CELL)
    quantizer = faiss.IndexFlatIP(dim)
    ivf: faiss.IndexIVF
    if kind == "ivfpq":
        if dim % cfg.pq_m:
            raise ValueError(f"index.pq_m {cfg.pq_m} must divide the embedding dimension {dim}")
        ivf = faiss.IndexIVFPQ(quantizer, dim, nlist, cfg.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
    else:
        ivf = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.nprobe = min(cfg.nprobe, nlist)
    return ivf


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


def kind_of(index: faiss.Index) -> str:
    """The rag.config.IndexConfig.kind of an index built by ``build_index`` (flat where too few vectors for the one
    configured)."""
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivfpq"
    return "ivf" if isinstance(index, faiss.IndexIVF) else "flat"


def rows_selector(rows: np.ndarray, n: int) -> tuple[faiss.IDSelector, np.ndarray]:
    """A selector of ``rows`` among ``n``: a bitmap, made at numpy's speed whatever the share selected (a batch
    selector hashes every row, milliseconds per hundred thousand). The bitmap is returned too: faiss does not own it,
    so the caller holds it while the selector is used."""
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    bitmap = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap)), bitmap


def search_params(index: faiss.Index, selector) -> faiss.SearchParameters:
    """Search parameters carrying a selector, of the type each index kind requires (keeping its own nprobe/efSearch)."""
    if isinstance(index, faiss.IndexIVF):
        return faiss.SearchParametersIVF(sel=selector, nprobe=index.nprobe)
    if isinstance(index, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=index.hnsw.efSearch)
    return faiss.SearchParameters(sel=selector)
