"""The figure check (rag.figures) and the policy the answer pipeline applies with it, on real filing pages."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from eval.datasets import Question
from eval.figures import as_served, evaluate
from ingest.metadata_extraction import extract_metadata
from ingest.pdf_pages import read_pdf_pages
from rag.answering import AnswerPipeline
from rag.config import PdfConfig
from rag.figures import WHY, check_figures, figures
from rag.types import AnswerRequest, Finished, RetrievedChunk, SearchResult, Usage
from tests.test_languages import ZH_DOCS

MIXED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "filings-mixed" / "docs"


@pytest.fixture(scope="module")
def apple_pages(sec_docs) -> list[RetrievedChunk]:
    """Every page of Apple's 10-Q for the quarter ended July 1, 2023, as sources [1], [2], ..."""
    texts = read_pdf_pages(sec_docs / "2023 Q3 AAPL.pdf", PdfConfig()).texts
    return [RetrievedChunk(f"p{i}", "2023 Q3 AAPL.pdf", i, 0.0, t) for i, t in enumerate(texts, 1)]


@pytest.fixture(scope="module")
def apple_filing(sec_docs) -> list[RetrievedChunk]:
    """The same pages with the metadata ingestion reads from the filing: fiscal Q3 2023, ended July 1, 2023."""
    return _filing(sec_docs, "2023 Q3 AAPL.pdf")


def _statuses(answer: str, sources: list[RetrievedChunk], **kwargs) -> dict[str, str]:
    return {c.text: c.status for c in check_figures(answer, sources, **kwargs).checks}


def _whys(answer: str, sources: list[RetrievedChunk], **kwargs) -> list[str | None]:
    """Which rule found each figure unsupported (None: supported)."""
    return [c.why for c in check_figures(answer, sources, **kwargs).checks]


def test_the_page_says_why_in_the_check_s_words():
    """The page (app.js) names each reason in the words the check's own WHY gives, so the CLI and the page agree."""
    page = (Path(__file__).parents[1] / "serving" / "static" / "app.js").read_text()
    for code, words in WHY.items():
        assert f'{code}: "{words}",' in page


def test_what_counts_as_a_figure():
    text = (
        "101. Item 7 of the 10-Q [2] says revenue was $81.8 billion, up 3.5% from 81,797 in 2022; "
        "3 segments; a loss of (1,234); costs of ($46) million, down (8)%; 营业收入12亿元; July 1, 2023."
    )
    assert [(f.text, f.kind) for f in figures(text)] == [
        ("$81.8 billion", "amount"),
        ("3.5%", "percent"),
        ("81,797", "number"),
        ("2022", "year"),
        ("1,234", "number"),
        ("($46) million", "amount"),
        ("(8)%", "percent"),
        ("12亿", "amount"),
        ("July 1, 2023", "date"),
    ]
    # A file's name holds no figure, and ends no earlier one: the sentences before a quoted name stay read.
    named = (
        'Microsoft invested $6,844 million in R&D. Its aims are not in "2023 Q1 MSFT.pdf" (SOURCE: 2023 Q2 MSFT.pdf).'
    )
    assert [f.text for f in figures(named)] == ["$6,844 million"]
    # A fiscal year written short is a year; basis points are hundredths of a percentage point.
    assert [(f.text, f.kind, f.value) for f in figures("FY2023 gross margin fell 50 bps.")] == [
        ("2023", "year", 2023),
        ("50 bps", "percent", 0.5),
    ]


def test_a_figure_rounded_and_scaled_is_found_on_its_page_and_row(apple_pages):
    answer = "Apple's total net sales for the quarter ended July 1, 2023 were $81.8 billion [4]."
    report = check_figures(answer, apple_pages, cited=[4])
    amount = next(c for c in report.checks if c.kind == "amount")
    # The statement of operations, "in millions": 81,797 rounds to the 81.8 written.
    assert (amount.status, amount.page, amount.cited) == ("supported", 4, True)
    assert amount.span is not None and amount.span.startswith("Total net sales 81,797")
    assert report.all_supported and report.summary == {"figures": 2, "supported": 2, "unsupported": 0, "cut_off": 0}


@pytest.mark.parametrize(
    "altered",
    [
        "$81.9 billion",  # a digit changed: outside the rounding of 81,797
        "$81.8 million",  # the scale word swapped
        "$82,959 million",  # the year-ago quarter's figure, for this year's quarter
        "$81,797",  # the table's figure without its scale: dollars, where the table counts millions
    ],
)
def test_an_altered_figure_is_not_supported(apple_pages, altered):
    answer = f"Apple's total net sales for the quarter ended July 1, 2023 were {altered}."
    statement = apple_pages[3:4]  # the statement of operations, as a search would give it
    assert _statuses(answer.replace(altered, "$81.8 billion"), statement)["$81.8 billion"] == "supported"
    assert _statuses(answer, statement)[altered] == "unsupported"


def test_a_year_that_heads_another_column_is_not_supported(apple_pages):
    right = "Apple's total net sales were $81,797 million in the third quarter of 2023."
    statement = apple_pages[3:4]  # its columns headed "July 1, 2023  June 25, 2022" twice
    assert _statuses(right, statement) == {"$81,797 million": "supported", "2023": "supported"}
    shifted = right.replace("2023", "2022")
    assert _statuses(shifted, statement) == {"$81,797 million": "unsupported", "2022": "unsupported"}
    assert _whys(shifted, statement) == ["not_found", "other_period"]
    # A fiscal year is named by the year it ends in: its quarter's column may be headed by the year before.
    fiscal = "Apple's total net sales were $81,797 million in the third quarter of fiscal 2024."
    assert _statuses(fiscal, statement)["$81,797 million"] == "supported"


def test_a_column_headed_by_a_day_is_that_day_s(sec_docs):
    """Apple's fiscal Q1 2023 table dates its columns "December 31, 2022" and "December 25, 2021": its 15.8% is not the
    rate of the quarter ended June 25, 2022, though that is 2022 too."""
    page = _pages_of(sec_docs, "2023 Q1 AAPL.pdf", 22)
    assert "December 31,\n2022\nDecember 25,\n2021" in page[0].text
    assert "Effective tax rate 15.8 % 16.0 %" in page[0].text
    said = "For the quarter ended {}, the effective tax rate was {}."
    assert _statuses(said.format("December 31, 2022", "15.8%"), page)["15.8%"] == "supported"
    assert _statuses(said.format("December 25, 2021", "16.0%"), page)["16.0%"] == "supported"
    assert _statuses(said.format("June 25, 2022", "15.8%"), page)["15.8%"] == "unsupported"


def test_a_quarter_named_must_be_one_the_filing_reports_on(apple_pages, apple_filing):
    shifted = "In the third quarter of 2022, the Company announced a new product line."
    # The filing prints the year-ago quarter beside its own, so the year is on its pages: only its period can tell.
    assert _statuses(shifted, apple_pages) == {"2022": "supported"}
    assert _statuses(shifted, apple_filing) == {"2022": "unsupported"}
    assert _whys(shifted, apple_filing) == ["not_a_source_period"]
    own = check_figures(shifted.replace("2022", "2023"), apple_filing).checks[0]
    assert own.status == "supported" and own.span is not None
    assert own.span.startswith("Apple Inc.") and "Q3 2023 | period ended 2023-07-01" in own.span
    # as analysts write a quarter, and a half year: the six months to the second quarter's end
    for written in ("3Q 2022", "Q3-2022", "FY2022 Q3", "the first half of fiscal 2022", "H1 FY2022"):
        assert _whys(shifted.replace("the third quarter of 2022", written), apple_filing) == ["not_a_source_period"]
        assert _whys(shifted.replace("the third quarter of 2022", written.replace("2022", "2023")), apple_filing) == [
            None
        ]
    compared = "Net sales fell in the third quarter of 2023 compared to the same quarter in 2022, and from Q3 2021."
    assert _statuses(compared, apple_filing) == {"2023": "supported", "2022": "supported", "2021": "unsupported"}
    year_ago = check_figures(compared, apple_filing).checks[1]
    assert year_ago.held_by == "period" and year_ago.span is not None
    assert year_ago.span.endswith("Q3 2023 | period ended 2023-07-01, beside the same period a year before")
    outlook = "The Company expects lower sales in the fourth quarter of fiscal 2023 than in the fourth quarter of 2021."
    assert _statuses(outlook, apple_filing) == {"2023": "supported", "2021": "unsupported"}


def test_a_range_s_start_is_compared_only_with_its_end(sec_docs, apple_filing):
    """A range ("from Q3 2022 to Q1 2023") runs over the sources' own quarters: its start is not the year-ago quarter of
    another source's, as "compared to Q3 2022" would be."""
    sources = (
        _filing(sec_docs, "2023 Q1 AAPL.pdf") + apple_filing
    )  # Apple's fiscal Q1 2023 (calendar Q4 2022) and Q3 2023
    assert _statuses("Net sales fell from Q1 2022 to Q1 2023.", sources) == {"2022": "supported", "2023": "supported"}
    assert _statuses("Net sales fell from Q3 2022 to Q1 2023.", sources) == {
        "2022": "unsupported",
        "2023": "supported",
    }
    assert _statuses("Net sales in Q3 2023 fell from Q3 2022.", sources) == {"2023": "supported", "2022": "supported"}


