"""Document metadata from real filings' cover pages, from file names and a sidecar; filters and question mentions."""

from __future__ import annotations

import json

import pandas as pd
import pypdf
import pytest

from ingest.metadata import SidecarError, extract_metadata, read_sidecar, section_at
from ingest.pdf_pages import read_pdf_pages
from rag.config import PdfConfig
from rag.filters import FilterError, Filters, company_key, matching_files, parse_filters
from rag.mentions import MentionMatcher
from rag.metadata import FIELDS, DocMetadata, chunk_header
from tests.pdf_factory import text_pdf


@pytest.fixture(scope="module")
def covers(sec_docs):
    """Two filings' first pages and info titles (what extract_metadata reads of a file), extracted by pypdf."""
    out = {}
    for name in ("2023 Q3 AAPL.pdf", "2023 Q3 MSFT.pdf"):
        reader = pypdf.PdfReader(sec_docs / name)
        out[name] = ([page.extract_text() for page in reader.pages[:6]], reader.metadata.get("/Title"))
    return out


def test_cover_page_facts_without_help_from_the_file_name(covers):
    texts, title = covers["2023 Q3 AAPL.pdf"]
    meta = extract_metadata("filing.pdf", texts, title)
    assert (meta.company, meta.ticker, meta.form, meta.period_end) == ("Apple Inc.", "AAPL", "10-Q", "2023-07-01")
    # No "Q3" in the name: the year comes from the period, the quarter stays unknown rather than guessed.
    assert meta.fiscal_year == 2023 and meta.fiscal_quarter is None
    # Microsoft's cover has no "(Exact name of registrant ...)" caption and pads its lines with no-break spaces.
    texts, title = covers["2023 Q3 MSFT.pdf"]
    meta = extract_metadata("x.pdf", texts, title)
    assert (meta.company, meta.ticker, meta.period_end) == ("MICROSOFT CORPORATION", "MSFT", "2023-09-30")


def test_file_name_label_and_sidecar_override(covers):
    texts, title = covers["2023 Q3 AAPL.pdf"]
    meta = extract_metadata("reports/2023 Q3 AAPL.pdf", texts, title)
    assert (meta.fiscal_year, meta.fiscal_quarter) == (2023, 3)
    assert meta.title == "Apple Inc. Form 10-Q, period ended 2023-07-01"
    fixed = extract_metadata("2023 Q3 AAPL.pdf", texts, title, {"fiscal_quarter": 4, "title": "Apple Q4"})
    assert (fixed.fiscal_quarter, fixed.title, fixed.company) == (4, "Apple Q4", "Apple Inc.")


def test_any_other_pdf_gets_a_title_and_nothing_invented(tmp_path):
    pdf = text_pdf(tmp_path / "handbook.pdf", ["Employee Handbook", "Holidays are listed in the annex."])
    doc = read_pdf_pages(pdf, PdfConfig())
    meta = extract_metadata("handbook.pdf", doc.texts, doc.title)
    assert meta.title == "Employee Handbook"
    assert all(getattr(meta, f) is None for f in FIELDS if f != "title")
    # An accession number is not a title; the first heading is.
    assert extract_metadata("h.pdf", doc.texts, "0000320193-23-000077").title == "Employee Handbook"
    assert chunk_header(meta, "handbook.pdf", "Holidays") == "Employee Handbook | Holidays"


def test_sidecar_is_read_and_checked(tmp_path):
    (tmp_path / "metadata.jsonl").write_text(
        json.dumps({"file": "a.pdf", "company": "Acme Corp", "fiscal_year": 2024}) + "\n\n"
    )
    assert read_sidecar(tmp_path) == {"a.pdf": {"company": "Acme Corp", "fiscal_year": 2024}}
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file": "a.pdf", "colour": "red"}) + "\n")
    with pytest.raises(SidecarError, match="metadata.jsonl:1.*colour"):
        read_sidecar(tmp_path)
    assert read_sidecar(tmp_path / "missing") == {}


def test_section_headings():
    page = "Apple Inc.\nCONDENSED CONSOLIDATED BALANCE SHEETS (Unaudited)\nThree Months Ended\nCash 1,000\n" \
           "Operating Expenses\nResearch and development rose.\n"
    ignore = {"apple inc."}
    assert section_at(page, 0, 30, ignore) == "CONDENSED CONSOLIDATED BALANCE SHEETS (Unaudited)"
    assert section_at(page, page.index("Research"), len(page), ignore) == "Operating Expenses"
    assert section_at("plain words only here", 0, 10) is None


