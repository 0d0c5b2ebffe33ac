"""The one search: dense, BM25 or hybrid over one index, inside metadata filters, optionally reranked.

The service's retriever, ``rag search``/``rag ask`` and batch eval all call ``Searcher.search``:

1. the retrieval query is the question first, then the earlier user turns (the embedding model
   reads 256 tokens, so the question must not be the part that is cut);
2. filters: the request's own, plus those read from the question (``rag.questions.mentions``), become a set
   of chunk rows; dense search runs inside it (a FAISS ID selector) and BM25 scores only it;
3. candidates (``retrieval.depth`` from each method) are fused by a weighted sum of min-max
   normalised scores (or reciprocal-rank fusion), uncertain mentions add ``retrieval.boost``, chunks under a
   statement the question names ("the cash flow statement") add ``retrieval.section_boost``;
4. an optional cross-encoder rescores the first ``rerank.depth``;
5. each file's best chunk is listed before second chunks of files already listed (``diverse_files``), and, with
   ``diverse_pages``, each page's best chunk before second chunks of pages already listed.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.config import RETRIEVAL_MODES, RetrievalConfig, Settings
from rag.devices import pick_device
from rag.embedding import TextEncoder
from rag.filters import Filters, matching_files
from rag.languages import has_han, language_of
from rag.models import resolve_model
from rag.questions.lines import asked_words, line_coverage
from rag.questions.mentions import MentionMatcher
from rag.questions.sections import named_sections, section_rows
from rag.store.files import search_texts
from rag.store.lexical import Lexical
from rag.store.reader import Hit, IndexStore
from rag.store.versions import open_index
from rag.tuning import collection_dir, with_tuning
from rag.types import RetrievedChunk, SearchResult, retrieval_query

log = logging.getLogger(__name__)

_RRF_K = 60  # reciprocal-rank fusion constant from Cormack et al. (2009)
_SELECTION_CACHE = 256


@dataclass
class EmbeddedQuery:
    """A retrieval query the caller has embedded already (the service batches query embeddings across requests)."""

    text: str  # rag.types.retrieval_query of the question
    vector: np.ndarray


def _normalised(scores: dict[int, float]) -> dict[int, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    return {row: (s - low) / span if span > 0 else 1.0 for row, s in scores.items()}


def _boosted(ranked: list[tuple[int, float]], gains: dict[int, float], share: float) -> list[tuple[int, float]]:
    """``ranked`` again, each row up by ``share`` of the best score times its gain (0 to 1; rows not in ``gains``:
    0). A share of the best score, so a boost means the same for cosine, normalised and reciprocal-rank scores."""
    bonus = share * abs(ranked[0][1])
    return sorted(((row, score + bonus * gains.get(row, 0.0)) for row, score in ranked), key=lambda item: -item[1])


class Searcher:
    def __init__(
        self,
        store: IndexStore,
        encoder: TextEncoder,
        cfg: RetrievalConfig,
        multilingual: TextEncoder | None = None,
        nprobe: int | None = None,
    ):
        """``encoder``: the model of the version's vectors, or of its Latin-script files' where ``multilingual``
        embedded the rest (ingest.languages): a question is then embedded by its own language's model and searched
        among that model's vectors. ``nprobe``: IVF cells searched (index.nprobe; None: each index's own)."""
        self.store, self.encoder, self.cfg, self.multilingual = store, encoder, cfg, multilingual
        self.nprobe = nprobe
        self.matcher = MentionMatcher(store.files)
        self._bm25: Lexical | None = None
        self._reranker = None
        self._selections: OrderedDict[str, np.ndarray] = OrderedDict()
        self._sections: dict[str, np.ndarray] = {}
        if cfg.rerank.model:
            from sentence_transformers import CrossEncoder

            self._reranker = CrossEncoder(resolve_model(cfg.rerank.model), device=pick_device(encoder.cfg.device))

    @classmethod
    def from_index_dir(cls, index_dir: str | Path, settings: Settings, gpu_fraction: float | None = None) -> Searcher:
        """Queries must be embedded by the model that embedded the chunks, so the index's manifest names it."""
        return cls.over(open_index(index_dir), settings, gpu_fraction)

    @classmethod
    def over(
        cls,
        store: IndexStore,
        settings: Settings,
        gpu_fraction: float | None = None,
        encoders: Sequence[TextEncoder] = (),
        tuned: bool = True,
    ) -> Searcher:
        """A searcher over a loaded index; one of ``encoders`` is reused where it is a model the index was embedded
        with. ``tuned``: with the collection's own retrieval settings over the config's, where it has them
        (rag.tuning)."""
        manifest = store.manifest
        used = [e for e in (manifest.embedding, manifest.multilingual) if e and e.model in store.models]
        loaded = []
        for info in used or [manifest.embedding]:
            cfg = settings.embedding.model_copy(update={"model": info.model, "normalize": info.normalize})
            loaded.append(next((e for e in encoders if e.cfg == cfg), None) or TextEncoder(cfg, gpu_fraction))
        multilingual = loaded[1] if len(loaded) > 1 else None
        collection = collection_dir(store.root)
        retrieval = with_tuning(settings.retrieval, collection) if tuned else settings.retrieval
        if retrieval != settings.retrieval:
            log.info("%s: searched by its own modes %s (rag tune)", collection, retrieval.mode_by_language)
        return cls(store, loaded[0], retrieval, multilingual, settings.index.nprobe)

    def retuned(self, cfg: RetrievalConfig) -> Searcher:
        """The same index and models searched with other retrieval settings (its reranker stays the one it loaded)."""
        other = copy.copy(self)
        other.cfg = cfg
        return other

    @property
    def encoders(self) -> list[TextEncoder]:
        return [self.encoder] + ([self.multilingual] if self.multilingual else [])

    def encoder_for(self, question: str) -> TextEncoder:
        """The model that embeds ``question``: the multilingual one for a question beyond Latin script or with any Han
        in it ("《This Is Where I Came In》是Bee Gees的第几张原创专辑？": the English model cannot read its Han), where
        the version has vectors of both."""
        if self.multilingual is not None and (has_han(question) or language_of(question) == "other"):
            return self.multilingual
        return self.encoder

    def bm25(self) -> Lexical:
        """The lexical model, opened on first use (mapped from the version, or built for a version stored without one):
        a dense-only service never pays for it."""
        if self._bm25 is None:
            self._bm25 = self.store.lexical()
        return self._bm25

    def chunks_at(self, ranked: list[tuple[int, float]]) -> list[RetrievedChunk]:
        """The ranked rows' chunks, their text read from the index's files."""
        rows = [row for row, _ in ranked]
        ids, texts = self.store.strings(rows, "chunk_id"), self.store.strings(rows, "text")
        held = self.store.chunks.iloc[rows]
        return [
            RetrievedChunk(chunk_id, str(file), int(page), float(score), text, self.store.metadata_of(str(file)))
            for chunk_id, file, page, text, (_, score) in zip(
                ids, held["file"], held["page"], texts, ranked, strict=True
            )
        ]

    def page(self, file: str, page: int) -> RetrievedChunk | None:
        """One page of the index as a source: its chunks' text in order (None: the version has no such page)."""
        held = self.store.chunks
        rows = np.flatnonzero((held["file"] == file).to_numpy() & (held["page"] == page).to_numpy())
        if not len(rows):
            return None
        rows = rows[np.argsort(held["chunk_index"].to_numpy()[rows], kind="stable")]
        text = "\n".join(self.store.read(rows, ["text"])["text"])
        return RetrievedChunk(f"{file}#page={page}", file, page, 0.0, text, self.store.metadata_of(file))

    # ---- filters ------------------------------------------------------------------------------

    def _rows(self, filters: Filters) -> np.ndarray | None:
        """Chunk rows the filters allow (None: all), cached per distinct filter."""
        if not filters.given():
            return None
        key = filters.model_dump_json()
        if key not in self._selections:
            files = self.store.files["file"][matching_files(self.store.files, filters)]
            self._selections[key] = self.store.rows_of(files)
            if len(self._selections) > _SELECTION_CACHE:
                self._selections.popitem(last=False)
        self._selections.move_to_end(key)
        return self._selections[key]

    def plan(
        self, question: str, history: Sequence[dict], filters: Filters, auto: bool
    ) -> tuple[Filters, Filters, list[str]]:
        """(filters to apply, boosts, matched words): the request's filters win over those read from the question."""
        if not auto:
            return filters, Filters(), []
        detected = self.matcher.detect(question, history)
        merged = filters.merged(detected.filters)
        rows = self._rows(merged)  # cached: search() reads the same selection next
        if rows is not None and len(rows) == 0:  # the question contradicts the request: the request wins
            return filters, detected.boosts, []
        return merged, detected.boosts, detected.matched

    def _widened(
        self,
        vector: np.ndarray,
        model: str,
        request: Filters,
        applied: Filters,
        boosts: Filters,
        inside: float | None,
    ) -> tuple[Filters, Filters, dict]:
        """Filters read from the question fail soft: where the best chunk inside them (``inside``: its score, when the
        caller has searched them already) scores far below the best chunk the request's own filters allow, a label was
        probably wrong (a file number read as the company), so the search is widened back to the request's filters and
        what the question named only boosts."""
        if applied == request or self.cfg.widen_margin is None:
            return applied, boosts, {}
        if inside is None:
            inside = next((h.score for h in self._nearest(vector, model, 1, self._rows(applied))), None)
        outside = self._nearest(vector, model, 1, self._rows(request))
        if inside is None or not outside or outside[0].score - inside <= self.cfg.widen_margin:
            return applied, boosts, {}
        dropped = {k: v for k, v in applied.given().items() if k not in request.given()}
        reason = (
            f"the best passage inside {dropped} scored {inside:.3f}, {outside[0].score:.3f} outside them "
            f"(more than retrieval.widen_margin {self.cfg.widen_margin} apart)"
        )
        return request, boosts.merged(Filters.detected(dropped)), {"dropped": dropped, "reason": reason}

    # ---- search ---------------------------------------------------------------------------------

    def search(
        self,
        question: str,
        k: int,
        history: Sequence[dict] = (),
        filters: Filters | None = None,
        mode: str | None = None,
        auto_filters: bool | None = None,
        embedded: EmbeddedQuery | None = None,
    ) -> SearchResult:
        """Top-k chunks for a question; ``embedded``: its retrieval query and embedding when the caller made them."""
        mode = mode or self.mode_for(question)
        if mode not in RETRIEVAL_MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose from {list(RETRIEVAL_MODES)}")
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = round((now - clock) * 1000, 2)
            clock = now

        auto = self.cfg.auto_filters if auto_filters is None else auto_filters
        request = filters or Filters()
        applied, boosts, matched = self.plan(question, history, request, auto)
        lap("filter_ms")
        query = embedded.text if embedded else retrieval_query(question, history)
        vector = embedded.vector if embedded else None
        depth = max(self.cfg.depth, k, self.cfg.rerank.depth if self._reranker else 0)
        dense: dict[int, float] = {}
        lexical: dict[int, float] = {}
        widened: dict = {}
        encoder = self.encoder_for(question)  # the caller's ``embedded`` vector comes from it too
        if vector is None and (mode != "bm25" or applied != request):
            vector = encoder.encode([query], query=True)[0]
            lap("embed_ms")
        model = encoder.cfg.model
        searches_dense = mode in ("dense", "hybrid")
        if searches_dense and vector is not None:  # embedded above wherever the mode searches vectors
            dense = {h.row: h.score for h in self._nearest(vector, model, depth, self._rows(applied))}
        if vector is not None:
            applied, boosts, widened = self._widened(
                vector, model, request, applied, boosts, max(dense.values(), default=None)
            )
        rows = self._rows(applied)
        if searches_dense:
            if widened and vector is not None:  # searched again, inside the request's own filters only
                dense = {h.row: h.score for h in self._nearest(vector, model, depth, rows)}
            lap("dense_ms")
        if mode in ("bm25", "hybrid"):
            lexical = self._bm25_top(query, depth, rows, fill=mode == "bm25", model=model)
            lap("bm25_ms")
        ranked = self._fuse(dense, lexical, mode, self._dense_weight(question))
        ranked = self._boost(ranked, boosts)
        sections = named_sections(question) if self.cfg.section_boost else []
        ranked = self._boost_rows(ranked, self._section_rows(sections), self.cfg.section_boost)
        matched = matched + [f"section: {s}" for s in sections]
        ranked = self._line_boost(question, matched, ranked)
        if self._reranker is not None and ranked:
            ranked = self._rerank(query, ranked)
            lap("rerank_ms")
        if self.cfg.diverse_files:
            ranked = self._diverse(ranked)
        chunks = self.chunks_at(ranked[:k])
        lap("rank_ms")
        timings["total_ms"] = round(sum(timings.values()), 2)
        return SearchResult(
            chunks, mode, applied.given(), boosts.given(), matched, widened, timings, self.store.version
        )

    def _nearest(self, vector: np.ndarray, model: str, k: int, rows: np.ndarray | None) -> list[Hit]:
        """The index's k nearest chunks among ``rows`` (None: all) of those ``model`` embedded (the vector's),
        compressed segments' candidates re-scored."""
        model_searched = model if self.multilingual else None
        return self.store.search(vector, k, rows, self.cfg.rescore, model_searched, self.nprobe)

    def _bm25_top(self, query: str, depth: int, rows: np.ndarray | None, fill: bool, model: str) -> dict[int, float]:
        """The ``depth`` best rows by BM25, with the word frequencies of the question's language (``model``'s chunks)
        where the version holds two. Rows sharing no word with the query score 0: in hybrid they are left to dense
        search; alone (``fill``) they complete the list in row order, so a filter with k rows still returns k."""
        found, scores = self.bm25().top(query, depth, rows, model if self.multilingual else None)
        best = dict(zip(found.tolist(), scores.tolist(), strict=True))
        if fill and len(best) < depth:
            wanted = depth + len(best)  # the first rows enough to find depth that score 0
            pool = rows[:wanted] if rows is not None else np.arange(min(wanted, len(self.store.chunks)))
            zeros = [int(r) for r in pool if int(r) not in best]
            best.update(dict.fromkeys(zeros[: depth - len(best)], 0.0))
        return best

    def mode_for(self, question: str) -> str:
        """The mode a question is searched by where its request names none: its language's, else the config's."""
        return self.cfg.mode_by_language.get(language_of(question) or "en", self.cfg.mode)

    def _dense_weight(self, question: str) -> float:
        language = language_of(question) or "en"
        return self.cfg.dense_weight_by_language.get(language, self.cfg.dense_weight)

    def _fuse(self, dense: dict[int, float], lexical: dict[int, float], mode: str, w: float) -> list[tuple[int, float]]:
        """Hybrid: ``w`` is the dense share, of reciprocal ranks (rrf) or of min-max normalised scores."""
        if mode == "dense" or not lexical:
            fused = dict(dense) if mode != "bm25" else {}
        elif mode == "bm25":
            fused = _normalised(lexical)
        elif self.cfg.fusion == "rrf":
            fused = {}
            for ranking, share in ((dense, w), (lexical, 1 - w)):
                if not share:  # a mode given no share brings no candidates either
                    continue
                for rank, row in enumerate(sorted(ranking, key=lambda row: ranking[row], reverse=True)):
                    fused[row] = fused.get(row, 0.0) + 2 * share / (_RRF_K + rank + 1)
        else:
            d, b = _normalised(dense), _normalised(lexical)
            fused = {row: w * d.get(row, 0.0) + (1 - w) * b.get(row, 0.0) for row in d.keys() | b.keys()}
        return sorted(fused.items(), key=lambda item: -item[1])

    def _boost(self, ranked: list[tuple[int, float]], boosts: Filters) -> list[tuple[int, float]]:
        rows = self._rows(boosts)
        if rows is None:  # no boost given
            return ranked
        return self._boost_rows(ranked, rows, self.cfg.boost)

    @staticmethod
    def _boost_rows(ranked: list[tuple[int, float]], rows: np.ndarray, share: float) -> list[tuple[int, float]]:
        if not ranked or not len(rows) or not share:
            return ranked
        return _boosted(ranked, dict.fromkeys(rows.tolist(), 1.0), share)

    def _line_boost(
        self, question: str, matched: list[str], ranked: list[tuple[int, float]]
    ) -> list[tuple[int, float]]:
        """The best ``line_depth`` chunks gain ``line_boost`` of the best score times the share of the question's
        words that one of their lines with a figure names (rag.questions.lines)."""
        share = self.cfg.line_boost
        # Words are read as Latin-script words: Chinese has no spaces to find them by (BM25's jieba terms do that).
        asked = asked_words(question, matched) if share and ranked and not has_han(question) else []
        if not asked:
            return ranked
        head = [row for row, _ in ranked[: self.cfg.line_depth]]
        texts = self.store.strings(head, "text")
        return _boosted(ranked, {row: line_coverage(asked, text) for row, text in zip(head, texts, strict=True)}, share)

    def _section_rows(self, sections: list[str]) -> np.ndarray:
        """Rows under the sections a question names, cached per section."""
        for name in sections:
            if name not in self._sections:
                self._sections[name] = section_rows(self.store.chunks["header"], [name])
        picked = [self._sections[name] for name in sections]
        return np.unique(np.concatenate(picked)) if picked else np.array([], dtype=np.int64)

    def _rerank(self, query: str, ranked: list[tuple[int, float]]) -> list[tuple[int, float]]:
        if self._reranker is None:
            return ranked
        head, tail = ranked[: self.cfg.rerank.depth], ranked[self.cfg.rerank.depth :]
        texts = search_texts(self.store.read([row for row, _ in head], ["header", "text"]))
        scores = self._reranker.predict([(query, text) for text in texts], show_progress_bar=False)
        rescored = sorted(zip((row for row, _ in head), map(float, scores), strict=True), key=lambda item: -item[1])
        return rescored + tail

    def _diverse(self, ranked: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """Each file's best chunk first; then, with ``diverse_pages``, each page's best chunk; then the rest, each group
        in rank order."""
        rows = [row for row, _ in ranked]
        picked = self.store.chunks.iloc[rows]
        files = dict(zip(rows, picked["file"], strict=True))
        pages = dict(zip(rows, picked["page"], strict=True))
        seen_files: set[str] = set()
        seen_pages: set[tuple[str, int]] = set()
        first, second, rest = [], [], []
        for row, score in ranked:
            page = (files[row], pages[row])
            if files[row] not in seen_files:
                first.append((row, score))
            elif page not in seen_pages and self.cfg.diverse_pages:
                second.append((row, score))
            else:
                rest.append((row, score))
            seen_files.add(files[row])
            seen_pages.add(page)
        return first + second + rest
