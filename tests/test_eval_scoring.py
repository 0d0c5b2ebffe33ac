"""Metric functions against cases worked out by hand, and the SEC adapter on the real CSV."""

import json
import re
from pathlib import Path

import pytest

from eval import scoring
from eval.datasets import DatasetError, load_dataset
from ingest.pdf_pages import read_pdf_pages
from rag.config import PdfConfig


def test_token_f1_by_hand():
    # pred tokens: net sales were 81,797 (4); gold: total net sales were 81,797 million (6); common 4
    assert scoring.token_f1("Net sales were $81,797.", "Total net sales were $81,797 million") == pytest.approx(
        2 * 1 * (4 / 6) / (1 + 4 / 6)
    )
    assert scoring.token_f1("", "something") == 0.0
    assert scoring.token_f1("apple", "banana") == 0.0


def test_number_recall_by_hand():
    gold = "iPhone net sales were $39,669 million, down 2% from $40,665 million."
    assert scoring.numbers(gold) == {"39669", "2", "40665"}
    assert scoring.number_recall("It was 39669 million and 40,665 before.", gold) == pytest.approx(2 / 3)
    assert scoring.number_recall("no numbers", "no numbers either") is None


def test_sources_are_not_scored_as_answer_text():
    gold = "Net sales were $81,797 million. (SOURCE: 2023 Q3 AAPL.pdf)\nSOURCE(S): 2023 Q3 AAPL.pdf, 2022 Q3 AAPL.pdf"
    ours = "Net sales were $81,797 million [1].\n\nSources:\n[1] 2023 Q3 AAPL.pdf, p. 4"
    assert scoring.numbers(scoring.strip_sources(gold)) == {"81797"}
    assert scoring.numbers(scoring.strip_sources(ours)) == {"81797", "1"}
    assert scoring.number_recall(scoring.strip_sources("It was 2023."), scoring.strip_sources(gold)) == 0.0


def test_ranking_metrics_by_hand():
    retrieved = ["a.pdf", "b.pdf", "a.pdf", "c.pdf"]
    gold = {"b.pdf", "c.pdf"}.__contains__
    assert scoring.recall_at_k(retrieved, gold, 2, 1) == 0.0
    assert scoring.recall_at_k(retrieved, gold, 2, 2) == 0.5
    assert scoring.recall_at_k(retrieved, gold, 2, 4) == 1.0
    assert scoring.hit_at_k(retrieved, gold, 1) == 0.0 and scoring.hit_at_k(retrieved, gold, 2) == 1.0
    assert scoring.reciprocal_rank(retrieved, gold) == 0.5
    assert scoring.reciprocal_rank(["a.pdf"], gold) == 0.0


def test_citation_precision_and_refusal():
    answer = "Sales rose [1].\n\nSources:\n[1] 2023 Q3 AAPL.pdf, p. 4\n[2] 2023 Q3 MSFT.pdf, p. 9"
    files = scoring.cited_files(answer)
    assert files == ["2023 Q3 AAPL.pdf", "2023 Q3 MSFT.pdf"]
    assert scoring.citation_precision(files, lambda f: "AAPL" in f) == 0.5
    assert scoring.citation_precision([], lambda f: True) is None
    assert scoring.is_refusal("I don't know based on the sources.")
    assert not scoring.is_refusal("Net sales were $81,797 million.")


def test_sec_csv_adapter(sec_docs):
    questions = load_dataset(sec_docs.parent / "qna_data.csv")
    assert len(questions) == 195
    assert questions[0].question.startswith("How has Apple's total net sales changed")  # no byte-order mark
    assert questions[0].gold_files == ["*AAPL*"]
    assert "\n" in questions[0].answer and "SOURCE(S):" in questions[0].answer  # multi-line answers kept whole
    assert {q.question_type for q in questions} == {
        "Single-Doc Single-Chunk RAG",
        "Single-Doc Multi-Chunk RAG",
        "Multi-Doc RAG",
    }
    assert sum(q.chunk_type == "Table" for q in questions) == 114
    assert questions[0].is_gold_file("2023 Q3 AAPL.pdf") and not questions[0].is_gold_file("2023 Q3 MSFT.pdf")


def test_bad_datasets_are_named(tmp_path):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("Question,Answer\nq,a\n")
    with pytest.raises(DatasetError, match="missing column"):
        load_dataset(bad_csv)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DatasetError, match="no questions"):
        load_dataset(empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(DatasetError, match="missing field"):
        load_dataset(broken)
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope.jsonl")


def test_judge_verdicts_are_parsed_or_recorded():
    from eval.judge import parse_verdict

    assert parse_verdict("SCORE: 4 REASON: right total, wrong year.") == {
        "score": 4,
        "reason": "right total, wrong year.",
    }
    assert parse_verdict("score:2") == {"score": 2, "reason": ""}
    assert parse_verdict("I think it is fine")["score"] is None
    assert parse_verdict("SCORE: 9")["score"] is None


FILINGS_10K = Path(__file__).resolve().parent.parent / "eval" / "questions" / "filings-10k-pages.jsonl"
MIXED_DOCS = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "filings-mixed" / "docs"


def test_the_10k_question_set_holds_its_evidence_on_every_gold_page():
    """eval/questions/filings-10k-pages.jsonl: each gold page's text holds one alternative of the question's evidence
    (whitespace aside), as the set was built; the pages are read again from the PDFs."""
    rows = [json.loads(line) for line in FILINGS_10K.read_text().splitlines()]
    questions = load_dataset(FILINGS_10K)
    assert len(questions) == len(rows) >= 100 and {q.split for q in questions} == {"dev", "test"}
    wanted: dict[str, set[int]] = {}
    for row in rows:
        for gold in row["gold_pages"]:
            wanted.setdefault(gold["file"], set()).add(gold["page"])
    texts = {
        (file, n + 1): text
        for file, pages in wanted.items()
        for n, text in enumerate(
            read_pdf_pages(MIXED_DOCS / file, PdfConfig(), only=lambda _, p=pages: [x - 1 for x in p], ocr=False).texts
        )
    }

    def bare(text: str) -> str:
        return re.sub(r"\s+", "", text).lower()

    for row in rows:
        assert row["gold_pages"], row["id"]
        for gold in row["gold_pages"]:
            page = bare(texts[gold["file"], gold["page"]])
            assert any(all(bare(s) in page for s in choice) for choice in row["evidence"]), (row["id"], gold)
