"""FAISS: the configured index built over vectors, and the search parameters each kind takes (rag.store.reader
searches it)."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

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


def _on_gpu(index: faiss.Index, cfg: IndexConfig) -> bool:
    # faiss has no GPU HNSW; everything else trains and adds on the GPU when one is there.
    return cfg.use_gpu == "auto" and faiss_gpus() > 0 and not isinstance(index, faiss.IndexHNSWFlat)


def _run(index: faiss.Index, on_gpu: bool, step) -> faiss.Index:
    """``step(index)`` on the GPU or here; the index comes back on the CPU, ready to save or copy."""
    if not on_gpu:
        step(index)
        return index
    on_device = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    step(on_device)
    return faiss.index_gpu_to_cpu(on_device)


def train_index(vectors: np.ndarray, cfg: IndexConfig) -> faiss.Index:
    """An empty index of the kind ``build_index`` makes of ``vectors``, trained on them where its kind needs training
    (IVF's coarse quantizer, IVF-PQ's codebooks too)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = _empty_index(vectors.shape[1], cfg, len(vectors))
    if index.is_trained:
        return index
    return _run(index, _on_gpu(index, cfg), lambda i: i.train(vectors))


def build_index(vectors: np.ndarray, cfg: IndexConfig, trained: faiss.Index | None = None) -> tuple[faiss.Index, str]:
    """The configured index over ``vectors``, on the CPU and ready to save, and where it was built. ``trained``: an
    empty index ready for them (``train_index``'s, or a training shared by the collection's segments), filled as a
    copy, instead of one trained on ``vectors`` here."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    empty = faiss.clone_index(trained if trained is not None else train_index(vectors, cfg))
    on_gpu = _on_gpu(empty, cfg)
    return _run(empty, on_gpu, lambda i: i.add(vectors)), "gpu" if on_gpu else "cpu"


@dataclass(frozen=True)
class Training:
    """An IVF index trained and left empty (its coarse quantizer; IVF-PQ's codebooks too), kept with each segment
    built on it under one name, so that later segments of the collection take it up rather than train their own."""

    index: faiss.Index
    name: str = field(default_factory=lambda: secrets.token_hex(4))

    @classmethod
    def of(cls, trained: faiss.Index) -> Training | None:
        """A fresh training, where the index's kind has one worth keeping (IVF's)."""
        return cls(trained) if isinstance(trained, faiss.IndexIVF) else None


def shares_training(trained: faiss.Index, n: int, dim: int, cfg: IndexConfig) -> bool:
    """Whether a segment of ``n`` vectors of ``dim`` is built on ``trained`` as configured: the kind ``cfg`` makes of
    them, with all of its cells (a quantizer trained on too few vectors for ``cfg.nlist`` is not taken up by others)
    and its code size."""
    kind = kind_for(n, cfg)
    if kind not in ("ivf", "ivfpq") or kind_of(trained) != kind or trained.d != dim:
        return False
    return trained.nlist == cfg.nlist and (kind == "ivf" or cfg.pq_m == trained.pq.M)


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


def search_params(index: faiss.Index, selector, nprobe: int | None = None) -> faiss.SearchParameters:
    """Search parameters carrying a selector (None: all rows), of the type each index kind requires; ``nprobe``: IVF
    cells to search (None: the index's own, set when it was built)."""
    if isinstance(index, faiss.IndexIVF):
        return faiss.SearchParametersIVF(sel=selector, nprobe=min(nprobe or index.nprobe, index.nlist))
    if isinstance(index, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=index.hnsw.efSearch)
    return faiss.SearchParameters(sel=selector)
