"""BM25 (bm25s) over each chunk's header and text, the same text the dense index embedded: built when a version is
written and memory-mapped when it is opened, so a reload builds nothing and a query reads only its terms' postings."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import bm25s
import numpy as np

from rag.languages import search_terms

logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its logger to DEBUG when imported

LEXICAL_DIR = "bm25"
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