FILES = pd.DataFrame(
    [
        {"file": "a1.pdf", "title": "t", "company": "Apple Inc.", "ticker": "AAPL", "form": "10-Q", "fiscal_year": 2023,
         "fiscal_quarter": 2, "period_end": "2023-04-01"},
        {"file": "a2.pdf", "title": "t", "company": "Apple Inc.", "ticker": "AAPL", "form": "10-Q", "fiscal_year": 2023,
         "fiscal_quarter": 3, "period_end": "2023-07-01"},
        {"file": "m1.pdf", "title": "t", "company": "MICROSOFT CORPORATION", "ticker": "MSFT", "form": "10-Q",
         "fiscal_year": 2023, "fiscal_quarter": 3, "period_end": "2023-09-30"},
        {"file": "m0.pdf", "title": "t", "company": "MICROSOFT CORPORATION", "ticker": "MSFT", "form": "10-K",
         "fiscal_year": 2022, "fiscal_quarter": None, "period_end": "2022-06-30"},
        {"file": "notes.pdf", "title": "Notes", "company": None, "ticker": None, "form": None, "fiscal_year": None,
         "fiscal_quarter": None, "period_end": None},
    ]
).astype(object)


def _files(filters: Filters) -> list[str]:
    return FILES["file"][matching_files(FILES, filters)].tolist()


def test_filters_match_files():
    assert company_key("AMAZON.COM, INC.") == "amazon" and company_key("Microsoft Corporation") == "microsoft"
    assert _files(Filters(company="apple")) == ["a1.pdf", "a2.pdf"]
    assert _files(Filters(company=["Apple", "Microsoft"], fiscal_quarter=3)) == ["a2.pdf", "m1.pdf"]
    assert _files(Filters(ticker="msft", form="10-k")) == ["m0.pdf"]
    assert _files(Filters(file_glob="m*")) == ["m1.pdf", "m0.pdf"]
    assert _files(Filters()) == FILES["file"].tolist()


def test_bad_filters_are_named():
    with pytest.raises(FilterError, match=r"unknown filter field\(s\) \['colour', 'sector'\]"):
        parse_filters({"sector": "tech", "colour": "red", "company": "Apple"})
    with pytest.raises(FilterError, match="fiscal_year"):
        parse_filters({"fiscal_year": "last year"})
    with pytest.raises(FilterError, match="file_glob"):
        parse_filters({"file_glob": "*" * 10_000})
    assert parse_filters({"fiscal_year": 2023}).fiscal_year == [2023]


def test_questions_name_what_they_mean():
    match = MentionMatcher(FILES)
    found = match.detect("What were Apple's total net sales for the quarter ended July 1, 2023?")
    assert found.filters.given() == {"company": ["Apple Inc."], "period_end": ["2023-07-01"]}
    assert _files(found.filters) == ["a2.pdf"]
    assert match.detect("MSFT risks in Q3 2023").filters.given() == {
        "company": ["MICROSOFT CORPORATION"], "fiscal_year": [2023], "fiscal_quarter": [3]}
    # "Latest" is the newest period of the named company, whatever its date.
    assert match.detect("Apple's most recent 10-Q").filters.file == ["a2.pdf"]
    # A bare year is uncertain: a boost, not a filter.
    found = match.detect("How did Microsoft's revenue change in 2023?")
    assert found.filters.given() == {"company": ["MICROSOFT CORPORATION"]} and found.boosts.given() == {"fiscal_year": [2023]}
    # Forms only filter where the index holds more than one.
    assert match.detect("Microsoft's 10-K").filters.form == ["10-K"]
    # A period the named company has no filing for is a misreading, not an empty result.
    assert match.detect("Apple in Q1 2023").filters.given() == {"company": ["Apple Inc."]}
    # Words that merely contain a name do not match; questions that name nothing get no filter.
    assert match.detect("pineapple sales").filters.given() == {}


def test_follow_ups_take_what_the_question_leaves_out_from_earlier_turns():
    match = MentionMatcher(FILES)
    history = [{"role": "user", "content": "Tell me about Microsoft's Q3 2023 results. " + "Cloud growth. " * 200},
               {"role": "assistant", "content": "Apple is mentioned here but is not the user's subject."}]
    assert match.detect("What were its operating expenses?", history).filters.given() == {
        "company": ["MICROSOFT CORPORATION"], "fiscal_year": [2023], "fiscal_quarter": [3]}
    assert match.detect("What were Apple's net sales?", history).filters.company == ["Apple Inc."]


def test_header_names_the_document():
    meta = DocMetadata(company="Apple Inc.", ticker="AAPL", form="10-Q", fiscal_year=2023, fiscal_quarter=3,
                       period_end="2023-07-01")
    assert chunk_header(meta, "x.pdf", "Gross Margin") == \
        "Apple Inc. (AAPL) | Form 10-Q | Q3 2023 | period ended 2023-07-01 | Gross Margin"
