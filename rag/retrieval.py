"""Query to chunks: the encoder and the index store together, as the service, eval and the CLI use them."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.config import EmbeddingConfig
from rag.embedding import TextEncoder
from rag.index import IndexStore

# Searched per requested hit when a file filter may discard most candidates.
_FILTER_OVERFETCH = 10


@dataclass
class RetrievedChunk:
    chunk_id: str
    file: str
    page: int
    score: float
    text: str


class Retriever:
    def __init__(self, store: IndexStore, encoder: TextEncoder):
        self.store = store
        self.encoder = encoder

    @classmethod
    def from_index_dir(cls, index_dir: str | Path, embedding: EmbeddingConfig, gpu_fraction: float | None = None):
        """Queries must be embedded by the model that embedded the chunks, so the index's manifest names it."""
        store = IndexStore(index_dir)
        used = store.manifest["embedding"]
        cfg = embedding.model_copy(update={"model": used["model"], "normalize": used["normalize"]})
        return cls(store, TextEncoder(cfg, gpu_fraction=gpu_fraction))

    def chunk_at(self, row: int, score: float) -> RetrievedChunk:
        """The chunk at position ``row`` of the store, with the score it was retrieved by."""
        c = self.store.chunks.iloc[row]
        return RetrievedChunk(c["chunk_id"], c["file"], int(c["page"]), score, c["text"])

    def search_vectors(self, vectors: np.ndarray, k: int, file_glob: str | None = None) -> list[list[RetrievedChunk]]:
        fetch = k * _FILTER_OVERFETCH if file_glob else k
        results = []
        for hits in self.store.search(vectors, fetch):
            chunks = []
            for hit in hits:
                chunk = self.chunk_at(hit.row, hit.score)
                if file_glob and not fnmatch.fnmatch(chunk.file, file_glob):
                    continue
                chunks.append(chunk)
                if len(chunks) == k:
                    break
            results.append(chunks)
        return results

    def retrieve(self, query: str, k: int, file_glob: str | None = None) -> list[RetrievedChunk]:
        return self.search_vectors(self.encoder.encode([query]), k, file_glob)[0]