def test_a_period_compared_against_is_the_year_before_the_one_named(sec_docs, apple_filing):
    """The Q3 2022 filing prints Q3 2021 beside its own quarter, but a sentence about Q3 2023 compares with Q3 2022."""
    sources = _filing(sec_docs, "2022 Q3 AAPL.pdf") + apple_filing  # Apple's fiscal Q3 2022 and Q3 2023
    margin = "In the third quarter of 2023, the gross margin percentage increased compared to the same quarter in {}."
    assert _statuses(margin.format(2022), sources) == {"2023": "supported", "2022": "supported"}
    assert _statuses(margin.format(2021), sources) == {"2023": "supported", "2021": "unsupported"}
    # Named alone as the one compared against, the year-ago quarter of a source's own stands.
    assert _statuses("Net sales rose compared to Q3 2021.", sources) == {"2021": "supported"}


def _filing(sec_docs, name: str) -> list[RetrievedChunk]:
    """Every page of a filing, with the metadata ingestion reads from it."""
    doc = read_pdf_pages(sec_docs / name, PdfConfig())
    meta = extract_metadata(name, doc.texts, doc.info).model_dump(exclude_none=True)
    return [RetrievedChunk(f"{name}#{i}", name, i, 0.0, t, meta) for i, t in enumerate(doc.texts, 1)]


def test_a_quarter_told_as_later_must_come_after_the_one_before(sec_docs):
    """With Intel's filings of Q3 2022, Q2 2023 and Q3 2023 as sources, each quarter is a source's own; but "and then
    ... in Q3 2022" after "Q2 2023" tells of an earlier quarter as a later one."""
    sources = [_filing(sec_docs, f"{name} INTC.pdf")[0] for name in ("2022 Q3", "2023 Q2", "2023 Q3")]
    told = "Revenue fell from Q3 2022 to Q2 2023, and then rose again in {}."
    assert set(_statuses(told.format("Q3 2023"), sources).values()) == {"supported"}
    assert _whys(told.format("Q3 2022"), sources) == [None, None, "out_of_order"]
    # A list of quarters told as later is told in order.
    listed = "Revenue fell in Q3 2022. The subsequent rises in Q2 2023 and {} were small."
    assert set(_statuses(listed.format("Q3 2023"), sources).values()) == {"supported"}
    assert _whys(listed.format("Q3 2022"), sources) == [None, None, "out_of_order"]
    assert set(_statuses("Revenue rose in Q2 2023 and Q3 2022.", sources).values()) == {"supported"}
    # Compared with, or the start of a range, an earlier quarter is named on purpose.
    compared = "Revenue rose in Q2 2023, and then again in Q3 2023, compared to Q3 2022."
    assert set(_statuses(compared, sources).values()) == {"supported"}
    # An answer the token limit cut right after its last quarter's year may have been cut inside it ("Q3 2022" of
    # "Q3 20229..."): that year is cut off, whatever order it seems to break.
    cut = check_figures(told.format("Q3 2022").rstrip("."), sources, finish_reason="length")
    assert cut.checks[-1].status == "cut_off"


def test_a_period_compared_against_is_not_the_one_compared(sec_docs):
    """A quarter compared with itself is a mistake in one of the two: neither is supported. "The most recent
    quarter" names the sources' latest, and the same quarter a year before is that one's."""
    apple = [_filing(sec_docs, f"{name} AAPL.pdf")[0] for name in ("2022 Q3", "2023 Q3")]
    compared = "For the third quarter of {}, the Products gross margin increased compared to the same quarter in 2022."
    assert set(_statuses(compared.format(2023), apple).values()) == {"supported"}
    assert _whys(compared.format(2022), apple) == ["compared_with_itself"] * 2
    amazon = [page for name in ("2022 Q3", "2023 Q3") for page in _filing(sec_docs, f"{name} AMZN.pdf")]
    recent = "R&D spending in the most recent quarter increased compared to the same quarter of the previous year ({})."
    assert _statuses(recent.format("Q3 2022"), amazon) == {"2022": "supported"}
    # Q3 2021 is the year before the 2022 filing's quarter, but not the most recent one's.
    assert _statuses(recent.format("Q3 2021"), amazon) == {"2021": "unsupported"}


def test_a_quarter_named_is_the_quarter_of_its_figures_filing(sec_docs):
    """With a company's filings of two quarters as sources, each quarter is a source's own: a sentence's quarter must
    be the one of the filing that holds its figures (or of one that prints it beside its own), not any source's."""
    sources = _filing(sec_docs, "2022 Q3 INTC.pdf") + _filing(sec_docs, "2023 Q1 INTC.pdf")
    assert _statuses("In Q3 2022, Intel's inventories were $12,831 million.", sources) == {
        "2022": "supported",
        "$12,831 million": "supported",
    }
    # $13,224 million is the balance of December 31, 2022, which the Q1 2023 filing prints beside its own.
    assert _statuses("In Q3 2022, Intel's inventories were $13,224 million.", sources) == {
        "2022": "unsupported",
        "$13,224 million": "supported",
    }
    own = check_figures("In Q1 2023, Intel's inventories were $12,993 million.", sources).checks
    assert [c.status for c in own] == ["supported", "supported"]
    assert own[1].file == own[0].file == "2023 Q1 INTC.pdf"
    # The Q3 2023 filing prints Q3 2022 in its year-ago columns: there, only those columns are Q3 2022's figures.
    sources += _filing(sec_docs, "2023 Q3 INTC.pdf")
    year_ago = "In Q3 2022, Intel's Data Center and AI revenue was $4,255 million."
    assert _statuses(year_ago, sources) == {"2022": "supported", "$4,255 million": "supported"}
    fine = "In Q3 {}, Intel recorded a $401 million charge for an EC-imposed fine."
    assert _statuses(fine.format(2023), sources) == {"2023": "supported", "$401 million": "supported"}
    assert _whys(fine.format(2022), sources) == ["other_period", None]


def test_each_period_of_a_sentence_is_bound_to_the_figures_of_its_clause(sec_docs):
    """Two quarters in one sentence, each with its figure: each is the period of the figure beside it, not of either."""
    sources = _filing(sec_docs, "2022 Q3 NVDA.pdf") + _filing(sec_docs, "2023 Q3 NVDA.pdf")
    said = (
        "R&D expenses were $1,945 million in the third quarter of fiscal year 2023, "
        "and $2,294 million in the third quarter of fiscal year {}."
    )
    checks = check_figures(said.format(2024), sources).checks
    assert [(c.text, c.status) for c in checks] == [
        ("$1,945 million", "supported"),
        ("2023", "supported"),
        ("$2,294 million", "supported"),
        ("2024", "supported"),
    ]
    # Fiscal Q3 2023 is the first filing's own quarter, but $2,294 million is fiscal Q3 2024's.
    checks = check_figures(said.format(2023), sources).checks
    assert [c.status for c in checks] == ["supported", "supported", "supported", "unsupported"]
    # One clause, no comma: each period's figures are those between the period before it and itself.
    joined = (
        "R&D expenses were $1,945 million in the third quarter of fiscal year 2023 "
        "and increased to $2,294 million in the third quarter of fiscal year {}."
    )
    assert [c.status for c in check_figures(joined.format(2024), sources).checks] == ["supported"] * 4
    checks = check_figures(joined.format(2023), sources).checks
    assert [c.status for c in checks] == ["supported", "supported", "supported", "unsupported"]


def test_a_fiscal_quarter_s_columns_are_dated_by_its_end(sec_docs):
    """Apple's fiscal first quarter of 2023 ended December 31, 2022: its statement's column says 2022."""
    doc = read_pdf_pages(sec_docs / "2023 Q1 AAPL.pdf", PdfConfig())
    meta = extract_metadata("2023 Q1 AAPL.pdf", doc.texts, doc.info).model_dump(exclude_none=True)
    statement = next(t for t in doc.texts if "Total net sales 117,154" in t)
    answer = "Apple's total net sales for Q1 2023 were $117,154 million."
    without = RetrievedChunk("s", "2023 Q1 AAPL.pdf", 1, 0.0, statement)
    assert _statuses(answer, [without]) == {"2023": "unsupported", "$117,154 million": "unsupported"}
    with_period = RetrievedChunk("s", "2023 Q1 AAPL.pdf", 1, 0.0, statement, meta)
    assert _statuses(answer, [with_period]) == {"2023": "supported", "$117,154 million": "supported"}


