"""The periods the sources report on (their documents' metadata) and the periods an answer names ("Q3 2023", "the
quarter ended July 1, 2023", "as of September 30, 2022"), and how the two meet."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from rag.doc_metadata import DocMetadata, chunk_header
from rag.figures.passages import LIST_JOIN, Passage
from rag.figures.reading import Figure, day_of
from rag.figures.words import sentence_bounds
from rag.types import RetrievedChunk

# A date that ends the period an answer reports on ("the quarter ended July 1, 2023"), not any date ("as of", "on").
_PERIOD_ENDED = re.compile(
    r"\b(?:(?:quarter|quarterly\s+period|(?:three|six|nine|twelve)\s+months|period)\s+end(?:ed|ing)\s+(?:on\s+)?"
    r"|(?:quarter|year)\s+\()$",  # "the same quarter in the previous year (September 30, 2022)"
    re.I,
)
# What names a period as the one compared against: right before it ("down 5% from Q2 2022", "compared to the same
# quarter of 2022"), or anywhere earlier in its sentence for the words that only compare ("..., compared to $694
# million for the three months ended December 25, 2021").
_COMPARED_JUST_BEFORE = re.compile(
    r"\b(?:from|over|compared\s+(?:to|with)|versus|vs\.?|than|against|prior|previous|same)\s+(?:the\s+)?(?:same\s+)?"
    r"(?:(?:period|quarter)\s+)?(?:(?:of|in)\s+)?$",
    re.I,
)
_COMPARED = re.compile(
    r"\b(?:compared|comparison|versus|vs\.?|than|prior|previous|preceding|a\s+year\s+(?:ago|earlier))\b", re.I
)
# What joins a range's start to its end: "from Q3 2022 to Q1 2023".
_RANGE_TO = re.compile(r"\s+(?:to|through)\s+(?:the\s+)?")
# A year that names a quarter with the words before it: "compared to the same quarter in 2022" (the quarter its
# sentence named before), "the first nine months of 2023" (the year to its third quarter's end).
_SAME_QUARTER = re.compile(
    r"\bsame\s+(?:fiscal\s+)?quarter\s+(?:of\s+|in\s+)(?:the\s+)?(?:fiscal\s+)?(?:year\s+)?$", re.I
)
_MONTHS_OF = re.compile(
    r"(?:\b(three|six|nine)\s+months\s+(?:of|in)|\bfirst\s+(half)(?:\s+of)?|\b(H1|1H))\s*(?:the\s+)?"
    r"(fiscal\s+|FY\s?)?(?:years?\s+)?(?:\d{4}\s+and\s+)?$",  # "the first half of 2023", "H1 FY2024"
    re.I,
)
# "fiscal 2023", "FY23", "3QFY24", "2023财年"
FISCAL = re.compile(r"\bfiscal\b|(?:\b|(?<=\dQ))FY(?=\s?'?\d)|财年|财政年度", re.I)
_MONTHS_COUNTED = {"three": 3, "six": 6, "nine": 9, "half": 6, "h1": 6, "1h": 6}
_AS_OF = re.compile(r"\b(?:as\s+of|as\s+at)\s+$", re.I)
DAYS_OFF = 7  # a 52-53 week year ends its quarters on other days than the year before
_LATER_EVENTS = 60  # days after its period's end that a filing reports events up to (it is filed within 40-45)


@dataclass(frozen=True)
class Period:
    """The period a source's document reports on, as its metadata says."""

    fiscal: tuple[int, int]  # (fiscal year, fiscal quarter)
    quarters: frozenset[tuple[int, int]]  # (year, quarter)s a reader may name it by (DocMetadata.own_quarters)
    end: date | None
    label: str  # what a reader is shown as the span that holds it ("Apple Inc. (AAPL) | Form 10-Q | Q3 2023 | ...")


def period_of(chunk: RetrievedChunk) -> Period | None:
    """Its document's period, None for a document of no quarter (a report, a page with no metadata)."""
    if not (chunk.metadata.get("fiscal_year") and chunk.metadata.get("fiscal_quarter")):
        return None
    return read_period(chunk.file, json.dumps(chunk.metadata, sort_keys=True))


@lru_cache(maxsize=1024)
def read_period(file: str, metadata: str) -> Period:
    """Kept per document: every passage of a filing has the same."""
    meta = DocMetadata.model_validate_json(metadata)
    end = date.fromisoformat(meta.period_end) if meta.period_end else None
    fiscal = (meta.fiscal_year or 0, meta.fiscal_quarter or 0)  # both given: period_of asks
    return Period(fiscal, frozenset(meta.own_quarters()), end, chunk_header(meta, file))


@dataclass(frozen=True)
class _AsOf:
    """A date balances are stated at ("as of September 30, 2023"), where "the quarter ended" names a period's end."""

    day: date


