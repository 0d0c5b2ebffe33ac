"""Retrieval variants compared in one report: dense (the service's own), lexical BM25, and their hybrid."""

from __future__ import annotations

from collections.abc import Sequence

from rag.retrieval import RetrievedChunk, Retriever

KINDS = ("dense", "bm25", "hybrid")
# Reciprocal-rank fusion constant from Cormack et al. (2009); robust without tuning.
_RRF_K = 60
_HYBRID_DEPTH = 50


class Bm25Index:
    """BM25 over the same chunk store the dense index holds, so both rank the same chunks."""

    def __init__(self, retriever: Retriever):
        import bm25s

        self._bm25s = bm25s
        self.chunks = retriever.store.chunks
        self.model = bm25s.BM25()
        self.model.index(bm25s.tokenize(self.chunks["text"].tolist(), show_progress=False), show_progress=False)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        k = min(k, len(self.chunks))
        tokens = self._bm25s.tokenize(list(queries), show_progress=False)
        rows, scores = self.model.retrieve(tokens, k=k, show_progress=False)
        return [[(int(r), float(s)) for r, s in zip(rr, ss) if s > 0] for rr, ss in zip(rows, scores)]


def search(kind: str, retriever: Retriever, bm25: Bm25Index | None, queries: Sequence[str], k: int) -> list[list[RetrievedChunk]]:
    """Top-k chunks per query for one retrieval kind."""
    if kind == "dense":
        return retriever.search_vectors(retriever.encoder.encode(list(queries)), k)
    if bm25 is None:
        raise ValueError(f"retrieval kind {kind!r} needs the BM25 index")
    lexical = bm25.search(queries, _HYBRID_DEPTH if kind == "hybrid" else k)
    if kind == "bm25":
        return [[retriever.chunk_at(r, s) for r, s in hits] for hits in lexical]
    dense = retriever.store.search(retriever.encoder.encode(list(queries)), _HYBRID_DEPTH)
    fused = []
    for lex_hits, dense_hits in zip(lexical, dense):
        scores: dict[int, float] = {}
        for rank, (row, _) in enumerate(lex_hits):
            scores[row] = scores.get(row, 0.0) + 1.0 / (_RRF_K + rank + 1)
        for rank, hit in enumerate(dense_hits):
            scores[hit.row] = scores.get(hit.row, 0.0) + 1.0 / (_RRF_K + rank + 1)
        best = sorted(scores.items(), key=lambda item: -item[1])[:k]
        fused.append([retriever.chunk_at(row, score) for row, score in best])
    return fused


def available_kinds(requested: Sequence[str]) -> list[str]:
    unknown = [k for k in requested if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown retrieval kind(s) {unknown}; choose from {list(KINDS)}")
    return list(requested)