def test_a_quarter_named_fiscal_is_the_filing_s_fiscal_quarter(sec_docs):
    """NVIDIA's fiscal third quarter of 2023 ended October 30, 2022: "the third quarter of 2022" to most readers, but
    "the third quarter of fiscal 2022" is a year earlier."""
    doc = read_pdf_pages(sec_docs / "2022 Q3 NVDA.pdf", PdfConfig())
    meta = extract_metadata("2022 Q3 NVDA.pdf", doc.texts, doc.info).model_dump(exclude_none=True)
    assert (meta["fiscal_year"], meta["fiscal_quarter"]) == (2023, 3)
    filing = [RetrievedChunk(f"p{i}", "2022 Q3 NVDA.pdf", i, 0.0, t, meta) for i, t in enumerate(doc.texts, 1)]
    said = "NVIDIA's revenue grew in the third quarter of {}."
    statuses = {period: _statuses(said.format(period), filing) for period in ("2022", "fiscal 2023", "fiscal 2022")}
    assert statuses == {
        "2022": {"2022": "supported"},
        "fiscal 2023": {"2023": "supported"},
        "fiscal 2022": {"2022": "unsupported"},
    }
    # An earlier quarter of its fiscal year is one its year-to-date columns report on; a later one is not.
    earlier = check_figures("In the first quarter of fiscal 2023, NVIDIA ended an acquisition.", filing).checks[0]
    assert earlier.status == "supported" and (earlier.span or "").endswith(", in its year to date")
    assert _statuses("In the fourth quarter of fiscal 2022, NVIDIA ended it.", filing) == {"2022": "unsupported"}
    # The statement's page dates its columns "Oct 30, 2022" and never prints "2023": the document's period tells.
    statement = [c for c in filing if "Research and development 1,945" in c.text]
    assert len(statement) == 1 and "2023" not in statement[0].text
    said = "R&D was $1,945 million in the third quarter of fiscal 2023."
    assert _statuses(said, statement) == {"$1,945 million": "supported", "2023": "supported"}


def test_what_filings_call_by_other_names(apple_pages):
    statement = apple_pages[3:4]
    assert _statuses("R&D spending was $7,442 million.", statement) == {"$7,442 million": "supported"}
    assert _statuses("Its revenue was $81,797 million.", statement) == {"$81,797 million": "supported"}
    assert _statuses("Its spending was $7,442 million.", statement) == {"$7,442 million": "unsupported"}
    # as analysts write them
    assert _statuses("Opex were $13,415 million and COGS $45,384 million.", statement) == {
        "$13,415 million": "supported",
        "$45,384 million": "supported",
    }
    assert _statuses("Operating profit was $22,998 million.", statement) == {"$22,998 million": "supported"}
    assert _statuses("Its costs were $13,415 million.", statement) == {"$13,415 million": "unsupported"}


def test_what_a_figure_measures_may_be_said_before_it_or_asked(apple_pages):
    statement = apple_pages[3:4]
    before = (
        "Costs rose. Apple reports research and development on its own line. It was $7,442 million, not $7,443 million."
    )
    assert _statuses(before, statement) == {"$7,442 million": "supported", "$7,443 million": "unsupported"}
    vague = "Its spending was $7,442 million."
    asked = "How much did Apple spend on research and development in the quarter?"
    assert _statuses(vague, statement, question=asked) == {"$7,442 million": "supported"}
    # The question names what is asked, not what every figure is: a figure of another line still needs its own words.
    assert _statuses("Its spending was $5,973 million.", statement, question=asked) == {"$5,973 million": "unsupported"}


def test_what_a_list_s_figures_measure_may_be_said_in_the_answer_s_opening_sentence(sec_docs):
    """Amazon files research and development as "Technology and infrastructure": an answer that says so in its
    opening sentence has its list below it read with those words, where the list's own find no line."""
    statement = _pages_of(sec_docs, "2023 Q2 AMZN.pdf", 4)
    answer = (
        'Amazon\'s R&D expenditure, categorized under "Technology and infrastructure" within operating expenses, was '
        "$21,931 million in the quarter ended June 30, 2023. Comparing this to other periods:\n\n"
        "- For the six months ended June 30, 2023, the R&D expenditure was {}."
    )
    assert _statuses(answer.format("$42,381 million"), statement)["$42,381 million"] == "supported"
    assert _statuses(answer.format("$42,382 million"), statement)["$42,382 million"] == "unsupported"
    unsaid = answer.replace(', categorized under "Technology and infrastructure" within operating expenses,', "")
    assert _statuses(unsaid.format("$42,381 million"), statement)["$42,381 million"] == "unsupported"


def test_words_that_say_nothing_hold_no_figure(sec_docs):
    """Amazon's page: "We repurchased ... for $2.7 billion ... under these programs." A question's "these" says
    nothing of what the answer's figure measures."""
    page = _pages_of(sec_docs, "2023 Q1 AMZN.pdf", 16)
    assert "$2.7 billion during the three months ended March 31, 2022 under these programs" in " ".join(
        page[0].text.split()
    )
    asked = "How did Amazon's inventory valuation allowance change over these quarters?"
    assert _statuses("It further decreased to $2.7 billion.", page, question=asked) == {"$2.7 billion": "unsupported"}
    assert _statuses("It repurchased stock for $2.7 billion.", page, question=asked) == {"$2.7 billion": "supported"}
    # Intel's "... a receivable ... of $201 million recorded within other current assets" is no restructuring charge.
    intel = _pages_of(sec_docs, "2023 Q2 INTC.pdf", 17)
    assert "of $201 million recorded within other current assets" in " ".join(intel[0].text.split())
    assert _statuses("Restructuring and other charges were $201 million.", intel) == {"$201 million": "unsupported"}
    assert _statuses("A receivable of $201 million is in current assets.", intel) == {"$201 million": "supported"}


def test_a_number_written_with_its_unit_is_that_number(sec_docs):
    """Intel's "our New Mexico facility for 300mm advanced analog processing" holds the answer's "300 mm"; "$5MM" is
    no figure read as five dollars."""
    page = _pages_of(sec_docs, "2023 Q3 INTC.pdf", 5)
    answer = "Intel will provide foundry services through its New Mexico facility for 300 mm analog processing."
    held = check_figures(answer, page).checks[0]
    assert (held.text, held.status) == ("300", "supported") and "facility for 300mm" in (held.span or "")
    assert _statuses(answer.replace("300 mm", "200 mm"), page) == {"200": "unsupported"}
    assert [f.text for f in figures("a 300mm wafer, a $5MM deal")] == ["300"]


def test_a_date_named_as_a_period_s_end_or_a_balance_s(apple_pages, apple_filing):
    answer = (
        "For the quarter ended July 1, 2023, sales fell. For the quarter ended June 25, 2022, they rose. "
        "Sales fell in the quarter ended July 1, 2023, compared to the quarter ended June 25, 2022. "
        "As of July 1, 2023, and as of September 24, 2022, the Company held cash; as of June 25, 2022, it held less."
    )
    checks = [(c.text, c.status) for c in check_figures(answer, apple_filing).checks]
    assert checks == [
        ("July 1, 2023", "supported"),  # the filing's period
        ("June 25, 2022", "unsupported"),  # the year-ago quarter, named as this one
        ("July 1, 2023", "supported"),
        ("June 25, 2022", "supported"),  # the year-ago quarter, named as the one compared against
        ("July 1, 2023", "supported"),
        ("September 24, 2022", "supported"),  # the fiscal year's start: the balance sheet's other column
        ("June 25, 2022", "unsupported"),  # no balance sheet of the filing is stated then
    ]
    # Without the filing's period, a date on its pages is all the check can ask for.
    assert {c.status for c in check_figures(answer, apple_pages).checks} == {"supported"}
    # A period's end in brackets names the period too; a date that names none must stand on a line about its sentence.
    bracketed = (
        "Sales rose against the same quarter of the previous year (June 25, 2022), and the quarter (July 1, 2023)."
    )
    assert set(_statuses(bracketed, apple_filing).values()) == {"supported"}
    lawsuit = "A lawsuit was filed on July 1, 2023."
    assert _statuses(lawsuit, apple_filing) == {"July 1, 2023": "unsupported"}
    assert _statuses("Net sales were reported for July 1, 2023.", apple_pages) == {"July 1, 2023": "supported"}


def test_a_page_number_is_in_no_table_s_scale():
    page = "Debt\n(In millions)\nCommercial paper 11 9\nFinancial Statements Notes to Financial Statements 12"
    source = [RetrievedChunk("p", "", 1, 0.0, page)]
    assert _statuses("Commercial paper was $11.0 million.", source) == {"$11.0 million": "supported"}
    assert _statuses("Financial statements show $12.0 million.", source) == {"$12.0 million": "unsupported"}


