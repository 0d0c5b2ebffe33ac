"""Document metadata from real filings' cover pages, from file names and a sidecar; filters and question mentions."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from eval.extraction import check, judge, misses_table, read_metadata
from ingest.metadata_extraction import SidecarError, extract_metadata, metadata_pages, read_sidecar, section_at
from ingest.pdf_pages import PdfInfo, read_pdf_pages
from rag.config import PdfConfig
from rag.doc_metadata import FIELDS, DocMetadata, chunk_header
from rag.filters import MAX_VALUES, FilterError, Filters, company_key, matching_files, parse_filters
from rag.questions.mentions import MentionMatcher
from rag.questions.periods import quarters_in
from tests.pdf_factory import cover_pdf, text_pdf


@pytest.fixture(scope="module")
def covers(sec_docs):
    """Two filings as extraction reads them: only ``metadata_pages`` extracted, through ingestion's reader."""
    return {
        name: read_pdf_pages(sec_docs / name, PdfConfig(), only=metadata_pages)
        for name in ("2023 Q3 AAPL.pdf", "2023 Q3 MSFT.pdf")
    }


def test_cover_page_facts_without_help_from_the_file_name(covers):
    doc = covers["2023 Q3 AAPL.pdf"]
    meta = extract_metadata("filing.pdf", doc.texts, doc.info)
    assert (meta.company, meta.ticker, meta.form, meta.period_end) == ("Apple Inc.", "AAPL", "10-Q", "2023-07-01")
    # No "Q3" in the name: Apple's fiscal year ends in September, so the quarter ended July 1 is its third.
    assert (meta.fiscal_year, meta.fiscal_quarter) == (2023, 3)
    # Microsoft's cover has no "(Exact name of registrant ...)" caption and pads its lines with no-break spaces; its
    # fiscal year ends in June, so the quarter ended September 30, 2023 is the first of fiscal 2024.
    doc = covers["2023 Q3 MSFT.pdf"]
    meta = extract_metadata("x.pdf", doc.texts, doc.info)
    assert (meta.company, meta.ticker, meta.period_end) == ("Microsoft Corporation", "MSFT", "2023-09-30")
    assert (meta.fiscal_year, meta.fiscal_quarter, meta.period_aliases) == (2024, 1, None)
    assert {"Microsoft Corporation", "MSFT"} <= set(meta.aliases)


def test_file_name_label_is_a_period_alias_and_the_sidecar_overrides(covers):
    doc = covers["2023 Q3 AAPL.pdf"]
    meta = extract_metadata("reports/2023 Q3 AAPL.pdf", doc.texts, doc.info)
    assert (meta.fiscal_year, meta.fiscal_quarter, meta.period_aliases) == (2023, 3, None)
    assert meta.title == "Apple Inc. Form 10-Q, period ended 2023-07-01"
    # A label that disagrees with the pages does not override them; it is kept for questions that use it.
    doc = covers["2023 Q3 MSFT.pdf"]
    meta = extract_metadata("2023 Q3 MSFT.pdf", doc.texts, doc.info)
    assert (meta.fiscal_year, meta.fiscal_quarter, meta.period_aliases) == (2024, 1, ["2023 Q3"])
    doc = covers["2023 Q3 AAPL.pdf"]
    fixed = extract_metadata("2023 Q3 AAPL.pdf", doc.texts, doc.info, {"fiscal_quarter": 4, "title": "Apple Q4"})
    assert (fixed.fiscal_quarter, fixed.title, fixed.company) == (4, "Apple Q4", "Apple Inc.")


def test_any_other_pdf_gets_a_title_and_nothing_invented(tmp_path):
    pdf = text_pdf(tmp_path / "handbook.pdf", ["Employee Handbook", "Holidays are listed in the annex."])
    doc = read_pdf_pages(pdf, PdfConfig())
    meta = extract_metadata("handbook.pdf", doc.texts, doc.info)
    assert meta.title == "Employee Handbook"
    assert all(getattr(meta, f) is None for f in FIELDS if f != "title")
    # An accession number is not a title; the first heading is.
    assert extract_metadata("h.pdf", doc.texts, PdfInfo("0000320193-23-000077")).title == "Employee Handbook"
    assert chunk_header(meta, "handbook.pdf", "Holidays") == "Employee Handbook | Holidays"