@dataclass(frozen=True)
class _FiscalQuarter:
    """A quarter named as a fiscal one ("the third quarter of fiscal 2023", "Q1 FY24"): a document's fiscal quarter,
    not the calendar quarter most of its period falls in."""

    quarter: tuple[int, int]


Named = tuple[int, int] | _FiscalQuarter | date | _AsOf  # a quarter, a period's end, a balance's date


def quarter_of(named: Named) -> tuple[int, int] | None:
    if isinstance(named, _FiscalQuarter):
        return named.quarter
    return named if isinstance(named, tuple) else None


def mention_around(
    figure: Figure, mentions: Sequence[tuple[int, int, tuple[int, int]]]
) -> tuple[int, int, tuple[int, int]] | None:
    """The quarter mention ("Q1 2023", "the third quarter of fiscal 2024") that holds a year figure, if one does."""
    if figure.kind != "year":
        return None
    return next((m for m in mentions if m[0] <= figure.start and figure.end <= m[1]), None)


def ends_of_quarter(
    figure: Figure, mentions: Sequence[tuple[int, int, tuple[int, int]]], periods: Sequence[tuple[Passage, Period]]
) -> set[int]:
    """For the year of a quarter named ("Q1 2023"), the years the periods of the sources whose own quarter it is end
    in."""
    around = mention_around(figure, mentions)
    return {period.end.year for _, period in periods if around and around[2] in period.quarters and period.end}


def named_period(
    answer: str, figure: Figure, sentence_start: int, mentions: Sequence[tuple[int, int, tuple[int, int]]]
) -> tuple[Named, bool] | None:
    """The period ``figure`` names, if it names one: a (year, quarter) for the year of "Q3 2023", a date for one
    after "the quarter ended" or "as of"; and whether it is named as the period compared against. None: it names no
    period."""
    named: Named
    around = mention_around(figure, mentions)  # None for a figure that is not a year
    if figure.kind == "year":
        before = answer[sentence_start : figure.start]
        earlier = [m[2][1] for m in mentions if sentence_start <= m[0] and m[1] <= figure.start]
        if around:
            fiscal = FISCAL.search(answer[around[0] : around[1]])
            start, named = around[0], _FiscalQuarter(around[2]) if fiscal else around[2]
        elif _SAME_QUARTER.search(before) and earlier:  # "Q3 2023, compared to the same quarter in 2022"
            return (int(figure.value), earlier[-1]), True
        elif months := _MONTHS_OF.search(before):
            counted = next(word for word in months.groups()[:3] if word)
            quarter = (int(figure.value), _MONTHS_COUNTED[counted.lower()] // 3)
            start, named = sentence_start + months.start(), _FiscalQuarter(quarter) if months[4] else quarter
        else:
            return None
    elif (day := day_of(figure)) is not None:  # a month ("in March 2023") ends no period
        start = figure.start
        before = answer[max(0, figure.start - 40) : figure.start]
        if _PERIOD_ENDED.search(before):
            named = day
        elif _AS_OF.search(before):
            named = _AsOf(day)
        else:
            return None
    else:
        return None
    before = answer[sentence_start:start]
    compared = bool(_COMPARED_JUST_BEFORE.search(before[-40:]) or _COMPARED.search(before))
    if compared and (to := _RANGE_TO.match(answer, around[1] if around else figure.end)):
        # "from Q3 2022 to Q1 2023" runs over the sources' own quarters: its start is the period compared against
        # only where it is the year before its end.
        then = next((m[2] for m in mentions if m[0] == to.end()), None)
        if then is not None:
            compared = year_before(named, then)
    return named, compared


# Words that tell a later period of a narrative: "a slight increase in Q2 2023, and then a decrease in Q3 2023", "In
# Q3 2023, revenue continued to decrease".
_LATER = re.compile(r"\b(?:then|subsequent(?:ly)?|continued|continuing|further|later|again|afterwards?)\b", re.I)
# What names the sources' latest period without naming it: "the most recent quarter".
LATEST = re.compile(r"\b(?:latest|most\s+recent)\s+(?:fiscal\s+)?quarter", re.I)
_RANGE_FROM = re.compile(r"\bfrom\s+(?:the\s+)?$", re.I)


def out_of_order(answer: str, mentions: Sequence[tuple[int, int, tuple[int, int]]]) -> set[int]:
    """The starts of quarters an answer tells as later than the quarter it named before ("and then ... in Q3 2022"
    after "Q2 2023") that are earlier: a narrative's periods follow each other. Words that compare ("compared to Q3
    2022") or start a range ("from Q3 2022 to ...") name an earlier period on purpose."""
    out = set()
    later = False  # whether the quarter before was told as later than its own before
    for k in range(1, len(mentions)):
        before, (start, end, quarter) = mentions[k - 1], mentions[k]
        sentence = sentence_bounds(answer, start, end)
        until = min(mentions[k + 1][0] if k + 1 < len(mentions) else sentence[1], sentence[1])
        told = answer[max(sentence[0], before[1]) : start] + answer[end:until]
        lead = answer[sentence[0] : start]
        # A list of quarters told as later ("the subsequent increases in Q2 2023 and Q3 2023") is told in order.
        listed = later and before[1] >= sentence[0] and LIST_JOIN.fullmatch(answer, before[1], start) is not None
        on_purpose = _COMPARED_JUST_BEFORE.search(lead[-40:]) or _RANGE_FROM.search(lead)
        later = not on_purpose and (listed or _LATER.search(told) is not None)
        if later and quarter < before[2]:
            out.add(start)
    return out


def year_before(said: Named, then: Named) -> bool:
    """Whether ``said`` is the period of a year before ``then`` (a 52-53 week year's quarter may end some days off)."""
    if (quarter := quarter_of(said)) is not None:
        return (quarter[0] + 1, quarter[1]) == quarter_of(then)
    day = said.day if isinstance(said, _AsOf) else said
    other = then.day if isinstance(then, _AsOf) else then
    if not (isinstance(day, date) and isinstance(other, date)):
        return False
    return abs((day - other + timedelta(days=365)).days) <= DAYS_OFF


def reports(period: Period, named: Named, a_year_before: bool) -> bool:
    """Whether the document reports on ``named`` as its own period or (``a_year_before``) as the same period a year
    before, which every filing prints beside its own."""
    if isinstance(named, _FiscalQuarter):
        if a_year_before:
            return year_before(named.quarter, period.fiscal)
        return _in_year_to_date(named.quarter, period)
    if isinstance(named, tuple):
        return any(year_before(named, then) if a_year_before else named == then for then in period.quarters)
    if period.end is None:
        return False
    if a_year_before:
        return year_before(named, period.end)
    if isinstance(named, date):
        return named == period.end
    return _states_balances_at(named.day, period.end, period.fiscal[1])


def files_reporting(named: Named, periods: Sequence[tuple[Passage, Period]]) -> dict[str, int | None]:
    """The documents that report on ``named`` as their own period (None), and, where any does, those that print it as
    the same period a year before, with the year that heads its column there; empty where none reports on it as its
    own."""
    own: dict[str, int | None] = {p.chunk.file: None for p, period in periods if reports(period, named, False)}
    if not own:
        return own
    year_ago = {
        passage.chunk.file: period.end.year - 1
        for passage, period in periods
        if period.end and reports(period, named, True)
    }
    return year_ago | own


def earlier_in_year(named: Named, period: Period) -> bool:
    """Whether a fiscal quarter named is not the document's own (an earlier one its year to date covers)."""
    return isinstance(named, _FiscalQuarter) and named.quarter != period.fiscal


def _in_year_to_date(quarter: tuple[int, int], period: Period) -> bool:
    """Whether a fiscal quarter is the document's own or an earlier one of its fiscal year, which its year-to-date
    columns and their discussion cover ("in the first quarter of fiscal 2023 we recorded ...", in a third quarter's
    filing)."""
    year, last = period.fiscal
    return quarter[0] == year and quarter[1] <= last


def _states_balances_at(day: date, end: date, fiscal_quarter: int) -> bool:
    """Whether a filing states balances as of ``day``: its period's end, the end of the fiscal year before (the
    balance sheet's other column) or, in the weeks after, a later event it reports ("as of October 20, 2022, $36.1
    billion remained")."""
    months = end.year * 12 + end.month - 1 - 3 * fiscal_quarter
    year_end = date(months // 12, months % 12 + 1, 1) + timedelta(days=end.day - 1)
    return 0 <= (day - end).days <= _LATER_EVENTS or abs((day - year_end).days) <= DAYS_OFF


def ahead(named: Named, periods: Sequence[tuple[Passage, Period]]) -> bool:
    """A quarter after the latest the sources report on, within a year: what a filing's outlook speaks of ("sales ...
    expected to decline in the fourth quarter of fiscal year 2024")."""
    said = quarter_of(named)
    if said is None:
        return False
    year, quarter = max(period.fiscal for _, period in periods)
    return 0 < said[0] * 4 + said[1] - (year * 4 + quarter) <= 4


def latest_named(periods: Sequence[tuple[Passage, Period]]) -> list[Named]:
    """What "the most recent quarter" names: the latest period the sources report on, by its end and its quarters."""
    ended = [(period.end, period) for _, period in periods if period.end]
    if not ended:
        return []
    end, latest = max(ended, key=lambda e: e[0])
    return [end, *latest.quarters, _FiscalQuarter(latest.fiscal)]
