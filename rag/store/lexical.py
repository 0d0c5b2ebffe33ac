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
# The share of a segment's chunks past which a term is left out of the first scores, those that set the floor
# (Lexical.top). Any share gives the same results; 0.2 to 0.3 searched fastest at 3.75 million chunks: BM25's p50
# 14 ms against 19 ms at 0.1 and 32 ms with every term first (docs/scaling.md).
_COMMON = 0.25
_SLACK = 1e-5
_BEST_KEPT = 100_000  # terms whose highest score a segment remembers
# What looking one chunk up in a term's postings costs against adding one posting over a segment (a binary search
# against a scattered add, measured in numpy: about 80 and 4 ns)
_LOOKUP_COST = 20


class Bm25:
    def __init__(self, model: bm25s.BM25 | None, size: int):
        self.model, self.size = model, size  # no model: not one term in the corpus (bm25s cannot index that)
        self._best: dict[str, float] = {}

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

    def best(self, term: str, stored: np.ndarray) -> float:
        """The highest of ``term``'s ``stored`` scores, remembered: the most it adds to any chunk."""
        if term not in self._best:
            if len(self._best) >= _BEST_KEPT:
                self._best.clear()
            self._best[term] = float(stored.max())
        return self._best[term]

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

    def _weighted(self, query: str, model: str | None) -> list[list[tuple[str, np.ndarray, np.ndarray, float]]]:
        """Each segment's postings of the query's terms, with the factor that rescales its stored scores to the
        version's document frequencies (those of ``model``'s segments; None, or a model no segment has: all)."""
        found = [bm25.postings(search_terms(query)) for bm25, _ in self.parts]
        counted = [m == model for m in self.models] if model in self.models else [True] * len(self.parts)
        docs = sum(bm25.size for (bm25, _), c in zip(self.parts, counted, strict=True) if c)
        with_term: dict[str, int] = {}
        for postings, c in zip(found, counted, strict=True):
            for term, rows in {t: r for t, r, _ in postings}.items():
                with_term[term] = with_term.get(term, 0) + len(rows) * c
        return [
            [(t, rows, stored, _idf(docs, with_term[t]) / _idf(bm25.size, len(rows))) for t, rows, stored in postings]
            for (bm25, _), postings in zip(self.parts, found, strict=True)
        ]

    def scores(self, query: str, model: str | None = None) -> np.ndarray:
        """Every live chunk's score, in the version's row order; ``model``: count frequencies over its segments only
        (None, or a model no segment has: all of them). Every posting of every term is read: ``top`` is the search."""
        if len(self.parts) == 1 and self.parts[0][1] is None:
            return self.parts[0][0].scores(query)
        out = []
        for (bm25, live), postings in zip(self.parts, self._weighted(query, model), strict=True):
            scores = _add(np.zeros(bm25.size, dtype=np.float32), postings)
            out.append(scores if live is None else scores[live])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def top(
        self, query: str, depth: int, rows: np.ndarray | None = None, model: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``depth`` best live chunks with a score above 0 (among ``rows`` of the version, sorted, where given):
        their version rows and scores, best first, equal scores in row order; frequencies as ``scores`` counts them.

        Exact, without adding up every posting of common words: each segment first scores the terms in at most
        _COMMON of its chunks; a chunk's score can only grow from there, so the ``depth``-th best of those scores
        over the whole version is a floor. A term in more chunks ("10-Q" in every header) weighs little (its inverse
        document frequency is low): once the terms left could not together lift a chunk from 0 to the floor, they
        are looked up for the chunks that can still rank rather than added over the segment (term-at-a-time
        pruning, Moffat and Zobel's "continue", with MaxScore's split of the terms: ``_segment_best``)."""
        weighted = self._weighted(query, model)
        segments, offset = [], 0
        for (bm25, live), postings in zip(self.parts, weighted, strict=True):
            size = bm25.size if live is None else len(live)
            chosen = live if rows is None else _within(rows, offset, size, live)
            if postings and (chosen is None or len(chosen)):
                rare = [p for p in postings if len(p[1]) <= _COMMON * bm25.size]
                common = [p for p in postings if len(p[1]) > _COMMON * bm25.size]
                segments.append((bm25, live, offset, chosen, common, _add(np.zeros(bm25.size, np.float32), rare)))
            offset += size
        partial = [scores if chosen is None else scores[chosen] for _, _, _, chosen, _, scores in segments]
        floor = _kth_best_over(partial, depth)
        found_rows, found_scores = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.float32)]
        for (bm25, live, offset, chosen, common, scores), among in zip(segments, partial, strict=True):
            local, best = _segment_best(bm25, common, scores, among, chosen, depth, floor)
            found_rows.append((local if live is None else np.searchsorted(live, local)) + offset)
            found_scores.append(best)
            floor = max(floor, _kth_best(np.concatenate(found_scores), depth))  # whole scores held: a higher floor
        return _best_first(np.concatenate(found_rows), np.concatenate(found_scores), depth)


def _add(scores: np.ndarray, postings: list[tuple[str, np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """``scores`` (a segment's, in place) with every posting of ``postings`` added, rescaled."""
    for _, rows, stored, scale in postings:
        np.add.at(scores, rows, stored * np.float32(scale))  # numpy 2's add.at: a single pass, twice a fancy +='s speed
    return scores


def _kth_best(scores: np.ndarray, k: int) -> float:
    """The k-th highest of ``scores``; 0 where there are fewer."""
    return float(np.partition(scores, len(scores) - k)[len(scores) - k]) if len(scores) >= k else 0.0


def _kth_best_over(parts: list[np.ndarray], k: int, floor: float = 0.0) -> float:
    """The k-th highest score above ``floor`` of all ``parts``; ``floor`` where there are fewer. The k best so far are
    carried from part to part, so that each later part is only read for what beats them."""
    best = np.zeros(0, dtype=np.float32)
    for part in parts:
        above = best.min() if len(best) >= k else floor
        best = np.concatenate([best, part[part > above]])
        if len(best) > k:
            best = np.partition(best, len(best) - k)[len(best) - k :]
    return float(best.min()) if len(best) >= k else floor


def _segment_best(
    bm25: Bm25,
    common: list[tuple[str, np.ndarray, np.ndarray, float]],
    scores: np.ndarray,
    among: np.ndarray,
    chosen: np.ndarray | None,
    depth: int,
    floor: float,
) -> tuple[np.ndarray, np.ndarray]:
    """A segment's ``depth`` best chunks among ``chosen`` (None: all) at or above ``floor``, with their scores:
    ``scores`` holds the rarer terms' (Lexical.top), to which ``common`` terms are added; ``among``: those of
    ``chosen``.

    MaxScore's split, term at a time: the strongest common term left is added over the segment, which raises the
    floor, until the terms left could together lift so few chunks to it that looking those chunks up in their
    postings costs less than adding the postings."""
    floor *= 1 - _SLACK  # float rounding never leaves out a chunk that ties
    left = sorted(common, key=lambda p: bm25.best(p[0], p[2]) * p[3])
    while left:
        reach = sum(bm25.best(term, stored) * scale for term, _, stored, scale in left)
        if floor > reach:
            local = np.flatnonzero(among >= np.float32(floor - reach))
            if len(local) * len(left) * _LOOKUP_COST <= sum(len(rows) for _, rows, _, _ in left):
                local = local if chosen is None else chosen[local]
                for _, rows, stored, scale in left:
                    # In the postings' own integer type: numpy would otherwise convert the whole list to compare.
                    at = np.minimum(np.searchsorted(rows, local.astype(rows.dtype)), len(rows) - 1)
                    found = rows[at] == local
                    scores[local[found]] += stored[at[found]] * np.float32(scale)
                return _best_first(local, scores[local], depth)
        _add(scores, [left.pop()])
        among = scores if chosen is None else scores[chosen]
        floor = max(floor, _kth_best_over([among], depth, floor) * (1 - _SLACK))
    local = np.flatnonzero(among >= floor if floor > 0 else among > 0)
    local = local if chosen is None else chosen[local]
    return _best_first(local, scores[local], depth)


def _within(rows: np.ndarray, offset: int, size: int, live: np.ndarray | None) -> np.ndarray:
    """The segment's own rows among the version's ``rows`` (sorted) for the part at ``offset`` of ``size`` rows."""
    start, end = np.searchsorted(rows, [offset, offset + size])
    mine = rows[start:end] - offset
    return mine if live is None else live[mine]


def _best_first(rows: np.ndarray, scores: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``depth`` best of ``rows`` (in row order) with a score above 0, best first, equal scores in row order."""
    positive = scores > 0
    rows, scores = rows[positive], scores[positive]
    if len(rows) > depth:  # all that tie with the depth-th are kept for the order below to choose among
        keep = scores >= np.partition(scores, len(scores) - depth)[len(scores) - depth]
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))[:depth]
    return rows[order], scores[order]