def test_a_year_naming_no_period_stands_beside_the_same_words(apple_filing):
    """A filing prints its years in every column; a year that names no period ("the 2022 Form 10-K", "the Inflation
    Reduction Act of 2022") must stand on a source's line beside the words it stands beside in the answer."""
    answer = (
        "There have been no material changes to the critical accounting estimates since the 2022 Form 10-K. "
        "Repurchases are subject to excise tax under the Inflation Reduction Act of 2022."
    )
    assert _statuses(answer, apple_filing) == {"2022": "supported"}
    assert any("2021" in page.text for page in apple_filing)
    shifted = check_figures(answer.replace("2022", "2021"), apple_filing).checks
    assert [(c.text, c.status) for c in shifted] == [("2021", "unsupported")] * 2
    # A year with no words beside it in its clause ("In 2022, ...") may stand anywhere, as before.
    assert _statuses("In 2021, the Company repurchased shares.", apple_filing) == {"2021": "supported"}


def test_a_year_s_words_are_read_over_its_wrapped_line_and_u_s_ends_no_sentence(sec_docs):
    """Amazon's filing wraps "... associated with our 2022 U.S." / "federal R&D credit." over two layout lines. The
    answer's "U.S." ends no sentence, so "2021" is held to "federal", the word beside it; the filing's sentence has
    it, though not on the year's layout line."""
    filing = _filing(sec_docs, "2023 Q3 AMZN.pdf")
    assert any("2022 U.S.\nfederal R&D credit" in page.text for page in filing)
    answer = "A tax benefit came from the qualifying expenditures associated with the {} U.S. federal R&D credit."
    assert _statuses(answer.format(2022), filing) == {"2022": "supported"}
    assert _statuses(answer.format(2021), filing) == {"2021": "unsupported"}


def test_an_amount_in_one_currency_is_not_the_same_number_in_another(sec_docs):
    """Intel's page: "a fine in the amount of €1.1 billion ($1.4 billion as of May 2009)". No rate converts one into
    the other here, and the number in the other currency is no source."""
    page = _pages_of(sec_docs, "2022 Q3 INTC.pdf", 21)
    assert _statuses("The EC imposed a fine of €1.1 billion ($1.4 billion).", page) == {
        "€1.1 billion": "supported",
        "$1.4 billion": "supported",
    }
    assert _statuses("The EC imposed a fine of $1.1 billion.", page) == {"$1.1 billion": "unsupported"}
    assert _statuses("The EC imposed a fine of €1.4 billion.", page) == {"€1.4 billion": "unsupported"}
    # written with its code, or a dollar of another country; "¥" is the yen's sign and the yuan's
    assert _statuses("The EC imposed a fine of EUR 1.1 billion.", page) == {"EUR 1.1 billion": "supported"}
    assert _statuses("The EC imposed a fine of HK$1.4 billion.", page) == {"HK$1.4 billion": "unsupported"}
    japan = [RetrievedChunk("p1", "notes.pdf", 1, 0.0, "Net sales in Japan were ¥120 billion in the quarter.")]
    assert _statuses("Net sales in Japan were JPY 120 billion.", japan) == {"JPY 120 billion": "supported"}
    assert _statuses("Net sales in Japan were $120 billion.", japan) == {"$120 billion": "unsupported"}


def _pages_of(sec_docs, name: str, *pages: int) -> list[RetrievedChunk]:
    texts = read_pdf_pages(sec_docs / name, PdfConfig()).texts
    return [RetrievedChunk(f"p{i}", name, i, 0.0, texts[i - 1]) for i in pages]


def test_durations_and_fair_value_levels_are_no_amounts(sec_docs):
    """A lease's "11.4 years" on a page "in millions" is not $11.4 million, nor is "Level 1" $1.0 million."""
    leases = _pages_of(sec_docs, "2022 Q3 AMZN.pdf", 12)
    assert "in millions" in leases[0].text.lower() and "operating leases 11.3 years 11.4 years" in leases[0].text
    lease_term = "The weighted-average remaining lease term of operating leases was 11.4 years."
    assert _statuses(lease_term, leases) == {"11.4": "supported"}
    cash = "Cash flows from operating leases were $11.4 million."
    assert _statuses(cash, leases) == {"$11.4 million": "unsupported"}
    levels = _pages_of(sec_docs, "2023 Q1 INTC.pdf", 17)
    assert "Level 1 investments consist of money market funds" in levels[0].text
    paper = "Intel had $1.0 million of commercial paper investments outstanding."
    assert _statuses(paper, levels) == {"$1.0 million": "unsupported"}


def test_a_table_s_cell_counts_at_its_header_s_scale_only():
    """Salesforce's "(in millions, except remaining performance" / "obligation, which is presented in billions)" wraps
    its exception over a line: its revenue is no $31,352 billion. Boston Properties' "$ 2,490,821" of a table "in
    thousands" is $2.49 billion, not $2.49 million."""
    salesforce = _pages_of(MIXED, "doc-044.pdf", 46)
    assert _statuses("Total revenues were $31,352 million.", salesforce) == {"$31,352 million": "supported"}
    assert _statuses("Total revenues were $31,352 billion.", salesforce) == {"$31,352 billion": "unsupported"}
    boston = _pages_of(MIXED, "doc-061.pdf", 44)
    assert _statuses("Total revenue was $2.49 billion.", boston) == {"$2.49 billion": "supported"}
    assert _statuses("Total revenue was $2.49 million.", boston) == {"$2.49 million": "unsupported"}


def test_a_header_s_scale_of_things_counted_counts_those_things_only():
    """Apple's 10-K: "(dollars in millions and units in thousands)". The iPhone's "211,884" units are 211,884
    thousand units, not million; its "$ 136,700" of net sales are $136,700 million, not thousand; a figure that says
    neither what it counts nor its currency may be either."""
    page = _pages_of(MIXED, "doc-059.pdf", 26)
    assert "(dollars in millions and units in\nthousands)" in page[0].text
    units = "Apple sold {} units of iPhone."
    assert _statuses(units.format("211,884 thousand"), page) == {"211,884 thousand": "supported"}
    assert _statuses(units.format("211,884 million"), page) == {"211,884 million": "unsupported"}
    sales = "iPhone net sales were {}."
    assert _statuses(sales.format("$136,700 million"), page) == {"$136,700 million": "supported"}
    assert _statuses(sales.format("$136,700 thousand"), page) == {"$136,700 thousand": "unsupported"}
    assert _statuses("iPhone sales were 211,884 million.", page) == {"211,884 million": "supported"}


def test_a_scale_given_as_an_exception_for_shares_counts_shares(sec_docs):
    """Apple's repurchases, "(in millions, except number of shares, which are reflected in thousands, and per share
    amounts)": "Open market and privately negotiated purchases 42,676 $ 184.34 42,676" are 42,676 thousand shares,
    not million."""
    page = _pages_of(sec_docs, "2023 Q3 AAPL.pdf", 24)
    said = "Open market and privately negotiated purchases were {} shares."
    for right in ("42,676 thousand", "42,676,000", "42.7 million"):
        assert _statuses(said.format(right), page) == {right: "supported"}
    assert _statuses(said.format("42,676 million"), page) == {"42,676 million": "unsupported"}


def test_a_row_s_label_wrapped_onto_the_line_above_is_read_with_it():
    """Boston Properties: "Funds from Operations attributable to Boston Properties," / "Inc. (1) $ 823,715 ..."."""
    page = _pages_of(MIXED, "doc-061.pdf", 45)
    assert "Funds from Operations attributable to Boston Properties,\nInc. (1) $ 823,715" in page[0].text
    said = "Funds from Operations attributable to the company were ${} thousand."
    assert _statuses(said.format("823,715"), page) == {"$823,715 thousand": "supported"}
    assert _statuses(said.format("823,716"), page) == {"$823,716 thousand": "unsupported"}


def test_per_share_amounts_are_at_face_value(apple_pages):
    """The statement is "(In millions, except ... per share amounts)": the cents under "Earnings per share:" are
    dollars, and so are those of the repurchases' column "Average Price" / "Paid Per" / "Share", whose header says
    the same far above its rows."""
    statement = apple_pages[3:4]
    assert _statuses("Diluted earnings per share were $1.26.", statement) == {"$1.26": "supported"}
    assert _statuses("Diluted earnings per share were $1.62.", statement) == {"$1.62": "unsupported"}
    repurchases = apple_pages[23:24]
    assert "Open market and privately negotiated purchases 42,676 $ 184.34 42,676" in repurchases[0].text
    paid = "Open market and privately negotiated purchases were made at an average price of {}."
    assert _statuses(paid.format("$184.34"), repurchases) == {"$184.34": "supported"}
    assert _statuses(paid.format("$184.34 million"), repurchases) == {"$184.34 million": "unsupported"}


