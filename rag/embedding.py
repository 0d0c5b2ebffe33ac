"""Text to vectors: the one encoder used by ingestion actors and, online, by the retriever."""

from __future__ import annotations

import numpy as np

from rag.config import EmbeddingConfig
from rag.models import cap_gpu_memory, load_sentence_encoder, pick_device, pick_dtype


class TextEncoder:
    """A sentence-transformers model placed on the GPU share it was given, or on the CPU."""

    def __init__(self, cfg: EmbeddingConfig, gpu_fraction: float | None = None):
        """``gpu_fraction`` is the GPU share Ray reserved for the calling actor; None outside Ray placement.

        An actor that reserved no GPU stays on the CPU even where one is visible: the GPU belongs to
        the actors that reserved it.
        """
        self.cfg = cfg
        self.device = "cpu" if gpu_fraction == 0 else pick_device(cfg.device)
        cap_gpu_memory(self.device, gpu_fraction or 0.0)
        self.dtype = pick_dtype(cfg.dtype, self.device)
        self.model = load_sentence_encoder(cfg.model, self.device, self.dtype)
        self.dim = int(self.model.get_embedding_dimension())

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.cfg.encode_batch_size,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.cfg.normalize:  # in float32: a half-precision norm leaves vectors visibly off unit length
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors
