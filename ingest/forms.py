"""What kind of document a file is (10-K, 10-Q, 8-K, earnings release, annual report) and the period it reports on.

The first page that says anything decides the kind: an SEC cover ("FORM 10-Q"), a press release
("... Reports Second Quarter 2023 Results"), or a glossy "2023 Annual Report". The period comes from
the document's own words, by the filer's convention: "For the fiscal year ended June 30, 2023" is
fiscal 2023, "third quarter of fiscal 2023" is Q3 of fiscal 2023 whatever the calendar says, and a
52/53-week year that ends in the first days of January belongs to the year before. An 8-K's year is
that of its date of report.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import date

from rag.questions.periods import DATE, MONTHS, YEAR, dates_in, fiscal_years_in, iso_date, quarters_in

EARNINGS_RELEASE = "earnings release"
ANNUAL_REPORT = "annual report"
QUARTERLY_REPORT = "quarterly report"

_FORM = re.compile(r"\bFORM\s+(10-QT?|10-KT?|8-K|6-K|20-F|40-F|S-[14]|F-[14]|DEF 14A)\b", re.I)
_SEC = re.compile(r"securitiesandexchangecommission|pursuanttosection13or15\(d\)", re.I)
_COVER_CHARS = 1500  # a cover's form line is in its first lines; later "Form 10-Q" mentions are references
_RELEASE = re.compile(
    r"\b(?:reports|announces|posts|delivers|reported)\b[^\n]{0,80}?\b(?:results|earnings)\b|"
    r"\b(?:news|press)\s+release\b|\bfor\s+immediate\s+release\b",
    re.I,
)
_ANNUAL_REPORT = re.compile(r"\bannual\s+report\b|(?<!半)年度报告", re.I)
_QUARTERLY_REPORT = re.compile(r"季度报告")  # Chinese listed companies' reports: 2023年第三季度报告
_PERIOD = re.compile(
    r"for\s+the\s+(?:quarterly\s+period|fiscal\s+year|fiscal\s+quarter|period|year|quarter)\s+ended:?\s*"
    + DATE.pattern,
    re.I,
)
_SQUEEZED_PERIOD = re.compile(
    r"forthe(?:quarterlyperiod|fiscalyear|fiscalquarter|period|year|quarter)ended:?([A-Za-z]{3,9})\.?(\d{1,2}),?"
    r"(" + YEAR + r")",
    re.I,
)
_REPORT_DATE = re.compile(r"date\s+of\s+report", re.I)
_QUARTER_ENDED = re.compile(r"quarter\b[^.\n]{0,40}?\bended\s+" + DATE.pattern, re.I)
# "The Company's fiscal year ends on January 31", "fiscal year ends on the last Saturday of September",
# "... Form 10-K for the fiscal year ended September 24, 2022": the month a filer's year ends in.
_YEAR_END = re.compile(
    r"fiscal\s+year\s+(?:ends?|ending|ended)\s+(?:on\s+)?(?:the\s+last\s+\w+\s+(?:of|in)\s+)?([A-Za-z]{3,9})\b\.?"
    r"(?:\s+(\d{1,2}))?",
    re.I,
)
_YEAR_OF_REPORT = re.compile(r"\b(" + YEAR + r")\s+annual\s+report\b|\bannual\s+report\s+(" + YEAR + r")\b", re.I)
# A fiscal year ending this early in January is a 52/53-week year named for the December before.
_EARLY_JANUARY_DAYS = 7
_MONTH_END_FROM = 24  # the earliest day a 52/53-week quarter ends on ("December 24")


@dataclass
class Period:
    form: str | None = None
    period_end: str | None = None
    fiscal_year: int | None = None
    fiscal_quarter: int | None = None


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _kind(page: str) -> str | None:
    """The kind of document a page opens, or None where the page says nothing of it (a blank or a contents page)."""
    head = page[:_COVER_CHARS]
    form = _FORM.search(head)
    release = _RELEASE.search(page[:800])
    if form and (_SEC.search(_squeezed(page[:2500])) or not release):
        return form.group(1).upper()
    if release:
        return EARNINGS_RELEASE
    if _QUARTERLY_REPORT.search(page[:400]):
        return QUARTERLY_REPORT
    if _ANNUAL_REPORT.search(page[:400]):
        return ANNUAL_REPORT
    return None


def document_kind(pages: list[str]) -> str | None:
    for page in pages[:3]:
        kind = _kind(page)
        if kind:
            return kind
        if len(_squeezed(page)) > 1500:  # a page of text that is no cover: this is not a filing or release
            return None
    return None


def _month_of(iso: str) -> tuple[int, int]:
    """(year, month) a period ending on ``iso`` belongs to: one ending in a month's first days (a 52/53-week
    calendar's "July 1") closes the month before."""
    day = date.fromisoformat(iso)
    if day.day <= _EARLY_JANUARY_DAYS:
        return (day.year - 1, 12) if day.month == 1 else (day.year, day.month - 1)
    return day.year, day.month


def _year_of(iso: str) -> int:
    return _month_of(iso)[0]


def _year_end_month(text: str) -> int | None:
    """The month the filer's fiscal year ends in, where the text says it; most mentions win."""
    months = []
    for m in _YEAR_END.finditer(text):
        month = MONTHS.get(m.group(1)[:3].lower())
        if month:  # "January 1" closes December's year, like a period that ends then
            day = min(int(m.group(2)), 28) if m.group(2) else 28
            months.append(_month_of(date(2001, month, day).isoformat())[1])
    return Counter(months).most_common(1)[0][0] if months else None


def _comparison_year_end(flat: str, period_end: str) -> int | None:
    """The month a quarterly report's balance sheet compares against, the last fiscal year's end: the month-end date
    written most often within the year before the period ends, other than one in the quarter's own month."""
    end, own_month = date.fromisoformat(period_end), _month_of(period_end)[1]
    months: Counter[int] = Counter()
    for iso in dates_in(flat):
        day = date.fromisoformat(iso)
        # month ends, including a 52/53-week year's ("December 25", "January 1")
        month_end = day.day >= _MONTH_END_FROM or day.day <= _EARLY_JANUARY_DAYS
        if month_end and 0 < (end - day).days < 366 and _month_of(iso)[1] != own_month:
            months[_month_of(iso)[1]] += 1
    return months.most_common(1)[0][0] if months else None


def fiscal_quarter_of(period_end: str, year_end_month: int) -> tuple[int, int]:
    """(fiscal year, quarter) of a quarter ending on ``period_end`` for a filer whose year ends in ``year_end_month``:
    the fiscal year is named for the calendar year it ends in."""
    year, month = _month_of(period_end)
    fiscal_year = year if month <= year_end_month else year + 1
    return fiscal_year, (month - year_end_month - 1) % 12 // 3 + 1


def _period_end(cover: str) -> str | None:
    """The "For the quarterly period / fiscal year ended ..." date; words a layout broke apart ("Fis cal Year") are read
    with their spaces squeezed out."""
    ended = _PERIOD.search(cover) or _SQUEEZED_PERIOD.search(_squeezed(cover))
    return ended and iso_date(*ended.groups())


def _report_date(cover: str) -> str | None:
    """An 8-K's date of report: the date written next to the "Date of Report" caption, before or after it."""
    caption = _REPORT_DATE.search(cover)
    if not caption:
        return None
    after = dates_in(cover[caption.end() : caption.end() + 120])
    before = dates_in(cover[max(0, caption.start() - 80) : caption.start()])
    found = after or before[-1:]
    return found[0] if found else None


def _stated_quarter(text: str, around: int | None) -> tuple[int, int] | None:
    """The (fiscal year, quarter) the text says it covers most often; with ``around`` (the period's calendar year),
    only quarters of that fiscal year or the next (a year that ends in January is named for its end)."""
    quarters = [q for q in quarters_in(text) if around is None or q[0] in (around, around + 1)]
    return Counter(quarters).most_common(1)[0][0] if quarters else None


def _release_period(pages: list[str]) -> Period:
    """A release's quarter from its headline, else from its first page; its period end from "quarter ... ended"."""
    first = pages[0] if pages else ""
    head = " ".join(first[:600].split())
    quarters = quarters_in(head) or quarters_in(" ".join(first.split()))
    quarter = quarters[0] if quarters else None
    ended = _QUARTER_ENDED.search(" ".join(first.split()))
    period_end = ended and iso_date(*ended.groups()[-3:])
    if quarter:
        return Period(EARNINGS_RELEASE, period_end, quarter[0], quarter[1])
    years = fiscal_years_in(head)
    released = dates_in(head)
    fiscal_year = years[0] if years else (int(released[0][:4]) if released else None)
    return Period(EARNINGS_RELEASE, period_end, fiscal_year)


def read_period(pages: list[str]) -> Period:
    """The kind and period of a document from its first pages (``pages[0]`` is page 1)."""
    kind = document_kind(pages)
    if kind is None:
        return Period()
    if kind == EARNINGS_RELEASE:
        return _release_period(pages)
    flat = " ".join("\n".join(pages).split())
    if kind == ANNUAL_REPORT:
        named = _YEAR_OF_REPORT.search(flat)
        stated = fiscal_years_in(flat[:3000])  # the letter to shareholders opens with the year it reviews
        year = int(named.group(1) or named.group(2)) if named else (stated[0] if stated else None)
        ended = _PERIOD.search(flat)
        return Period(kind, ended and iso_date(*ended.groups()), year)
    if kind == QUARTERLY_REPORT:
        dates = dates_in(flat[:3000])
        return Period(kind, dates[0] if dates else None, *(_stated_quarter(flat[:3000], None) or (None, None)))
    cover = " ".join("\n".join(pages[:2]).split())
    period_end = _period_end(cover)
    if kind == "8-K" or (not period_end and _REPORT_DATE.search(cover)):
        period_end = period_end or _report_date(cover)
        return Period(kind, period_end, int(period_end[:4]) if period_end else None)
    if kind.startswith("10-K") or kind in ("20-F", "40-F"):
        stated = fiscal_years_in(flat[:6000])
        year = _year_of(period_end) if period_end else (stated[0] if stated else None)
        return Period(kind, period_end, year)
    if not period_end:
        quarter = _stated_quarter(flat, None)
        return Period(kind, None, *(quarter or (None, None)))
    year_end = _year_end_month(flat) or _comparison_year_end(flat, period_end)
    if year_end:
        return Period(kind, period_end, *fiscal_quarter_of(period_end, year_end))
    # No year end stated: the quarter the text names for this period, else the calendar's.
    quarter = _stated_quarter(flat, int(period_end[:4])) or fiscal_quarter_of(period_end, 12)
    return Period(kind, period_end, *quarter)