def test_a_year_of_a_later_clause_binds_no_value_before_it():
    """FedEx's "Other retirement plans income (expense) 1,054 (726) 1,983" under "2023 2022 2021": the 2022 of the
    bracket is the expense's, not the income's."""
    page = _pages_of(MIXED, "doc-058.pdf", 81)
    answer = "Other retirement plans income was $1,054 million (against a $726 million expense in 2022)."
    assert _statuses(answer, page) == {"$1,054 million": "supported", "$726 million": "supported", "2022": "supported"}
    swapped = "Other retirement plans income was $726 million in 2023."
    assert _statuses(swapped, page) == {"$726 million": "unsupported", "2023": "unsupported"}


def test_dates_in_prose_head_no_table_column(sec_docs):
    """A line of prose ("... may be terminated at any time. As of September") above "30, 2023, $18.7 billion remained
    of this $60.0 billion ..." is no table header giving the two amounts the years 2021 and 2023."""
    doc = read_pdf_pages(sec_docs / "2023 Q3 MSFT.pdf", PdfConfig())
    meta = extract_metadata("2023 Q3 MSFT.pdf", doc.texts, doc.info).model_dump(exclude_none=True)
    page = next(i for i, t in enumerate(doc.texts, 1) if "remained of this $60.0 billion" in t)
    assert "at any time. As of September\n30, 2023, $18.7 billion" in doc.texts[page - 1]
    source = [RetrievedChunk("p", "2023 Q3 MSFT.pdf", page, 0.0, doc.texts[page - 1], meta)]
    answer = "As of September 30, 2023, $18.7 billion remained of the $60.0 billion share repurchase program."
    assert set(_statuses(answer, source).values()) == {"supported"}


def test_a_value_on_a_line_about_something_else_is_a_coincidence(sec_docs):
    """Two pages a search would give: the statement of equity's "Cash dividends declared ... (2,036)" rounds to $2.0
    billion and shares "cash" with the sentence, but the prose line about the commercial paper shares far more."""
    texts = read_pdf_pages(sec_docs / "2023 Q1 INTC.pdf", PdfConfig()).texts
    equity, liquidity = (
        next(i for i, t in enumerate(texts, 1) if line in t) for line in ("Cash dividends declared", "settled in cash")
    )
    pages = [RetrievedChunk(f"p{i}", "2023 Q1 INTC.pdf", i, 0.0, texts[i - 1]) for i in (equity, liquidity)]
    answer = "Intel settled in cash $2.9 billion of its commercial paper and had $1.0 billion outstanding."
    right = check_figures(answer, pages).checks[0]
    assert (right.status, right.page) == ("supported", liquidity)
    assert "Cash dividends declared" in texts[equity - 1] and "(2,036)" in texts[equity - 1]
    assert _statuses(answer.replace("$2.9", "$2.0"), pages)["$2.0 billion"] == "unsupported"


def test_a_value_that_only_rounds_to_a_source_s_needs_a_line_more_about_its_sentence():
    """A line sharing one word of four with the sentence holds the same figure written the same, but not one it only
    rounds to: some line of a filing rounds to almost any figure of two digits."""
    closest = "Cash flows from operations fell 13% in the quarter, on lower revenue."
    stake = "We agreed to sell an additional {} stake in the operations of our foundry business."
    answer = "Cash flows from operations fell 12% in the quarter."

    def sources(*texts: str) -> list[RetrievedChunk]:
        return [RetrievedChunk(f"p{i}", "notes.pdf", i, 0.0, t) for i, t in enumerate(texts, 1)]

    assert _statuses(answer.replace("12%", "13%"), sources(closest, stake.format("12.4%"))) == {"13%": "supported"}
    assert _statuses(answer, sources(closest, stake.format("12.4%"))) == {"12%": "unsupported"}
    assert _statuses(answer, sources(closest, stake.format("12%"))) == {"12%": "supported"}


def test_a_year_in_prose_is_no_amount_in_a_table_s_scale(sec_docs):
    """A page "in millions" whose prose says "the first three months of 2023": 2023 is a year, not $2.0 billion."""
    texts = read_pdf_pages(sec_docs / "2023 Q1 INTC.pdf", PdfConfig()).texts
    page = next(i for i, t in enumerate(texts, 1) if "Due to our net loss in the first three months of 2023" in t)
    assert "in millions" in texts[page - 1].lower()
    source = [RetrievedChunk("p", "2023 Q1 INTC.pdf", page, 0.0, texts[page - 1])]
    answer = "Due to its net loss, the assumed exercise of outstanding stock options was $2.0 billion."
    assert _statuses(answer, source) == {"$2.0 billion": "unsupported"}


def test_a_list_of_values_in_prose_is_bound_to_its_list_of_periods(sec_docs):
    """A value of "... $2.8 billion and $2.7 billion as of December 31, 2022 and June 30, 2023" is its own
    date's, as a table's cell is its column's."""
    texts = read_pdf_pages(sec_docs / "2023 Q2 AMZN.pdf", PdfConfig()).texts
    page = next(i for i, t in enumerate(texts, 1) if "$2.8 billion and $2.7 billion as of December 31, 2022" in t)
    source = [RetrievedChunk("p", "2023 Q2 AMZN.pdf", page, 0.0, texts[page - 1])]
    said = "As of {}, the inventory valuation allowance was {}."
    assert set(_statuses(said.format("June 30, 2023", "$2.7 billion"), source).values()) == {"supported"}
    assert set(_statuses(said.format("December 31, 2022", "$2.8 billion"), source).values()) == {"supported"}
    assert _statuses(said.format("June 30, 2023", "$2.8 billion"), source)["$2.8 billion"] == "unsupported"


def test_a_span_is_its_table_row_or_its_prose_sentence(sec_docs, apple_pages):
    """A reader is shown the row that holds a figure, or in prose its whole sentence: a PDF breaks one over layout
    lines ("... $972 million of borrowings under our credit" / "facility."), not over a heading before it."""
    texts = read_pdf_pages(sec_docs / "2023 Q3 AMZN.pdf", PdfConfig()).texts
    page = next(i for i, t in enumerate(texts, 1) if "Note 5 — DEBT" in t)
    debt = [RetrievedChunk("p", "2023 Q3 AMZN.pdf", page, 0.0, texts[page - 1])]
    (borrowed,) = check_figures("Amazon had $972 million of borrowings under its credit facility.", debt).checks
    assert borrowed.span == (
        "As of September 30, 2023, we had $66.5 billion of unsecured senior notes outstanding (the “Notes”) and "
        "$972 million of borrowings under our credit facility."
    )
    texts = read_pdf_pages(sec_docs / "2023 Q3 MSFT.pdf", PdfConfig()).texts
    page = next(i for i, t in enumerate(texts, 1) if "NOTE 17 — SUBSEQUENT EVENT" in t)
    event = [RetrievedChunk("p", "2023 Q3 MSFT.pdf", page, 0.0, texts[page - 1])]
    (paid,) = check_figures("Microsoft paid $61.8 billion for Activision Blizzard.", event).checks
    assert paid.span is not None and paid.span.startswith("On October 13, 2023, we completed our acquisition")
    assert paid.span.endswith("for a cash payment of $61.8 billion, net of cash acquired.")  # "Inc." ends none
    (row,) = check_figures("Apple's total net sales were $81.8 billion.", apple_pages).checks
    assert row.span is not None and row.span.startswith("Total net sales 81,797") and "." not in row.span


def test_a_value_is_shown_on_the_line_most_about_its_sentence(sec_docs):
    """Intel's page 26 holds an 8% too ("Notebook volume increased 8% ..."), and comes first among the sources: the
    reader is shown page 5's line, which says what the answer says."""
    texts = read_pdf_pages(sec_docs / "2023 Q3 INTC.pdf", PdfConfig()).texts
    sources = [RetrievedChunk(f"p{page}", "2023 Q3 INTC.pdf", page, 0.0, texts[page - 1]) for page in (26, 5)]
    answer = "Intel's total revenue in Q3 2023 was $14.2 billion, down $1.2 billion or 8% from Q3 2022."
    share = next(c for c in check_figures(answer, sources).checks if c.text == "8%")
    assert share.page == 5 and share.span is not None and share.span.startswith("Total revenue of $14.2 billion")


def test_a_period_is_shown_as_the_one_of_the_document_that_holds_its_figures(sec_docs):
    """Intel's and Amazon's filings both end on September 30, 2023: the date of a sentence about Amazon's borrowings is
    shown as Amazon's period, whichever source comes first."""
    intel = _filing(sec_docs, "2023 Q3 INTC.pdf")[:1]
    amazon = [page for page in _filing(sec_docs, "2023 Q3 AMZN.pdf") if "Note 5 — DEBT" in page.text]
    answer = "As of September 30, 2023, Amazon had $972 million of borrowings under its credit facility."
    day, borrowed = check_figures(answer, intel + amazon).checks
    assert day.held_by == "period" and day.file == borrowed.file == "2023 Q3 AMZN.pdf"
    assert day.span is not None and day.span.startswith("AMAZON.COM")