def test_sidecar_is_read_and_checked(tmp_path):
    (tmp_path / "metadata.jsonl").write_text(
        json.dumps({"file": "a.pdf", "company": "Acme Corp", "fiscal_year": 2024}) + "\n\n"
    )
    assert read_sidecar(tmp_path) == {"a.pdf": {"company": "Acme Corp", "fiscal_year": 2024}}
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file": "a.pdf", "colour": "red"}) + "\n")
    with pytest.raises(SidecarError, match=r"metadata\.jsonl:1.*colour"):
        read_sidecar(tmp_path)
    assert read_sidecar(tmp_path / "missing") == {}


def test_section_headings():
    page = (
        "Apple Inc.\nCONDENSED CONSOLIDATED BALANCE SHEETS (Unaudited)\nThree Months Ended\nCash 1,000\n"
        "Operating Expenses\nResearch and development rose.\n"
    )
    ignore = {"apple inc."}
    assert section_at(page, 0, 30, ignore) == "CONDENSED CONSOLIDATED BALANCE SHEETS (Unaudited)"
    assert section_at(page, page.index("Research"), len(page), ignore) == "Operating Expenses"
    assert section_at("plain words only here", 0, 10) is None


FILES = pd.DataFrame(
    [
        {
            "file": "a1.pdf",
            "title": "t",
            "company": "Apple Inc.",
            "ticker": "AAPL",
            "form": "10-Q",
            "fiscal_year": 2023,
            "fiscal_quarter": 2,
            "period_end": "2023-04-01",
        },
        {
            "file": "a2.pdf",
            "title": "t",
            "company": "Apple Inc.",
            "ticker": "AAPL",
            "form": "10-Q",
            "fiscal_year": 2023,
            "fiscal_quarter": 3,
            "period_end": "2023-07-01",
        },
        {
            "file": "m1.pdf",
            "title": "t",
            "company": "MICROSOFT CORPORATION",
            "ticker": "MSFT",
            "form": "10-Q",
            "fiscal_year": 2023,
            "fiscal_quarter": 3,
            "period_end": "2023-09-30",
        },
        {
            "file": "m0.pdf",
            "title": "t",
            "company": "MICROSOFT CORPORATION",
            "ticker": "MSFT",
            "form": "10-K",
            "fiscal_year": 2022,
            "fiscal_quarter": None,
            "period_end": "2022-06-30",
        },
        {
            "file": "notes.pdf",
            "title": "Notes",
            "company": None,
            "ticker": None,
            "form": None,
            "fiscal_year": None,
            "fiscal_quarter": None,
            "period_end": None,
        },
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


def test_a_quarter_named_in_a_collection_of_many_quarterly_reports_filters_them_all():
    """Clients send at most MAX_VALUES values a field; what the service reads from a question has no such bound."""
    many = pd.DataFrame(
        {
            "file": [f"2023 Q1 C{i:03d}.pdf" for i in range(100)],
            "title": "t",
            "company": [f"Company Number {i} Inc." for i in range(100)],
            "ticker": None,
            "form": "10-Q",
            "fiscal_year": 2023,
            "fiscal_quarter": 2,  # the filers' own quarter; people ask by the files' label
            "period_end": "2023-04-01",
            "period_aliases": [["2023 Q1"]] * 100,
        }
    ).astype(object)
    found = MentionMatcher(many).detect("What was revenue in Q1 2023?")
    assert sorted(found.filters.file or []) == many["file"].tolist()
    with pytest.raises(FilterError, match=f"at most {MAX_VALUES} values"):
        parse_filters({"file": many["file"].tolist()})


@pytest.mark.parametrize(
    "text, quarters",
    [
        ("revenue in 3Q23 and 4Q 2023", [(2023, 3), (2023, 4)]),
        ("guidance for 3QFY24", [(2024, 3)]),
        ("Q3-2023 results", [(2023, 3)]),
        ("FY23 Q3, FY2023 Q4 and 2024 Q1", [(2023, 3), (2023, 4), (2024, 1)]),
        ("the Q1 10-Q, a 2Q fine", []),
    ],
)
def test_the_ways_analysts_write_a_quarter(text, quarters):
    assert quarters_in(text) == quarters


def test_questions_name_what_they_mean():
    match = MentionMatcher(FILES)
    found = match.detect("What were Apple's total net sales for the quarter ended July 1, 2023?")
    assert found.filters.given() == {"company": ["Apple Inc."], "period_end": ["2023-07-01"]}
    assert _files(found.filters) == ["a2.pdf"]
    assert match.detect("MSFT risks in Q3 2023").filters.given() == {
        "company": ["MICROSOFT CORPORATION"],
        "fiscal_year": [2023],
        "fiscal_quarter": [3],
    }
    assert match.detect("MSFT risks in 3Q23").filters.given() == match.detect("MSFT risks in Q3 2023").filters.given()
    # "Latest" is the newest period of the named company, whatever its date.
    assert match.detect("Apple's most recent 10-Q").filters.file == ["a2.pdf"]
    # A year the named company has documents for filters; with no company it only boosts.
    found = match.detect("How did Microsoft's revenue change in 2023?")
    assert found.filters.given() == {"company": ["MICROSOFT CORPORATION"], "fiscal_year": [2023]}
    found = match.detect("Which filings discuss revenue in 2023?")
    assert found.filters.given() == {} and found.boosts.given() == {"fiscal_year": [2023]}
    # Forms only filter where the index holds more than one.
    assert match.detect("Microsoft's 10-K").filters.form == ["10-K"]
    # A period the named company has no filing for is a misreading, not an empty result.
    assert match.detect("Apple in Q1 2023").filters.given() == {"company": ["Apple Inc."]}
    # Words that merely contain a name do not match; questions that name nothing get no filter.
    assert match.detect("pineapple sales").filters.given() == {}


ALIASED = pd.DataFrame(
    [
        {
            "file": "jnj-2022.pdf",
            "company": "Johnson & Johnson",
            "aliases": ["Johnson & Johnson", "JNJ"],
            "ticker": "JNJ",
            "form": "10-K",
            "fiscal_year": 2022,
            "fiscal_quarter": None,
            "period_end": "2022-12-31",
            "period_aliases": None,
        },
        {
            "file": "jnj-2023.pdf",
            "company": "1-3215",
            "aliases": None,
            "ticker": None,
            "form": "10-K",
            "fiscal_year": 2023,
            "fiscal_quarter": None,
            "period_end": "2023-12-31",
            "period_aliases": None,
        },
        {
            "file": "sq-2015.pdf",
            "company": "Square, Inc.",
            "aliases": ["Square, Inc."],
            "ticker": "SQ",
            "form": "10-K",
            "fiscal_year": 2015,
            "fiscal_quarter": None,
            "period_end": "2015-12-31",
            "period_aliases": None,
        },
        {
            "file": "block-2016.pdf",
            "company": "Block, Inc.",
            "aliases": ["Block, Inc.", "Square, Inc."],
            "ticker": "SQ",
            "form": "10-K",
            "fiscal_year": 2016,
            "fiscal_quarter": None,
            "period_end": "2016-12-31",
            "period_aliases": None,
        },
        {
            "file": "2023 Q1 MSFT.pdf",
            "company": "Microsoft Corporation",
            "aliases": None,
            "ticker": "MSFT",
            "form": "10-Q",
            "fiscal_year": 2023,
            "fiscal_quarter": 2,
            "period_end": "2022-12-31",
            "period_aliases": ["2023 Q1"],
        },
        {
            "file": "2022 Q3 MSFT.pdf",
            "company": "Microsoft Corporation",
            "aliases": None,
            "ticker": "MSFT",
            "form": "10-Q",
            "fiscal_year": 2023,
            "fiscal_quarter": 1,
            "period_end": "2022-09-30",
            "period_aliases": ["2022 Q3"],
        },
    ]
).astype(object)


def _aliased(filters: Filters) -> list[str]:
    return ALIASED["file"][matching_files(ALIASED, filters)].tolist()


def test_names_people_use_and_years_that_filter():
    match = MentionMatcher(ALIASED)
    # A former name finds the company under its new name too; fiscal years filter, a comparison keeps every year.
    found = match.detect("How did Square's revenue grow from FY2015 to FY2016?")
    assert found.filters.fiscal_year == [2015, 2016] and _aliased(found.filters) == ["sq-2015.pdf", "block-2016.pdf"]
    assert _aliased(match.detect("Block's fiscal 2016 results").filters) == ["block-2016.pdf"]
    # An initialism is a guess: it boosts the company's files and filters nothing.
    found = match.detect("JnJ debt in 2022")
    assert found.filters.given() == {} and found.boosts.file == ["jnj-2022.pdf"]
    # The 2023 filing's company was read as its file number: a year the company has no filing for keeps that year's
    # files in the search, and boosts them, instead of searching only the company's other years.
    found = match.detect("Johnson & Johnson's debt in fiscal 2023 against fiscal 2022")
    assert found.filters.given() == {"file": ["jnj-2022.pdf", "jnj-2023.pdf"]} and found.boosts.file == ["jnj-2023.pdf"]
    # A folder's own labels are what its questions use: "Q1 2023" is the file labelled so, not fiscal Q1 2023.
    assert _aliased(match.detect("Microsoft's operating income in Q1 2023").filters) == ["2023 Q1 MSFT.pdf"]


def test_names_with_punctuation_are_found_however_the_question_writes_them():
    files = pd.DataFrame(
        {
            "file": ["mcd.pdf", "amzn.pdf"],
            "company": ["McDonald's Corporation", "Amazon.com, Inc."],
            "aliases": [["McDONALD’S CORPORATION"], None],
            "ticker": None,
            "form": "10-K",
            "fiscal_year": 2022,
            "fiscal_quarter": None,
            "period_end": "2022-12-31",
        }
    ).astype(object)
    match = MentionMatcher(files)
    for question in ("What were McDonald's total revenues in 2022?", "McDonald’s revenues in 2022", "MCDONALD'S 2022"):
        assert match.detect(question).filters.given() == {"company": ["McDonald's Corporation"], "fiscal_year": [2022]}
    assert match.detect("What did Amazon.com earn in 2022?").filters.company == ["Amazon.com, Inc."]
    assert match.detect("What did McDonald earn?").filters.given() == {}


def test_follow_ups_take_what_the_question_leaves_out_from_earlier_turns():
    match = MentionMatcher(FILES)
    history = [
        {"role": "user", "content": "Tell me about Microsoft's Q3 2023 results. " + "Cloud growth. " * 200},
        {"role": "assistant", "content": "Apple is mentioned here but is not the user's subject."},
    ]
    assert match.detect("What were its operating expenses?", history).filters.given() == {
        "company": ["MICROSOFT CORPORATION"],
        "fiscal_year": [2023],
        "fiscal_quarter": [3],
    }
    assert match.detect("What were Apple's net sales?", history).filters.company == ["Apple Inc."]


def test_header_names_the_document():
    meta = DocMetadata(
        company="Apple Inc.", ticker="AAPL", form="10-Q", fiscal_year=2023, fiscal_quarter=3, period_end="2023-07-01"
    )
    assert (
        chunk_header(meta, "x.pdf", "Gross Margin")
        == "Apple Inc. (AAPL) | Form 10-Q | Q3 2023 | period ended 2023-07-01 | Gross Margin"
    )


MIXED = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "filings-mixed"


def _mixed_truth() -> dict[str, dict]:
    lines = (MIXED / "truth.jsonl").read_text().splitlines()
    return {row["file"]: row for row in map(json.loads, lines)}


# Files named doc-NNN.pdf: a release with a fiscal year ending in January, a joint registrant table, a truncated
# download, a name whose ligature the PDF does not map, a glossy annual report, a 10-Q of a January year-end filer.
@pytest.mark.parametrize(
    "name", ["doc-002.pdf", "doc-007.pdf", "doc-031.pdf", "doc-043.pdf", "doc-018.pdf", "doc-021.pdf"]
)
def test_filings_of_other_companies_under_neutral_names(name):
    truth = _mixed_truth()[name]
    found = read_metadata(MIXED / "docs" / name)
    assert all(judge(found, truth).values()), (truth, found)
    assert found.get("fiscal_quarter") == truth.get("fiscal_quarter")


@pytest.mark.slow
def test_metadata_of_a_folder_it_has_never_seen():
    """The whole of filings-mixed (71 files, only the pages extraction reads): right for at least 0.97 per field."""
    result = check(MIXED / "docs", MIXED / "truth.jsonl")
    assert all(share >= 0.97 for share in result["share_right"].values()), misses_table(result)


_FILING_HEAD = [
    "UNITED STATES",
    "SECURITIES AND EXCHANGE COMMISSION",
    "Washington, D.C. 20549",
    "FORM 10-K",
    "ANNUAL REPORT PURSUANT TO SECTION 13 OR 15(d) OF THE SECURITIES EXCHANGE ACT OF 1934",
    "For the fiscal year ended December 31, 2022",
    "Commission File Number 001-12345",
]
_FILING_TAIL = [
    "Delaware 12-3456789",
    "(State or other jurisdiction of incorporation) (I.R.S. Employer Identification No.)",
    "Indicate by check mark whether the registrant is a well-known seasoned issuer. Yes No",
]
# Covers of the four kinds the shared filings lack, made on the spot; each body names other companies with a legal
# suffix (a supplier, the auditor), which is who came out before.
_COVERS = {
    "no caption, the name in capitals at the top": (
        ["NORTHWIND TRADERS", *_FILING_HEAD, *_FILING_TAIL],
        None,
        ("Northwind Traders", None),
    ),
    "small capitals read with a space after each first letter": (
        [
            *_FILING_HEAD,
            "Wide World Manufacturing Company",
            "(Exact name of registrant as specified in its charter)",
            *_FILING_TAIL,
        ],
        "Wide World Manufacturing Company",
        ("Wide World Manufacturing Company", None),
    ),
    "a release's headline in capitals with its listing on the line below": (
        [
            "Exhibit 99.1",
            "TAILSPIN TOYS ANNOUNCES FOURTH QUARTER FISCAL 2022 RESULTS",
            "(NASDAQ: TSTG)",
            "Revenue of $1.2 billion, up 12% year over year",
            "SEATTLE, March 1, 2022 -- Tailspin Toys today reported results for the fourth quarter of fiscal 2022.",
        ],
        None,
        ("Tailspin Toys", "TSTG"),
    ),
    "an ampersand in the name of a release's listing": (
        [
            "Exhibit 99.1",
            "Press Release",
            "Litware & Proseware (NYSE: LPW) today reported results for the third quarter of fiscal 2023.",
            "Quarterly revenue of $310 million; the quarter ended September 30, 2023.",
        ],
        None,
        ("Litware & Proseware", "LPW"),
    ),
}


@pytest.mark.parametrize("kind", list(_COVERS))
def test_registrant_names_on_covers_unlike_the_shared_ones(tmp_path, kind):
    lines, small_caps, (company, ticker) = _COVERS[kind]
    body = "We buy parts from Contoso Corporation and Fabrikam, Inc. Our auditor is Ernst & Young LLP. " * 3
    pdf = cover_pdf(tmp_path / "cover.pdf", lines, small_caps)
    pages = [*read_pdf_pages(pdf, PdfConfig()).texts, body]
    meta = extract_metadata("doc.pdf", pages, PdfInfo(""))
    assert company_key(meta.company or "") == company_key(company), meta
    assert meta.ticker == ticker


def test_a_download_cut_short_in_its_cross_reference_table_is_read_with_a_note(tmp_path):
    whole = text_pdf(tmp_path / "whole.pdf", ["Quarterly revenue rose in every segment.", "Cash flow from operations."])
    cut = tmp_path / "cut.pdf"
    data = whole.read_bytes()
    cut.write_bytes(data[: data.rfind(b"xref")])
    doc = read_pdf_pages(cut, PdfConfig())
    assert doc.texts == read_pdf_pages(whole, PdfConfig()).texts
    assert "truncated" in doc.note
