"""BM25 (bm25s) over each chunk's header and text, the same text the dense index embedded: built when a segment is
written and memory-mapped when it is opened, so a reload builds nothing and a query reads only its terms' postings.
A version's segments are scored as one collection (``Lexical``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import bm25s
import numpy as np

from rag.languages import search_terms

logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its logger to DEBUG when imported

# What rag.languages.search_terms makes of a text, numbered: a change to it must bump this, and versions stored with
# an older number are then re-tokenized when opened rather than searched with terms that no longer match queries'.
TERMS = 1


class Bm25:
    def __init__(self, model: bm25s.BM25 | None, size: int):
        self.model, self.size = model, size  # no model: not one term in the corpus (bm25s cannot index that)

    @classmethod
    def build(cls, texts: Iterable[str]) -> Bm25:
        corpus = [search_terms(text) for text in texts]
        if not any(corpus):
            return cls(None, len(corpus))
        model = bm25s.BM25()
        model.index(corpus, show_progress=False)
        return cls(model, len(corpus))

    @classmethod
    def load(cls, path: Path, size: int) -> Bm25:
        """Memory-mapped: the postings stay on disk (in the page cache) until a query's terms read them."""
        return cls(bm25s.BM25.load(str(path), mmap=True, show_progress=False), size)

    def save(self, path: Path) -> bool:
        """Whether there was anything to save."""
        if self.model is None:
            return False
        self.model.save(str(path), show_progress=False)
        return True

    def scores(self, query: str) -> np.ndarray:
        """Every chunk's score; terms the corpus lacks score nothing (get_scores fails only on no terms at all)."""
        terms = search_terms(query)
        if not terms or self.model is None:
            return np.zeros(self.size, dtype=np.float32)
        return self.model.get_scores(terms)

    def postings(self, terms: list[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """Each of ``terms`` that the corpus holds (repeats kept, as bm25s counts them): its documents and their
        stored scores."""
        if self.model is None:
            return []
        vocab, scores = self.model.vocab_dict, self.model.scores
        found = []
        for term in terms:
            if term in vocab:
                t = vocab[term]
                start, end = scores["indptr"][t], scores["indptr"][t + 1]
                found.append((term, scores["indices"][start:end], scores["data"][start:end]))
        return found


def _idf(docs: int, with_term: int) -> float:
    """bm25s's default ("lucene") inverse document frequency."""
    return math.log(1 + (docs - with_term + 0.5) / (with_term + 0.5))


class Lexical:
    """BM25 over several segments' chunks as one collection: each segment stores scores weighted by its own document
    frequencies, and a term's are rescaled here to the version's (summed over its segments, as Lucene does across
    its segments), so a chunk scores the same whichever segment holds it. Each segment's documents' lengths are
    still measured against its own mean; and a chunk masked out of a segment counts until a merge removes it, as a
    deleted document does in Lucene. In a collection of two languages the frequencies are the question's language's
    (its model's segments): Chinese chunks would otherwise make every English word look rarer, common ones most, and
    reorder English results (docs/languages.md)."""

    def __init__(self, parts: Sequence[tuple[Bm25, np.ndarray | None]], models: Sequence[str]):
        """``parts``: each segment's BM25 and its live rows (None: all), in the version's order; ``models``: the
        model that embedded each."""
        self.parts, self.models = parts, list(models)
        self.size = sum(b.size if live is None else len(live) for b, live in parts)

    def scores(self, query: str, model: str | None = None) -> np.ndarray:
        """Every live chunk's score, in the version's row order; ``model``: count frequencies over its segments only
        (None, or a model no segment has: all of them)."""
        if len(self.parts) == 1 and self.parts[0][1] is None:
            return self.parts[0][0].scores(query)
        found = [bm25.postings(search_terms(query)) for bm25, _ in self.parts]
        counted = [m == model for m in self.models] if model in self.models else [True] * len(self.parts)
        docs = sum(bm25.size for (bm25, _), c in zip(self.parts, counted, strict=True) if c)
        with_term: dict[str, int] = {}
        for postings, c in zip(found, counted, strict=True):
            for term, rows in {t: r for t, r, _ in postings}.items():
                with_term[term] = with_term.get(term, 0) + len(rows) * c
        out = []
        for (bm25, live), postings in zip(self.parts, found, strict=True):
            scores = np.zeros(bm25.size, dtype=np.float32)
            for term, rows, stored in postings:
                scale = _idf(docs, with_term[term]) / _idf(bm25.size, len(rows))
                scores[rows] += stored * np.float32(scale)
            out.append(scores if live is None else scores[live])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