def test_a_year_ago_period_named_as_its_figures_own_is_held_by_their_line(sec_docs):
    """The Q1 2023 filing reports Q1 2022 only as the year before its own: a figure said to be Q1 2022's must stand in
    a table (whose columns say whose) or on a line that names 2022, not on one that says it is 2023's."""
    filing = _filing(sec_docs, "2023 Q1 INTC.pdf")
    notes = (
        "In the Q1 2023 10-Q, Intel reported that in the first quarter of {}, it issued $11.0 billion of senior notes."
    )
    assert _whys(notes.format(2023), filing) == [None, None, None]
    assert _whys(notes.format(2022), filing) == [None, "other_period", None]
    # Each period beside its own value: one stated in prose and one in a table's year-ago column are both right.
    compared = "Intel's revenue was $11.7 billion in Q1 2023, down from $18.4 billion in Q1 2022."
    assert set(_statuses(compared, filing).values()) == {"supported"}


def test_a_month_without_its_day_stands_on_a_line_nearly_as_about_its_sentence_as_any(sec_docs):
    """Intel's Q2 2023 filing expects the NAND sale's second closing "no earlier than March 2025", and a trial is
    scheduled "for March 2024" on another page: a month is coarse, and a line about something else that shares a word
    with the sentence holds some other event's month. A day is precise: it stands on any line about its sentence,
    though a sentence of two days is closer to the other's line."""
    filing = _filing(sec_docs, "2023 Q2 INTC.pdf")
    closing = (
        "The transaction will be completed in two closings, with the first closing occurring on December 29, 2021, "
        "and the second closing expected to be no earlier than {}."
    )
    assert _whys(closing.format("March 2025"), filing) == [None, None]
    assert _whys(closing.format("March 2024"), filing) == [None, "not_found"]


def test_a_month_written_without_its_day(sec_docs):
    doc = read_pdf_pages(sec_docs / "2023 Q2 AMZN.pdf", PdfConfig())
    meta = extract_metadata("2023 Q2 AMZN.pdf", doc.texts, doc.info).model_dump(exclude_none=True)
    pages = [RetrievedChunk(f"p{i}", "2023 Q2 AMZN.pdf", i, 0.0, t, meta) for i, t in enumerate(doc.texts, 1)]
    answer = "In August 2022, Amazon agreed to acquire iRobot, as amended in July 2023, for about $1.7 billion."
    assert [(f.text, f.kind) for f in figures(answer)] == [
        ("August 2022", "date"),
        ("July 2023", "date"),
        ("$1.7 billion", "amount"),
    ]
    assert set(_statuses(answer, pages).values()) == {"supported"}
    # The filing's years are on its pages either way; the month with its year is not.
    assert _statuses(answer.replace("August 2022", "August 2021"), pages)["August 2021"] == "unsupported"
    # A month is no source for a day of it.
    assert _statuses(answer.replace("August 2022", "August 16, 2022"), pages)["August 16, 2022"] == "unsupported"


def test_a_change_computed_from_two_cited_figures(apple_pages):
    answer = (
        "Research and development rose from $6,797 million to $7,442 million, an increase of $645 million, or 9.5%."
    )
    checks = {c.text: c for c in check_figures(answer, apple_pages).checks}
    assert checks["$645 million"].derived_from == ["$6,797 million", "$7,442 million"]
    assert checks["9.5%"].status == "supported" and checks["9.5%"].derived_from
    assert _statuses(answer.replace("9.5%", "12.5%"), apple_pages)["12.5%"] == "unsupported"
    # Its operands stand beside it, in its sentence or the one before, not anywhere in a long answer.
    apart = (
        "Research and development rose from $6,797 million to $7,442 million. Products made up most of net sales. "
        "Services grew by 9.5%."
    )
    assert _statuses(apart, apple_pages)["9.5%"] == "unsupported"
    assert _statuses(apart.replace(" Products made up most of net sales.", ""), apple_pages)["9.5%"] == "supported"
    # A change has two operands that count: $496 million is not what lies between 190 and $496 million.
    source = RetrievedChunk("c1", "report.pdf", 1, 0.0, "(In millions)\nInterest expense 496\nOffices 190")
    answer = "Rent paid was $496 million. Interest expense was $496 million, across 190 offices."
    checks = check_figures(answer, [source]).checks
    assert [(c.text, c.status, c.derived_from) for c in checks] == [
        ("$496 million", "unsupported", []),
        ("$496 million", "supported", []),
        ("190", "supported", []),
    ]


def test_a_share_computed_from_two_figures_where_the_answer_says_so():
    """Apple's five-year table holds net income $55,256 million and total assets $338,516 million for 2019: the
    answer's 16.3% is the one over the other, written after a colon or as "% of"; without a word that says it is a
    share, some two figures' ratio rounds to almost any percentage."""
    table = _pages_of(MIXED, "doc-036.pdf", 20)
    over = "About 16.3%: net income $55,256 million over total assets $338,516 million."
    checks = check_figures(over, table).checks
    assert checks[0].status == "supported" and checks[0].derived_from == ["$55,256 million", "$338,516 million"]
    assert _statuses(over.replace("16.3%", "16.4%"), table)["16.4%"] == "unsupported"
    assert _statuses(over.replace(" over ", " and "), table)["16.3%"] == "unsupported"
    of = "Net income of $55,256 million was 16.3% of total assets of $338,516 million."
    assert _statuses(of, table)["16.3%"] == "supported"
    # What a figure alone before a colon measures is said after it: FedEx's page 14 holds "a 6.9% average list price
    # increase", which is not capital expenditures against revenue.
    fedex = _pages_of(MIXED, "doc-058.pdf", 14, 51, 65)
    against = "About 6.8%: $6,174 million of capital expenditures against $90,155 million of revenue."
    assert check_figures(against, fedex).checks[0].derived_from == ["$6,174 million", "$90,155 million"]
    assert _whys(against.replace("6.8%", "6.9%"), fedex) == ["not_found", None, None]


def test_a_total_of_the_amounts_listed_before_it(sec_docs):
    """Intel's segments' revenue of Q3 2023, listed, then summed: the total is supported as the sum of the list's
    amounts, written as precisely as they are; a total the list does not sum to, or that only rounds to its sum, is
    not."""
    segments = _pages_of(sec_docs, "2023 Q3 INTC.pdf", 12)
    listed = (
        "Intel's data-centric revenue:\n\n- DCAI: $3.814 billion\n- NEX: $1.450 billion\n"
        "- Mobileye: $0.530 billion\n- IFS: $0.311 billion\n\nThe total of these was {}."
    )
    checks = check_figures(listed.format("$6.105 billion"), segments).checks
    assert [c.status for c in checks] == ["supported"] * 5
    assert checks[-1].derived_from == ["$3.814 billion", "$1.450 billion", "$0.530 billion", "$0.311 billion"]
    assert _statuses(listed.format("$6.106 billion"), segments)["$6.106 billion"] == "unsupported"
    assert _statuses(listed.format("$6.1 billion"), segments)["$6.1 billion"] == "unsupported"
    # Without a word that says it sums them, it is sought as any other figure.
    assert (
        _statuses(listed.format("$6.105 billion").replace("total of these", "result"), segments)["$6.105 billion"]
        == "unsupported"
    )


def test_a_sentence_that_runs_from_a_period_to_the_same_period(sec_docs):
    """Amazon's filings of Q3 2022 and Q3 2023: cash "from $30,177 million as of September 30, 2022, to $49,605
    million as of September 30, 2023"; run to September 30, 2022 again, the sentence compares a period with itself."""
    filing = _filing(sec_docs, "2022 Q3 AMZN.pdf") + _filing(sec_docs, "2023 Q3 AMZN.pdf")
    ran = (
        "Amazon's cash and cash equivalents increased from $30,177 million as of September 30, 2022, to $49,605 "
        "million as of September 30, {}."
    )
    assert _whys(ran.format(2023), filing) == [None, None, None, None]
    # (its $49,605 million, which the filing prints under 2023, is not found under 2022 either)
    assert _whys(ran.format(2022), filing) == [None, "compared_with_itself", "not_found", "compared_with_itself"]
    # Each range of a list names its periods once each.
    two = (
        "Raw materials went from $30,177 million as of September 30, 2022, to $49,605 million as of September 30, "
        "2023, and cash from $30,177 million as of September 30, 2022, to $49,605 million as of September 30, 2023."
    )
    assert "compared_with_itself" not in _whys(two, filing)


def test_a_percentage_beside_an_amount_is_the_one_its_row_gives():
    """Apple's 10-K: "iPhone 211,884 (8)% 231,218 37 % ..." (units in thousands): the change beside the iPhone's units
    is its row's (8)%, not the 9% the Mac's row gives a page later; a percentage whose amount's row holds none is
    sought anywhere."""
    pages = _pages_of(MIXED, "doc-059.pdf", 26, 27)
    said = "iPhone unit sales were 211,884 thousand, down {}."
    checks = check_figures(said.format("8%"), pages).checks
    assert [c.status for c in checks] == ["supported", "supported"]
    assert checks[1].span == checks[0].span == "iPhone 211,884 (8)% 231,218 37 % 169,219"
    assert _whys(said.format("9%"), pages) == [None, "other_row"]
    assert _whys("iPhone unit sales fell 9% to 211,884 thousand.", pages) == ["other_row", None]
    assert _whys("Mac unit sales rose 9% in 2015.", pages) == [None, None]


def test_a_year_stands_where_a_word_beside_it_in_the_answer_stands_beside_it():
    """PG&E's 10-K, page 15 (no quarter among its periods: the rules of texts without periods): "reducing PG&E
    Corporation's debt by at least $2 billion by the end of 2026" holds the answer's 2026; its "relative to 2025
    levels", in a sentence that begins "Towards the end of the decade", is no "end of 2025"."""
    page = [p for p in _filing(MIXED, "doc-038.pdf") if p.page == 15]
    answer = "PG&E Corporation aims to reduce its debt by at least $2 billion by the end of 2026."
    assert set(_statuses(answer, page).values()) == {"supported"}
    assert _statuses(answer.replace("2026", "2025"), page)["2025"] == "unsupported"


def test_a_day_stands_where_its_clause_s_values_stand_in_prose():
    """Boston Properties' page 50: "our overall occupancy improved slightly from 91.3% at September 30, 2015 to 91.4% at
    December 31, 2015." holds both days (the second's words end at its sentence's stop, not in the next sentence's
    "In addition"); page 77's "the years ended December 31, 2014 and 2013" of a hotel's occupancy is no day of those
    values."""
    pages = [p for p in _filing(MIXED, "doc-061.pdf") if p.page in (50, 77)]
    answer = "Overall occupancy was 91.4% at December 31, 2015 (from 91.3% at September 30, 2015)."
    checks = check_figures(answer, pages).checks
    assert [(c.status, c.page) for c in checks] == [("supported", 50)] * 4
    assert _whys(answer.replace("December 31, 2015", "December 31, 2014"), pages) == [None, "other_period", None, None]


def test_a_change_column_is_the_quarter_s_or_the_months_to_date_s(sec_docs):
    """Apple's Q2 2023 "Three Months Ended Six Months Ended" table: "Total net sales $ 94,836 $ 97,278 (3)% $ 211,990
    $ 221,223 (4)%". A sentence of the quarter stands on the first change, one of the six months on the second, one
    that names neither on either."""
    page = _pages_of(sec_docs, "2023 Q2 AAPL.pdf", 18)
    said = "Total net sales declined by {} in the {} of 2023."
    assert _statuses(said.format("3%", "second quarter"), page)["3%"] == "supported"
    assert _statuses(said.format("4%", "second quarter"), page)["4%"] == "unsupported"
    assert _statuses(said.format("4%", "first six months"), page)["4%"] == "supported"
    assert _statuses(said.format("3%", "first six months"), page)["3%"] == "unsupported"
    assert _statuses("Total net sales declined by 4% in 2023.", page)["4%"] == "supported"


def test_a_count_in_prose_and_an_enumeration_are_no_amounts():
    """PG&E's pages are "in millions", but "at least 2,720 plaintiffs" is no $2.72 billion (nor, rounded, "$3 billion")
    and the "(2)" of "... and (2) if revolving loans are outstanding" is no $2 million."""
    pages = _pages_of(MIXED, "doc-038.pdf", 137, 162)
    assert all("in millions" in p.text.lower() for p in pages)
    assert _statuses("At least 2,720 plaintiffs have complained.", pages) == {"2,720": "supported"}
    assert _statuses("Its debt goal is at least $3 billion.", pages) == {"$3 billion": "unsupported"}
    assert _statuses("Its ratio of debt must be at least $2 million.", pages) == {"$2 million": "unsupported"}


def test_a_figure_cut_off_by_the_token_limit_and_a_citation_to_nothing(apple_pages):
    answer = "Total net sales were $81,797 million [4] and services were $21,2"
    report = check_figures(answer + " [9]", apple_pages[:5], cited=[4])
    assert report.unknown_citations == [9]
    cut = check_figures(answer, apple_pages, cited=[4], finish_reason="length")
    assert [c.status for c in cut.checks] == ["supported", "cut_off"]


def test_rag_ask_prints_where_each_figure_stands_or_why_not(apple_pages, capsys):
    """What ``rag ask`` prints under an answer: each figure's page and line, the rule that found it unsupported, or
    that the length limit cut it off."""
    from cli.answer_cmds import _print_figures

    answer = (
        "Total net sales were $81,797 million, and $91,797 million in the third quarter of 2023, with services at $21,2"
    )
    report = check_figures(answer, apple_pages, finish_reason="length")
    _print_figures([asdict(c) for c in report.checks])
    out = capsys.readouterr().out
    assert "figures: 2 of 4 found in the sources" in out
    statement = next(c for c in report.checks if c.text == "$81,797 million")
    assert f"  $81,797 million  2023 Q3 AAPL.pdf p.{statement.page}: Total net sales 81,797" in out
    assert f"  $91,797 million  NOT FOUND in the sources: {WHY['not_found']}" in out
    assert "  $21,2  cut off by the length limit" in out
    change = "Research and development rose from $6,797 million to $7,442 million, an increase of $645 million."
    _print_figures([asdict(c) for c in check_figures(change, apple_pages).checks])
    assert "  $645 million  computed from $6,797 million and $7,442 million" in capsys.readouterr().out


def test_chinese_figures_with_wan_and_yi():
    source = RetrievedChunk("c1", "报告.pdf", 1, 0.0, "单位：万元\n营业收入 356,000 312,500\n净利润 4.2亿元")
    answer = "营业收入为35.6亿元，净利润为4.2亿元。"
    assert _statuses(answer, [source]) == {"35.6亿": "supported", "4.2亿": "supported"}
    assert _statuses("营业收入为36.6亿元。", [source]) == {"36.6亿": "unsupported"}


def _zh_pages(name: str) -> list[RetrievedChunk]:
    texts = read_pdf_pages(ZH_DOCS / name, PdfConfig(), ocr=False).texts
    return [RetrievedChunk(f"p{i}", name, i, 0.0, t) for i, t in enumerate(texts, 1)]


def test_a_year_in_prose_stands_on_a_line_about_the_same_thing():
    """A page of articles holds many years; without a period to read from the sources, the year's line decides."""
    pages = _zh_pages("百科-trial-002.pdf")
    answer = "2008年，欧盟批准猴面包树果实作为果汁和谷物棒的成分。"
    assert _statuses(answer, pages) == {"2008": "supported"}
    assert any("2007" in p.text for p in pages)  # in the same article, about other things
    assert _statuses(answer.replace("2008", "2007"), pages) == {"2007": "unsupported"}


def test_a_year_heading_the_column_of_its_sentence_s_values_is_theirs():
    """A table sent with no metadata: its header's years share no word with the sentence, yet the column its values
    stand in is headed by the year."""
    table = RetrievedChunk(
        "p1",
        "annual.pdf",
        1,
        0.0,
        "(in millions) 2023 2022 2021\nRevenue $ 4,210 $ 3,760 $ 3,310\nNet income 512 455 401",
    )
    right = check_figures("In 2023, revenue was $4.2 billion and net income $512 million.", [table]).checks
    assert [(c.text, c.status) for c in right] == [
        ("2023", "supported"),
        ("$4.2 billion", "supported"),
        ("$512 million", "supported"),
    ]
    assert right[0].span == "(in millions) 2023 2022 2021"
    assert _statuses("In 2022, revenue was $4.2 billion.", [table]) == {
        "2022": "unsupported",
        "$4.2 billion": "unsupported",
    }


def test_a_chinese_paragraph_s_sentences_are_its_lines():
    """A Chinese paragraph extracts as one line of hundreds of characters: the sentence a value stands in is what
    must be about the answer's, not the paragraph."""
    pages = _zh_pages("百科-trial-008.pdf")
    answer = (
        "之后于1986年美国的World Events Productions（WEP）公司买下其版权被改编为《Saber Rider and the Star Sheriffs》"
    )
    assert _statuses(answer, pages) == {"1986": "supported"}
    # 1985 is in the paragraph's sentence before, about the broadcast in Japan.
    assert "1985年9月29日由日本日本电视台播出。之后于1986年美国" in pages[6].text
    assert _statuses(answer.replace("1986", "1985"), pages) == {"1985": "unsupported"}
    # Bigrams of a Chinese sentence count many more shared words than an English line's words: the line holding a
    # value may share half of what the closest line shares.
    deal = (
        "2014年6月10日泰森食品公司每股63美元现金，斥资77亿美元收购希尔夏品牌（Hillshire Brands）。"
        "连同债务承担，交易价格为85.5亿美元。"
    )
    assert _statuses(deal, _zh_pages("百科-trial-013.pdf"))["85.5亿"] == "supported"


def test_a_year_on_another_article_s_line_is_that_article_s():
    """A file of articles holds the same phrase with other years ("始建于1903年", another building): a year must stand
    on a line about as much about its sentence as the closest, as an amount must. A Chinese sentence ends at its
    "。" with no space after it, so each sentence of a history is about its own year."""
    pages = _zh_pages("百科-trial-024.pdf")
    history = "黑龙江省博物馆始建于1904年，原为莫斯科商场。1945年起由苏联政府代管，改称哈尔滨地方志博物馆。"
    assert _statuses(history, pages) == {"1904": "supported", "1945": "supported"}
    assert any("始建于1903年" in p.text for p in pages)
    assert _statuses(history.replace("1904", "1903"), pages) == {"1903": "unsupported", "1945": "supported"}


def test_each_year_of_a_sentence_stands_on_its_own_occurrence():
    """An answer's "from 2009 to 2009" is not the source's "from 2009 to 2010": its one 2009 supports one of them."""
    pages = _zh_pages("百科-trial-017.pdf")
    season = "据统计，百老汇在2009年到2010年的剧季的票房收益大约是$10.2亿美金。"
    assert [c.status for c in check_figures(season, pages).checks] == ["supported"] * 3
    shifted = check_figures(season.replace("2010", "2009"), pages).checks
    assert [(c.text, c.status) for c in shifted] == [
        ("2009", "supported"),
        ("2009", "unsupported"),
        ("$10.2亿", "supported"),
    ]


def test_an_answer_that_is_its_figure_alone_measures_what_was_asked():
    """An answer "2007年" says nothing of what it dates: the question's words must be on the sentence holding it."""
    pages = _zh_pages("百科-trial-005.pdf")
    question = "蒋家旻什么时候被挑选成为Tvbeople？"
    assert _statuses("2007年", pages, question=question) == {"2007": "supported"}
    assert any("2006年" in p.text for p in pages)  # in other articles of the same file
    assert _statuses("2006年", pages, question=question) == {"2006": "unsupported"}


def test_a_year_stands_on_the_occurrence_its_words_stand_beside():
    """A Chinese sentence of a life names many years: each is the year of its own clause ("2014年，吕志兴随和富大埔升上
    ..."), so a year that the sentence holds elsewhere, beside other words, does not support the answer's."""
    pages = _zh_pages("百科-trial-031.pdf")
    league = "2014年，吕志兴随和富大埔升上香港超级联赛，可惜大埔因护级失败归一季便回归甲组。"
    assert _statuses(league, pages) == {"2014": "supported"}
    assert any("2013年与一班大埔兄弟" in p.text for p in pages)  # the same sentence of the source, another clause
    assert _statuses(league.replace("2014", "2013"), pages) == {"2013": "unsupported"}
    # An answer that is its year alone is the year of the clause the question's words stand in.
    pages = _zh_pages("百科-trial-027.pdf")
    question = "杨朝祥是何时取得学士学位的？"
    assert _statuses("1970年", pages, question=question) == {"1970": "supported"}
    assert any("1975年在美国明尼苏达州州立大学工业教育研究所取得硕士学位" in p.text for p in pages)
    assert _statuses("1975年", pages, question=question) == {"1975": "unsupported"}
    # A date whose clause has no words of its own ("于1984年10月7日至1985年9月29日由日本日本电视台播出") is judged by
    # nothing beside it, and stands.
    broadcast = "于1984年10月7日至1985年9月29日由日本日本电视台播出"
    assert set(_statuses(broadcast, _zh_pages("百科-trial-008.pdf")).values()) == {"supported"}
    # English prose the same; there the words between two years of a clause are the later's, and a range's words are
    # both its ends'.
    text = "The company was founded in Texas in 1998 and moved to Ohio in 2005. From 2010 to 2014 a plant was rebuilt."
    history = [RetrievedChunk("c1", "r.pdf", 1, 0.0, text)]
    assert _statuses("The company moved to Ohio in 2005.", history) == {"2005": "supported"}
    assert _statuses("The company moved to Ohio in 1998.", history) == {"1998": "unsupported"}
    assert _statuses("The company was founded in Texas in 2005.", history) == {"2005": "unsupported"}
    rebuilt = "The plant was rebuilt from 2010 to 2014."
    assert _statuses(rebuilt, history) == {"2010": "supported", "2014": "supported"}
    assert _statuses(rebuilt.replace("2010", "2005"), history) == {"2005": "unsupported", "2014": "supported"}


class _Written:
    """A generator that answers with a text written beforehand, as a remote model might: what is under test is the
    pipeline's policy, not the model."""

    def __init__(self, text: str):
        self.text = text

    async def stream(self, request: AnswerRequest, chunks: list[RetrievedChunk]) -> AsyncIterator[str | Usage]:
        for word in re.split(r"(?<= )", self.text):
            yield word
        yield Usage(10, 10)

    async def complete(self, request: AnswerRequest, chunks: list[RetrievedChunk]) -> tuple[str, Usage]:
        return self.text, Usage(10, 10)


class _Found:
    def __init__(self, chunks: list[RetrievedChunk]):
        self.chunks = chunks

    async def search(self, request: AnswerRequest) -> SearchResult:
        return SearchResult(self.chunks, "hybrid")


async def _streamed(pipeline: AnswerPipeline, request: AnswerRequest) -> tuple[list[str], Finished]:
    found = await pipeline.search(request)
    items = [item async for item in pipeline.stream(request, found)]
    finished = items[-1]
    assert isinstance(finished, Finished)
    return [i for i in items if isinstance(i, str)], finished


@pytest.mark.parametrize("policy", ["flag", "warn", "refuse"])
def test_the_policy_for_unsupported_figures(apple_pages, policy):
    wrong = "Total net sales were $91,797 million [4]."
    request = AnswerRequest("What were Apple's total net sales?")
    pipeline = AnswerPipeline(_Found(apple_pages[2:6]), _Written(wrong), policy)
    answer = asyncio.run(pipeline.answer(request))
    assert answer.raw == wrong and answer.figures.summary["unsupported"] == 1
    shown = answer.text.split("\n\nSources:")[0]
    deltas, finished = asyncio.run(_streamed(pipeline, request))
    streamed = "".join(deltas)
    if policy == "flag":
        assert shown == wrong and not answer.figures.refused
    elif policy == "warn":
        assert shown.startswith(wrong) and shown.endswith("check before use: $91,797 million.")
    else:
        assert "$91,797 million" in shown and shown.startswith("I do not know") and answer.figures.refused
        assert len(deltas) == 1  # nothing went out before the check
    assert streamed == shown and finished.figures.summary == answer.figures.summary
    right = AnswerPipeline(_Found(apple_pages[2:6]), _Written("Total net sales were $81,797 million [2]."), policy)
    assert asyncio.run(right.answer(request)).text.startswith("Total net sales were $81,797 million [2].")


def test_the_check_s_own_evaluation_alters_each_figure_and_serves_its_pages(apple_filing):
    """eval.figures: a gold answer's figures, each altered in turn, against whole documents and as served."""
    question = Question("q", "What were Apple's total net sales?", "In Q3 2023, total net sales were $81.8 billion.")
    whole = evaluate(question, apple_filing)
    assert [(g["figure"], g["supported"]) for g in whole["gold"]] == [("2023", True), ("$81.8 billion", True)]
    assert {(a["how"], a["altered"], a["caught"]) for a in whole["altered"]} == {
        ("year shifted", "2022", True),
        ("digit changed", "$81.9 billion", True),
        ("scale swapped", "$81.8 million", True),
    }
    # As served: the passages retrieved (here none) and the pages that held the gold figures, whole.
    sources = as_served(whole, [], {"2023 Q3 AAPL.pdf": apple_filing})
    held = {(g["file"], g["page"]) for g in whole["gold"]}
    assert {(c.file, c.page) for c in sources} == held and len(sources) == len(held)
    assert evaluate(question, sources)["gold"] == whole["gold"]


def test_words_most_sources_share_count_where_the_sources_name_no_company():
    """Indexed articles about four plants all say where each grows ("生长于海拔...米的地区"): those words say what a
    figure measures. Only texts with no metadata at all (/v1/verify's) have words in most of them stand in for the
    company names that metadata gives."""
    pages = [
        _zh_pages(name)[page - 1]
        for name, page in [
            ("百科-trial-006.pdf", 1),
            ("百科-trial-010.pdf", 1),
            ("百科-trial-022.pdf", 3),
            ("百科-trial-020.pdf", 1),
        ]
    ]
    indexed = [replace(p, metadata={"title": p.file.removesuffix(".pdf")}) for p in pages]
    answer = "五月艾生长于海拔100米至2,800米的地区。"
    assert _statuses(answer, indexed) == {"100": "supported", "2,800": "supported"}
    assert _statuses(answer.replace("2,800", "2,900"), indexed)["2,900"] == "unsupported"
    assert _statuses(answer, pages) == {"100": "unsupported", "2,800": "unsupported"}
