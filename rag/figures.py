"""Every figure in an answer looked for in the passages it was given: deterministic, exact where it applies, and able
to say where each figure stands (the source, its file and page, the line) or that it stands nowhere.

What counts as a figure: amounts (a currency sign, a scale word or both: "$81.8 billion", "RMB 3.5 million", "12亿"),
numbers written with thousands separators or decimals ("81,797", "0.35"), percentages ("38.3%", "12 percent"), dates
("July 1, 2023", "2023-07-01", "2023年7月1日") and years. Not figures: bare integers under 100 ("3 segments"), a
numbered list's markers ("107. Reliance on ..."), citation marks, form and item names ("10-Q", "Item 7"), file names.

When a figure is supported (docs/figures.md has every rule, and what they leave out):
- a passage holds the same value, to within half a unit of the last digit the answer wrote (rounding to the precision
  written: "$81.8 billion" is supported by "81,797" in a table "in millions", "$81.9 billion" is not);
- a passage's bare numbers count at face value and, where the passage says "in thousands", "in millions" or "in
  billions" (a table's header) or 单位：万元/亿元, at that scale too (not its years: "2023" is no $2.0 billion);
- signs are ignored: tables write a loss as "(1,234)", an answer as "a loss of $1,234 million";
- the passage's line holding it shares a word with the answer's sentence (the sources' company names do not count);
- a date matches the same day written any of the ways above; a year matches the year on a line about the same thing,
  unless the tables put its sentence's values under other years (a column's year binds its values, as does a
  sentence's list of periods the list of values it gives: "$2.8 billion and $2.7 billion as of December 31, 2022 and
  June 30, 2023");
- a period the answer names ("Q3 2023", "the quarter ended July 1, 2023", "as of September 24, 2022") is one a
  source's document reports on, as its metadata says: its own, the year-ago one its sentence compares with, or, for a
  balance, the fiscal year's start; a year then stands anywhere in the filing, as every column's header prints it;
  a quarter told as later than the one named before it ("and then ... in Q3 2023") must be later, and one compared
  against is not the one it is compared with; "the most recent quarter" is the sources' latest;
- an amount or percentage that is the change between two other figures of the answer (their difference, or the
  percentage change from the first to the second) is supported as derived from them.
The passages the answer cites ([n]) are searched first, then the others.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from itertools import permutations

from rag.doc_metadata import DocMetadata, chunk_header
from rag.questions.periods import quarter_mentions
from rag.types import RetrievedChunk

_MONTHS = {
    m: i
    for i, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for m in names
}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DATE_WORDS = re.compile(rf"\b({_MONTH})\.?\s+(\d{{1,2}}),?\s+(\d{{4}})\b", re.I)
_DATE_ISO = re.compile(r"(?<![\d-])(\d{4})-(\d{2})-(\d{2})(?![\d-])")
_DATE_HAN = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
# A month written without its day ("August 2022", "2023年7月") stands for any of its days: its middle, give or take.
_MONTH_WORDS = re.compile(rf"\b({_MONTH})\.?\s+(\d{{4}})\b", re.I)
_MONTH_HAN = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月")
_MID_MONTH, _A_MONTH = 16, 15.5
# Spans that hold digits but no figure: a file's name, quoted (a sentence may run up to it) or of a few words (looked
# for only in a text that has ".pdf": tried at every word, it costs more than all the rest of the reading);
# citations, form and item names, identifiers joined to words.
_FILE_NAME = re.compile(r"\"[^\"\n]{1,200}?\.pdf\"|“[^”\n]{1,200}?\.pdf”|(?:[\w&-]+[ \t]){0,4}[\w&-]+\.pdf\b", re.I)
_NOT_FIGURES = re.compile(
    r"\[\d+\]"
    r"|\b(?:Item|Items|Note|Notes|Part|Rule|Section|Article|Exhibit|Form|Schedule|Level|Tier|Phase|Stage)\s+\d+[A-Z]?\b"
    r"|\b\d+-[A-Z]\b|\b[A-Z]+\d+\b|\bQ[1-4]\b"
    r"|^[ \t]*\d+\.(?=[ \t])",  # a numbered list's marker ("107. Reliance on ...")
    re.I | re.M,
)
_SCALES = {
    "thousand": 1e3,
    "thousands": 1e3,
    "k": 1e3,
    "million": 1e6,
    "millions": 1e6,
    "mn": 1e6,
    "m": 1e6,
    "billion": 1e9,
    "billions": 1e9,
    "bn": 1e9,
    "b": 1e9,
    "trillion": 1e12,
    "万": 1e4,
    "亿": 1e8,
    "万亿": 1e12,
}
_FIGURE = re.compile(
    r"(?<![A-Za-z0-9_.,/-])(?P<open>\()?(?P<sign>[-−])?\s?(?:(?P<cur>US\$|\$|€|£|¥|RMB|USD|EUR)\s?)?"
    # A number cut inside a group at the very end ("$21,2") is one too: an answer that ran out of tokens ends so.
    r"(?P<num>\d{1,3}(?:,\d{3})*,\d{0,2}(?=\s*$)|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    # A negative amount's scale after its parenthesis: "($46) million".
    r"(?P<close>(?<=\d)\)(?=\s?(?:thousand|million|billion|trillion)\b))?"
    r"(?:\s?(?P<scale>thousand|million|billion|trillion|mn|bn|[kmb])\b|\s?(?P<han>万亿|亿|万))?"
    r"(?P<pct>\s?%|％|\s?percent\b|\s?per\s?cent\b|\s?percentage\s+points?\b)?"
    r"(?![A-Za-z0-9_-]|[.,]\d)",  # letters, not \w: a Chinese character may touch a figure
    re.I,
)
_WORD = re.compile(r"[A-Za-z]{3,}|[\u4e00-\u9fff]{2,}")
# A Chinese sentence's end takes no space after it: without splitting there, an answer of ten sentences about ten years
# is one sentence, whose words are about all of them.
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|(?<=[。！？；：])\s*|\n")
# A line of Chinese prose is a whole paragraph, hundreds of characters about many things: its sentences are the lines
# a value stands on. (A line of a filing is a line of its layout, shorter than most sentences.)
_LINE_ENDS = "\n。！？；"
_LINE_END = re.compile(f"[{_LINE_ENDS}]")
# Words that say nothing about what a figure measures.
_FILLER = (
    "the and for was were are has had have with from that this its their which than over into per of in on to by "
    "as at about approximately total compared same period quarter quarters year years ended ending months three "
    "six nine fiscal during while also based reported amount amounts respectively increase increased decrease "
    "decreased change changed"
)
_PLAIN_WORDS = {
    *_MONTHS,
    *(w for w in _SCALES if w.isascii()),
    *_FILLER.split(),
}
# What filings and answers call the same line by other names: an answer's "R&D" or "revenue" is the statement's
# "Research and development" or "Net sales".
_SAME_THING = {
    "r&d": {"research", "development"},
    "sg&a": {"selling", "general", "administrative"},
    "revenue": {"sale"},
    "sale": {"revenue"},
    "eps": {"earning", "share"},
    "capex": {"capital", "expenditure"},
}
_ABBREVIATED = re.compile(r"\b(?:R&D|SG&A|EPS|capex)\b", re.I)
_DURATION = re.compile(r"\s*(?:years?|months?|weeks?|days?|hours?)\b", re.I)
_CONTEXT_SCALE = re.compile(r"\bin\s+(thousands|millions|billions)\b|单位\s*[:：]\s*(万|亿)", re.I)
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
    r"\b(three|six|nine)\s+months\s+(?:of\s+|in\s+)(?:the\s+)?(fiscal\s+)?(?:years?\s+)?(?:\d{4}\s+and\s+)?$", re.I
)
_FISCAL = re.compile(r"\bfiscal\b|\bFY", re.I)
_MONTHS_COUNTED = {"three": 3, "six": 6, "nine": 9}
_AS_OF = re.compile(r"\b(?:as\s+of|as\s+at)\s+$", re.I)
_DAYS_OFF = 7  # a 52-53 week year ends its quarters on other days than the year before
_LATER_EVENTS = 60  # days after its period's end that a filing reports events up to (it is filed within 40-45)
_WORDS_SHORT_OF_BEST = 3  # chosen on SEC dev: 2 lost 0.019 of the gold figures, 3 one figure, 4 more than 3
_HEADER_WORDS = 8  # more words than this besides its dates make a line prose; a statement's header holds up to six
_SMALLEST_COUNT = 100  # bare integers below it are list numbers and counts of things, not figures to check


@dataclass(frozen=True)
class Figure:
    text: str
    start: int
    end: int
    kind: str  # amount, number, percent, date or year
    value: float  # amounts at their scale; a date as YYYYMMDD
    tolerance: float  # half a unit of the last digit written
    raw: float = 0.0  # the digits as written, before any scale word
    scale_written: bool = False  # a scale word follows it ("million", "亿")


@dataclass
class FigureCheck:
    text: str
    kind: str
    start: int  # offsets in the answer's text
    end: int
    status: str  # supported, unsupported, or cut_off (the answer ended inside it: finish_reason "length")
    source: int | None = None  # 1-based, into the sources the answer was given
    file: str | None = None
    page: int | None = None
    span: str | None = None  # the line of the source that holds it, or (held_by "period") its document's period
    held_by: str = "line"  # or "period": a period the answer names, found in its source's document's metadata
    cited: bool = False  # found in a source the answer cites
    derived_from: list[str] = field(default_factory=list)  # the two figures it is the change between

    def withdraw(self) -> None:
        """Not supported after all, by a rule that reads more than the line that held it."""
        self.status, self.source, self.file, self.page, self.span = "unsupported", None, None, None, None
        self.held_by = "line"


@dataclass
class FigureReport:
    checks: list[FigureCheck]
    unknown_citations: list[int]  # [n] marks that point at no source
    refused: bool = False  # the policy withheld the answer for its unsupported figures (rag.answering)

    @property
    def summary(self) -> dict[str, int]:
        count = {status: sum(c.status == status for c in self.checks) for status in ("supported", "unsupported")}
        return {"figures": len(self.checks), **count, "cut_off": len(self.checks) - sum(count.values())}

    @property
    def all_supported(self) -> bool:
        return all(c.status == "supported" for c in self.checks)


def _date(year: str, month: int, day: str) -> float | None:
    y, d = int(year), int(day)
    return float(y * 10000 + month * 100 + d) if 1 <= month <= 12 and 1 <= d <= 31 else None


def _dates(text: str) -> list[tuple[int, int, float, float]]:
    """(start, end, value as YYYYMMDD, tolerance) of each date: a day, or a month written without its day."""
    found = []
    for match in _DATE_WORDS.finditer(text):
        value = _date(match[3], _MONTHS[match[1].lower()], match[2])
        if value:
            found.append((match.start(), match.end(), value, 0.5))
    for pattern in (_DATE_ISO, _DATE_HAN):
        for match in pattern.finditer(text):
            value = _date(match[1], int(match[2]), match[3])
            if value:
                found.append((match.start(), match.end(), value, 0.5))
    days = [(start, end) for start, end, _, _ in found]
    for pattern, year, month in ((_MONTH_WORDS, 2, 1), (_MONTH_HAN, 1, 2)):
        for match in pattern.finditer(text):
            number = _MONTHS[match[month].lower()] if month == 1 else int(match[month])
            if 1 <= number <= 12 and not any(s <= match.start() < e for s, e in days):
                found.append(
                    (match.start(), match.end(), int(match[year]) * 10000 + number * 100 + _MID_MONTH, _A_MONTH)
                )
    return found


def _masked(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """The text with ``spans`` blanked out, offsets kept."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


def _file_names(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _FILE_NAME.finditer(text)] if ".pdf" in text.lower() else []


def _file_names_masked(text: str) -> str:
    """The text without its files' names: "(2023 Q3 MSFT.pdf)" names no quarter."""
    return _masked(text, _file_names(text))


def figures(text: str, everything: bool = False) -> list[Figure]:
    """The figures of ``text`` in order; ``everything``: bare small integers too (a passage's, to match against)."""
    found = [Figure(text[s:e], s, e, "date", v, tolerance) for s, e, v, tolerance in _dates(text)]
    spans = [m.span() for m in _NOT_FIGURES.finditer(text)] + _file_names(text)
    masked = _masked(text, [(f.start, f.end) for f in found] + spans)
    for m in _FIGURE.finditer(masked):
        digits = m["num"].replace(",", "")
        raw = float(digits)
        decimals = len(digits.partition(".")[2])
        scale_word = (m["scale"] or m["han"] or "").lower()
        if scale_word in ("k", "m", "b") and not m["cur"]:
            scale_word = ""  # "5 m" of distance, "3 b" of a list: only a currency makes the letter a scale
        scale = _SCALES.get(scale_word, 1.0)
        if m["pct"]:
            kind = "percent"
        elif m["cur"] or scale_word:
            kind = "amount"
        elif not decimals and "," not in m["num"] and 1900 <= raw <= 2100:
            kind = "year"
        elif decimals or "," in m["num"] or raw >= _SMALLEST_COUNT or everything:
            kind = "number"
        else:
            continue
        start = m.start() if m["close"] else m.start("cur") if m["cur"] else m.start("num")
        end = m.end("pct") if m["pct"] else m.end()
        text_end = end - (1 if text[end - 1 : end] == ")" and not m["open"] else 0)
        found.append(
            Figure(
                text[start:text_end].strip(),
                start,
                text_end,
                kind,
                raw * scale,
                0.5 * 10**-decimals * scale,
                raw,
                bool(scale_word),
            )
        )
    return sorted(found, key=lambda f: f.start)


_Lines = tuple[tuple[frozenset[str], frozenset[str]], ...]  # each line that holds values: its words, their kinds
_Column = tuple[int, date | None]  # the year heading a table's column, and the day where a date heads it


@dataclass
class _Passage:
    number: int  # 1-based
    chunk: RetrievedChunk
    figures: tuple[Figure, ...]
    context_scales: tuple[float, ...]  # what its bare numbers may be counted in
    unscaled: frozenset[int]  # the starts of bare numbers counted in no scale
    columns: dict[int, _Column]  # a table cell's start -> the year (and day) its column is headed by
    lines: _Lines

    def closest(self, about: set[str], kind: str) -> int:
        """The most words of ``about`` a line of it holding a value of ``kind`` shares."""
        return max((len(about & words) for words, kinds in self.lines if kind in kinds), default=0)

    def values(self, kind: str, scaled_only: bool = False) -> Iterator[tuple[float, Figure]]:
        """``scaled_only``: a bare number of a passage whose headers give a scale counts at that scale only (an
        amount written "$81,797" is not the "81,797" of a table in millions)."""
        for f in self.figures:
            if kind in ("date", "year"):
                if f.kind == "date" and kind == "date":
                    yield f.value, f
                elif kind == "year" and f.kind in ("date", "year"):
                    yield (f.value // 10000 if f.kind == "date" else f.value), f
            elif kind == "percent":
                if f.kind == "percent":
                    yield f.value, f
            elif f.kind in ("amount", "number", "year"):
                if f.scale_written or not (scaled_only and self.context_scales):
                    yield f.value, f
                if not (f.scale_written or f.kind == "year" or f.start in self.unscaled):
                    for scale in self.context_scales:
                        yield f.raw * scale, f


def _year(figure: Figure) -> int:
    return int(figure.value // 10000 if figure.kind == "date" else figure.value)


def _column_years(text: str, found: Sequence[Figure]) -> dict[int, _Column]:
    """The year heading each table cell's column, and its day where a date heads it, where the table says: a run of
    lines holding only years or dates (a statement's "July 1, 2023  June 25, 2022" header, however extraction broke
    it) followed by rows whose count of values is the count of those years. Cells of rows that count otherwise, and
    all prose, get none."""
    lines: dict[int, list[Figure]] = {}
    for f in found:
        lines.setdefault(text.count("\n", 0, f.start), []).append(f)
    columns: dict[int, _Column] = {}
    header: list[_Column] = []
    pending: list[_Column] = []
    for _, line in sorted(lines.items()):
        heads = [(_year(f), _day(f)) for f in line if f.kind in ("date", "year")]
        cells = [f for f in line if f.kind not in ("date", "year")]
        if heads and not cells:
            pending = [] if _prose_around(text, line) else pending + heads
        elif cells and not heads:
            header, pending = (pending, []) if pending else (header, pending)
            if len(cells) == len(header) > 1:
                columns.update((f.start, head) for f, head in zip(cells, header, strict=True))
        else:
            pending = []  # prose that mixes them heads no column
    return columns


# What stands between the items of a list of figures: "$453 million and $619 million", "Q1 2022 and Q1 2023",
# "December 31, 2022, and June 30, 2023".
_LIST_JOIN = re.compile(r"\s*(?:,\s*(?:and\s+)?|and\s+)(?:Q[1-4]\s+)?", re.I)
_PROSE_SENTENCE = re.compile(r"(?<=[.;])\s+|\n\s*\n")


def _prose_pairs(text: str, found: Sequence[Figure]) -> dict[int, _Column]:
    """The year (and day) each value of a sentence's list of values is stated for, where the sentence lists as many
    periods: "was $2.8 billion and $2.7 billion as of December 31, 2022 and June 30, 2023", "... $453 million and $619
    million in Q1 2022 and Q1 2023", "increased 5% and 7% in 2023 and 2022, respectively". The n-th value is the
    n-th period's, as in a table's columns."""
    pairs: dict[int, _Column] = {}
    bounds = [0, *(m.end() for m in _PROSE_SENTENCE.finditer(text)), len(text) + 1]
    by_sentence: dict[int, list[Figure]] = {}
    for f in found:
        by_sentence.setdefault(bisect_left(bounds, f.start + 1), []).append(f)
    for line in by_sentence.values():
        values = _lists(text, [f for f in line if f.kind not in ("date", "year")])
        heads = _lists(text, [f for f in line if f.kind in ("date", "year")])
        for cells in values:
            for periods in heads:
                if len(cells) == len(periods):
                    pairs.update((f.start, (_year(p), _day(p))) for f, p in zip(cells, periods, strict=True))
    return pairs


def _lists(text: str, found: Sequence[Figure]) -> list[list[Figure]]:
    """Runs of two or more figures written as a list ("A, B and C")."""
    runs: list[list[Figure]] = []
    for f in found:
        if runs and _LIST_JOIN.fullmatch(text, runs[-1][-1].end, f.start):
            runs[-1].append(f)
        else:
            runs.append([f])
    return [run for run in runs if len(run) > 1]


def _day(figure: Figure) -> date | None:
    """The day a date figure names; None for a year or a month."""
    if figure.kind != "date" or figure.tolerance >= 1:
        return None
    value = int(figure.value)
    return date(value // 10000, value // 100 % 100, value % 100)


def _prose_around(text: str, line: Sequence[Figure]) -> bool:
    """Whether the dates of a line stand in running prose ("... at any time. As of September 30, 2023,"), which heads
    no column, rather than in a table's header: more words besides months than a header's "(In Millions, Except Per
    Share Amounts; Unaudited)". The line holds no other figure, and a date's only word is its month."""
    words = _WORD.findall(_line(text, line[0].start, line[-1].end))
    return sum(1 for word in words if word.lower() not in _MONTHS) > _HEADER_WORDS


def _excepted(text: str, scale: re.Match) -> bool:
    """A scale a header gives as an exception: "(In millions, except number of shares which are reflected in
    thousands)" counts no amount in thousands."""
    opened = max(text.rfind("(", 0, scale.start()), text.rfind("\n", 0, scale.start()))
    return "except" in text[opened + 1 : scale.start()].lower()


@lru_cache(maxsize=1024)
def _read_passage(
    text: str,
) -> tuple[tuple[Figure, ...], tuple[float, ...], frozenset[int], dict[int, _Column], _Lines]:
    """A passage's figures, the scales its bare numbers may be counted in and those that are in none, its cells'
    column years and its lines that hold values; kept, since the same passages come back for question after question."""
    scales = tuple({_SCALES[(m[1] or m[2]).lower()] for m in _CONTEXT_SCALE.finditer(text) if not _excepted(text, m)})
    found = tuple(figures(text, everything=True))
    ends = _line_ends(text)
    on_line: dict[int, list[Figure]] = {}
    for f in found:
        if f.kind != "date":
            on_line.setdefault(bisect_left(ends, f.start), []).append(f)
    lines = _LINE_END.split(text)
    held = tuple(
        (frozenset(_words(lines[i])), frozenset(_matched_as(f.kind) for f in line))
        for i, line in sorted(on_line.items())
    )
    # A small whole number alone on its line is a page's number ("Notes to Financial Statements 11") or a count in
    # prose, not a table's cell: the table's scale does not make it "$11.0 million".
    unscaled = frozenset(line[0].start for line in on_line.values() if len(line) == 1 and _small_whole(line[0]))
    # A duration ("11.4 years", a lease's term) is counted in its own unit, whatever the table's amounts are in.
    unscaled |= {f.start for f in found if f.kind == "number" and _DURATION.match(text, f.end)}
    return found, scales, unscaled, _prose_pairs(text, found) | _column_years(text, found), held


def _small_whole(figure: Figure) -> bool:
    return figure.kind == "number" and figure.raw < _SMALLEST_COUNT and re.fullmatch(r"\d+", figure.text) is not None


def _matched_as(kind: str) -> str:
    """The kind of passage figure a figure of ``kind`` is looked for among: a number may be an amount's value."""
    return "amount" if kind in ("number", "year") else kind


def _passage(number: int, chunk: RetrievedChunk) -> _Passage:
    return _Passage(number, chunk, *_read_passage(chunk.text))


@dataclass(frozen=True)
class _Period:
    """The period a source's document reports on, as its metadata says."""

    fiscal: tuple[int, int]  # (fiscal year, fiscal quarter)
    quarters: frozenset[tuple[int, int]]  # (year, quarter)s a reader may name it by (DocMetadata.own_quarters)
    end: date | None
    label: str  # what a reader is shown as the span that holds it ("Apple Inc. (AAPL) | Form 10-Q | Q3 2023 | ...")


def _period(chunk: RetrievedChunk) -> _Period | None:
    """Its document's period, None for a document of no quarter (a report, a page with no metadata)."""
    if not (chunk.metadata.get("fiscal_year") and chunk.metadata.get("fiscal_quarter")):
        return None
    return _read_period(chunk.file, json.dumps(chunk.metadata, sort_keys=True))


@lru_cache(maxsize=1024)
def _read_period(file: str, metadata: str) -> _Period:
    """Kept per document: every passage of a filing has the same."""
    meta = DocMetadata.model_validate_json(metadata)
    end = date.fromisoformat(meta.period_end) if meta.period_end else None
    fiscal = (meta.fiscal_year or 0, meta.fiscal_quarter or 0)  # both given: _period asks
    return _Period(fiscal, frozenset(meta.own_quarters()), end, chunk_header(meta, file))


def _words(text: str) -> set[str]:
    """What a stretch of text is about: its longer words (lower case, a plural's s dropped), Chinese as pairs of
    characters."""
    out = set()
    for word in _WORD.findall(text):
        if word.isascii():
            word = word.lower()
            if word not in _PLAIN_WORDS:
                out.add(_singular(word))
        else:
            out.update(word[i : i + 2] for i in range(len(word) - 1))
    return out


def _about(sentence: str) -> set[str]:
    """What an answer's sentence says its figures measure: its words, and the names filings give the same things."""
    words = _words(sentence) | {m.lower() for m in _ABBREVIATED.findall(sentence)}
    return words | set().union(*(_SAME_THING.get(w, set()) for w in words))


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def _sentence_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    bounds = [0, *(m.end() for m in _SENTENCE_END.finditer(text)), len(text)]
    return max(b for b in bounds if b <= start), min((b for b in bounds if b >= end), default=len(text))


def _sentence(text: str, start: int, end: int) -> str:
    return text[slice(*_sentence_bounds(text, start, end))]


def _sentence_before(text: str, sentence: tuple[int, int]) -> tuple[int, int]:
    """The bounds of the sentence before ``sentence`` (the first sentence's own, for the first)."""
    at = max(0, sentence[0] - 1)
    return _sentence_bounds(text, at, at)


@lru_cache(maxsize=1024)
def _line_ends(text: str) -> tuple[int, ...]:
    """Where a passage's lines end (_LINE_ENDS); kept, as every value looked up on it reads its line."""
    return tuple(m.start() for m in _LINE_END.finditer(text))


def _line(text: str, start: int, end: int) -> str:
    """The line of a passage that holds ``text[start:end]``, its spaces made single."""
    ends = _line_ends(text)
    before, after = bisect_left(ends, start), bisect_left(ends, end)
    first = ends[before - 1] + 1 if before else 0
    last = ends[after] if after < len(ends) else len(text)
    return " ".join(text[first:last].split())


def _matches(passage: _Passage, figure: Figure, about: set[str], shared: int = 1) -> Iterator[Figure]:
    """The figures of ``passage`` that hold the value of ``figure``, on a line that shares ``shared`` words (at least
    one) with ``about`` (what the answer's sentence says the figure measures) unless ``about`` is empty."""
    if figure.kind not in ("date", "year") and abs(figure.value) <= figure.tolerance:
        return  # "$0.0 billion": within its rounding of every small number
    kind = "amount" if figure.kind == "number" else figure.kind
    for value, there in passage.values(kind, scaled_only=figure.kind == "amount" and not figure.scale_written):
        same = abs(abs(value) - abs(figure.value)) <= figure.tolerance + 1e-9 * abs(figure.value)
        if same and figure.kind == "date" and there.tolerance > figure.tolerance:
            continue  # "March 2023" is no source for "March 16, 2023"
        if not same and figure.kind == "number" and there.kind != "date":
            same = abs(there.raw - abs(figure.raw)) <= figure.tolerance  # "81,797" without its table's scale
        if same and (
            not about or len(about & _words(_line(passage.chunk.text, there.start, there.end))) >= max(1, shared)
        ):
            yield there


def _shared_enough(passages: Sequence[_Passage], figure: Figure, about: set[str]) -> int:
    """How many words of ``about`` the line holding a value must share: no more than _WORDS_SHORT_OF_BEST fewer than
    the line of the sources that shares most with it, or half as many where that line shares more (a Chinese
    sentence's pairs of characters count many more than an English line's words). A value on a line much less about
    the sentence than another is most often some other line's figure that happens to round the same; a year on a line
    of another article that shares a word or two with its sentence ("始建于") is most often that article's year."""
    if figure.kind not in ("amount", "number", "percent", "year") or not about:
        return 1
    kind = _matched_as(figure.kind)
    best = max((p.closest(about, kind) for p in passages), default=0)
    return best - max(_WORDS_SHORT_OF_BEST, best // 2)


def _common_words(passages: Sequence[_Passage]) -> set[str]:
    """Words that say nothing about which line is meant: the names of the sources' documents' companies where their
    metadata gives them, else words in more than half of the passages (where there are at least three)."""
    names = {
        name
        for p in passages
        for name in [
            p.chunk.metadata.get("company"),
            p.chunk.metadata.get("ticker"),
            *(p.chunk.metadata.get("aliases") or []),
        ]
        if name
    }
    if names:
        return set().union(*(_words(name) for name in names))
    if len(passages) < 3 or any(p.chunk.metadata for p in passages):
        return set()
    counts = Counter(word for p in passages for word in _passage_words(p.chunk.text))
    return {word for word, n in counts.items() if n * 2 > len(passages)}


@lru_cache(maxsize=1024)
def _passage_words(text: str) -> frozenset[str]:
    return frozenset(_words(text))


@dataclass(frozen=True)
class _AsOf:
    """A date balances are stated at ("as of September 30, 2023"), where "the quarter ended" names a period's end."""

    day: date


@dataclass(frozen=True)
class _FiscalQuarter:
    """A quarter named as a fiscal one ("the third quarter of fiscal 2023", "Q1 FY24"): a document's fiscal quarter,
    not the calendar quarter most of its period falls in."""

    quarter: tuple[int, int]


_Named = tuple[int, int] | _FiscalQuarter | date | _AsOf  # a quarter, a period's end, a balance's date


def _quarter_of(named: _Named) -> tuple[int, int] | None:
    if isinstance(named, _FiscalQuarter):
        return named.quarter
    return named if isinstance(named, tuple) else None


def _mention_around(
    figure: Figure, mentions: Sequence[tuple[int, int, tuple[int, int]]]
) -> tuple[int, int, tuple[int, int]] | None:
    """The quarter mention ("Q1 2023", "the third quarter of fiscal 2024") that holds a year figure, if one does."""
    if figure.kind != "year":
        return None
    return next((m for m in mentions if m[0] <= figure.start and figure.end <= m[1]), None)


def _ends_of_quarter(
    figure: Figure, mentions: Sequence[tuple[int, int, tuple[int, int]]], periods: Sequence[tuple[_Passage, _Period]]
) -> set[int]:
    """For the year of a quarter named ("Q1 2023"), the years the periods of the sources whose own quarter it is end
    in."""
    around = _mention_around(figure, mentions)
    return {period.end.year for _, period in periods if around and around[2] in period.quarters and period.end}


def _named_period(
    answer: str, figure: Figure, sentence_start: int, mentions: Sequence[tuple[int, int, tuple[int, int]]]
) -> tuple[_Named, bool] | None:
    """The period ``figure`` names, if it names one: a (year, quarter) for the year of "Q3 2023", a date for one
    after "the quarter ended" or "as of"; and whether it is named as the period compared against. None: it names no
    period."""
    named: _Named
    around = _mention_around(figure, mentions)  # None for a figure that is not a year
    if figure.kind == "year":
        before = answer[sentence_start : figure.start]
        earlier = [m[2][1] for m in mentions if sentence_start <= m[0] and m[1] <= figure.start]
        if around:
            fiscal = _FISCAL.search(answer[around[0] : around[1]])
            start, named = around[0], _FiscalQuarter(around[2]) if fiscal else around[2]
        elif _SAME_QUARTER.search(before) and earlier:  # "Q3 2023, compared to the same quarter in 2022"
            return (int(figure.value), earlier[-1]), True
        elif months := _MONTHS_OF.search(before):
            quarter = (int(figure.value), _MONTHS_COUNTED[months[1].lower()] // 3)
            start, named = sentence_start + months.start(), _FiscalQuarter(quarter) if months[2] else quarter
        else:
            return None
    elif (day := _day(figure)) is not None:  # a month ("in March 2023") ends no period
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
            compared = _a_year_before(named, then)
    return named, compared


# Words that tell a later period of a narrative: "a slight increase in Q2 2023, and then a decrease in Q3 2023", "In
# Q3 2023, revenue continued to decrease".
_LATER = re.compile(r"\b(?:then|subsequent(?:ly)?|continued|continuing|further|later|again|afterwards?)\b", re.I)
_LATEST = re.compile(r"\b(?:latest|most\s+recent)\s+(?:fiscal\s+)?quarter", re.I)
_RANGE_FROM = re.compile(r"\bfrom\s+(?:the\s+)?$", re.I)


def _out_of_order(answer: str, mentions: Sequence[tuple[int, int, tuple[int, int]]]) -> set[int]:
    """The starts of quarters an answer tells as later than the quarter it named before ("and then ... in Q3 2022"
    after "Q2 2023") that are earlier: a narrative's periods follow each other. Words that compare ("compared to Q3
    2022") or start a range ("from Q3 2022 to ...") name an earlier period on purpose."""
    out = set()
    for k in range(1, len(mentions)):
        before, (start, end, quarter) = mentions[k - 1], mentions[k]
        sentence = _sentence_bounds(answer, start, end)
        until = min(mentions[k + 1][0] if k + 1 < len(mentions) else sentence[1], sentence[1])
        told = answer[max(sentence[0], before[1]) : start] + answer[end:until]
        lead = answer[sentence[0] : start]
        if _COMPARED_JUST_BEFORE.search(lead[-40:]) or _RANGE_FROM.search(lead):
            continue
        if _LATER.search(told) and quarter < before[2]:
            out.add(start)
    return out


def _a_year_before(said: _Named, then: _Named) -> bool:
    """Whether ``said`` is the period of a year before ``then`` (a 52-53 week year's quarter may end some days off)."""
    if (quarter := _quarter_of(said)) is not None:
        return (quarter[0] + 1, quarter[1]) == _quarter_of(then)
    day = said.day if isinstance(said, _AsOf) else said
    other = then.day if isinstance(then, _AsOf) else then
    if not (isinstance(day, date) and isinstance(other, date)):
        return False
    return abs((day - other + timedelta(days=365)).days) <= _DAYS_OFF


def _reports(period: _Period, named: _Named, a_year_before: bool) -> bool:
    """Whether the document reports on ``named`` as its own period or (``a_year_before``) as the same period a year
    before, which every filing prints beside its own."""
    if isinstance(named, _FiscalQuarter):
        if a_year_before:
            return _a_year_before(named.quarter, period.fiscal)
        return _in_year_to_date(named.quarter, period)
    if isinstance(named, tuple):
        return any(_a_year_before(named, then) if a_year_before else named == then for then in period.quarters)
    if period.end is None:
        return False
    if a_year_before:
        return _a_year_before(named, period.end)
    if isinstance(named, date):
        return named == period.end
    return _states_balances_at(named.day, period.end, period.fiscal[1])


def _files_reporting(named: _Named, periods: Sequence[tuple[_Passage, _Period]]) -> dict[str, int | None]:
    """The documents that report on ``named`` as their own period (None), and, where any does, those that print it as
    the same period a year before, with the year that heads its column there; empty where none reports on it as its
    own."""
    own: dict[str, int | None] = {p.chunk.file: None for p, period in periods if _reports(period, named, False)}
    if not own:
        return own
    year_ago = {
        passage.chunk.file: period.end.year - 1
        for passage, period in periods
        if period.end and _reports(period, named, True)
    }
    return year_ago | own


def _earlier_in_year(named: _Named, period: _Period) -> bool:
    """Whether a fiscal quarter named is not the document's own (an earlier one its year to date covers)."""
    return isinstance(named, _FiscalQuarter) and named.quarter != period.fiscal


def _in_year_to_date(quarter: tuple[int, int], period: _Period) -> bool:
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
    return 0 <= (day - end).days <= _LATER_EVENTS or abs((day - year_end).days) <= _DAYS_OFF


def _ahead(named: _Named, periods: Sequence[tuple[_Passage, _Period]]) -> bool:
    """A quarter after the latest the sources report on, within a year: what a filing's outlook speaks of ("sales ...
    expected to decline in the fourth quarter of fiscal year 2024")."""
    said = _quarter_of(named)
    if said is None:
        return False
    year, quarter = max(period.fiscal for _, period in periods)
    return 0 < said[0] * 4 + said[1] - (year * 4 + quarter) <= 4


def _latest_named(periods: Sequence[tuple[_Passage, _Period]]) -> list[_Named]:
    """What "the most recent quarter" names: the latest period the sources report on, by its end and its quarters."""
    ended = [(period.end, period) for _, period in periods if period.end]
    if not ended:
        return []
    end, latest = max(ended, key=lambda e: e[0])
    return [end, *latest.quarters, _FiscalQuarter(latest.fiscal)]


def _check_periods(
    checks: Sequence[FigureCheck],
    sentences: Sequence[tuple[int, int]],
    named: Sequence[tuple[_Named, bool] | None],
    periods: Sequence[tuple[_Passage, _Period]],
    cited: Sequence[int],
    against_columns: set[int],
    seen: dict[tuple[int, int], _Seen],
    reporting: Sequence[dict[str, int | None]],
    clauses: Sequence[tuple[int, int]],
    latest: dict[tuple[int, int], list[_Named]],
) -> None:
    """A period the answer names ("Q3 2023", "the quarter ended July 1, 2023") must be one a source's document reports
    on, as its own or as the one a sentence compares with, or a quarter its outlook speaks of: every filing prints
    last year's figures beside its own, so the year alone is on its pages either way. A quarter that is a document's
    own is supported by its metadata whether or not the passage prints it (a statement's page dates its columns
    "October 30, 2022", not "fiscal 2023"), unless the sentence's values stand in the tables under other years
    (``against_columns``: those figures' indices). ``latest``: the sources' latest period, for each sentence that
    names it as "the most recent quarter"."""
    # The sources' own periods each sentence named, and the checks that named them: the same periods a year before,
    # named later, compare with them.
    naming_own: dict[tuple[int, int], list[_Named]] = {}
    own_checks: dict[tuple[tuple[int, int], _Named], list[FigureCheck]] = {}
    for i, (check, sentence, period_named) in enumerate(zip(checks, sentences, named, strict=True)):
        if period_named is None or check.status == "cut_off":
            continue
        said, compared = period_named
        reported = [(p, period) for p, period in periods if _reports(period, said, False)]
        beside = ""
        # A source's own quarter needs no line: its metadata is the source. A date, or the year-ago period, must also
        # be printed (dates "as of" allow days the document does not report on).
        by_metadata = bool(reported) and _quarter_of(said) is not None and i not in against_columns
        # reporting[i]: the files of a period named as a source's own and not compared against (_files_reporting).
        if reporting[i] and _values_elsewhere(checks, clauses[i], sentences, sentence, reporting[i], seen[sentence]):
            check.withdraw()  # "In Q3 2022, revenue was $81.8 billion": a source's quarter, but not of that figure
            continue
        if compared and said in naming_own.get(sentence, []):
            # "For the third quarter of 2022, ... compared to the same quarter in 2022": one of them is wrong.
            for c in (check, *own_checks[sentence, said]):
                c.withdraw()
            continue
        if reported:
            naming_own.setdefault(sentence, []).append(said)
            own_checks.setdefault((sentence, said), []).append(check)
            # A fiscal quarter is named by its own filing where one is a source, else by a later one's year to date.
            own = [(p, period) for p, period in reported if not _earlier_in_year(said, period)]
            reported, beside = (own, "") if own else (reported, ", in its year to date")
        # A period compared against is the year before the sources' own period the sentence named before it, or the
        # latest where it says "the most recent quarter" instead: "the third quarter of 2023 ... compared to the
        # same quarter in 2022", not "... in 2021".
        elif any(_a_year_before(said, then) for then in naming_own.get(sentence, [])) or (
            compared
            and (
                not (reference := naming_own.get(sentence) or latest.get(sentence))
                or any(_a_year_before(said, then) for then in reference)
            )
        ):
            reported = [(p, period) for p, period in periods if _reports(period, said, True)]
            beside = ", beside the same period a year before"
        if reported and (check.status == "supported" or by_metadata):
            passage, period = reported[0]
            check.status, check.source, check.cited = "supported", passage.number, passage.number in cited
            check.file, check.page, check.span = passage.chunk.file, passage.chunk.page, period.label + beside
            check.held_by = "period"
            continue
        if not (reported or _ahead(said, periods)):
            check.withdraw()


def _values_elsewhere(
    checks: Sequence[FigureCheck],
    clause: tuple[int, int],
    sentences: Sequence[tuple[int, int]],
    sentence: tuple[int, int],
    files: dict[str, int | None],
    seen: _Seen,
) -> bool:
    """Whether the sentence's values were found (on a line) and none of them in ``files`` (_files_reporting): a
    question about four quarters has all four filings as sources, and a period it names must be the period of its
    figures' filing, or of one that prints them in that period's column beside its own, not any source's. Where the
    period's ``clause`` has values of its own ("$1,945 million in fiscal Q3 2023, and $2,294 million in fiscal Q3
    2024"), they are its figures."""
    values = [
        c
        for c, s in zip(checks, sentences, strict=True)
        if s == sentence and c.kind in ("amount", "number", "percent") and c.status == "supported"
    ]
    values = [c for c in values if clause[0] <= c.start < clause[1]] or values
    return bool(values) and not any(
        c.file is not None and c.file in files and files[c.file] in (None, seen.column_of.get(c.start)) for c in values
    )


_CLAUSE_END = re.compile(r"[,;:()\n]")
_CLAUSE_BREAK = re.compile(r"[;:()\n]|,(?!\d)")  # the same, but a comma before a digit separates thousands


def _clause_bounds(answer: str, figure: Figure, sentence: tuple[int, int]) -> tuple[int, int]:
    """Where the clause that holds ``figure`` starts and ends in the answer, within its sentence."""
    before = list(_CLAUSE_BREAK.finditer(answer, sentence[0], figure.start))
    after = _CLAUSE_BREAK.search(answer, figure.end, sentence[1])
    return before[-1].end() if before else sentence[0], after.start() if after else sentence[1]


def _between_periods(
    found: Sequence[Figure], named: Sequence[tuple[_Named, bool] | None], clauses: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Where each named period's own figures stand: in a clause that names several periods ("$1,945 million in the
    third quarter of fiscal 2023 and increased to $2,294 million in the third quarter of fiscal 2024"), those between
    the period before it and itself, or, where none stand there, those after it up to the next; elsewhere its
    clause."""
    values = [f.start for f in found if f.kind in ("amount", "number", "percent")]
    out = []
    for i, (figure, clause) in enumerate(zip(found, clauses, strict=True)):
        others = [g for j, g in enumerate(found) if named[j] and j != i and clause[0] <= g.start < clause[1]]
        if named[i] is None or not others:
            out.append(clause)
            continue
        before = max((g.end for g in others if g.end <= figure.start), default=clause[0])
        after = min((g.start for g in others if g.start >= figure.end), default=clause[1])
        if any(before <= v < figure.start for v in values):
            out.append((before, figure.start))
        elif any(figure.end <= v < after for v in values):
            out.append((figure.end, after))
        else:
            out.append(clause)
    return out


def _year_phrase(answer: str, figure: Figure, sentence: tuple[int, int]) -> set[str]:
    """The words beside a year in its clause, two on each side ("since the 2022 Form 10-K": "since", "form"): a year
    that names no period is the year of those words. Chosen on SEC dev: one on each side caught less, three lost a
    gold figure."""
    before = _CLAUSE_END.split(answer[sentence[0] : figure.start])[-1].split()[-2:]
    after = _CLAUSE_END.split(answer[figure.end : sentence[1]])[0].split()[:2]
    return _words(" ".join(before + after))


def _derived(figure: Figure, others: Sequence[Figure]) -> list[str]:
    """Two other figures of the answer that ``figure`` is the change between, if any."""
    amounts = [o for o in others if o.kind in ("amount", "number") and o is not figure]
    for a, b in permutations(amounts, 2):
        if min(abs(a.value), abs(b.value)) <= figure.tolerance:
            continue  # "$496 million" is not the change from 190 to $496 million
        if figure.kind == "percent":
            if a.value and abs(abs((b.value - a.value) / a.value * 100) - figure.value) <= figure.tolerance:
                return [a.text, b.text]
        elif abs(abs(b.value - a.value) - abs(figure.value)) <= figure.tolerance and figure.value:
            return [a.text, b.text]
    return []


@dataclass
class _Seen:
    """What a sentence's figures were found in so far."""

    columns: set[int] = field(default_factory=set)  # the years heading the columns its values were found in
    # The sources' dates and years (passage, start) its dates and years stand on: each stands on one of its own,
    # "2009年到2009年" is not the sources' "2009年到2010年".
    taken: set[tuple[int, int]] = field(default_factory=set)
    # The year heading the column each of its values was found in (None: not in a column), by the value's offset.
    column_of: dict[int, int | None] = field(default_factory=dict)


def _look_up(
    check: FigureCheck,
    figure: Figure,
    about: set[str],
    passages: Sequence[_Passage],
    order: Sequence[_Passage],
    named: set[int],
    days: set[date],
    cited: Sequence[int],
    seen: _Seen,
) -> bool:
    """Whether a source holds ``figure`` on a line about ``about``, in a column of a year ``named`` (if any) and,
    where a date heads the column, of a day in ``days`` (if any); the first that does supports ``check``, and
    ``seen`` (its sentence's) gains what it was found in."""
    shared = _shared_enough(passages, figure, about)
    for passage in order:
        for there in _matches(passage, figure, about, shared):
            column = passage.columns.get(there.start)
            if figure.kind in ("date", "year"):
                if (passage.number, there.start) in seen.taken:
                    continue
                seen.taken.add((passage.number, there.start))
            elif column is not None:
                year, day = column
                seen.columns.add(year)
                if named and year not in named:
                    continue
                if day and days and not any(abs((day - said).days) <= _DAYS_OFF for said in days):
                    continue  # the column of December 31, 2022 is not the quarter ended June 25, 2022
            _support(check, passage, there, cited)
            seen.column_of[check.start] = column[0] if column else None
            return True
    return False


def _support(check: FigureCheck, passage: _Passage, there: Figure, cited: Sequence[int]) -> None:
    check.status, check.source, check.cited = "supported", passage.number, passage.number in cited
    check.file, check.page = passage.chunk.file, passage.chunk.page
    check.span = _line(passage.chunk.text, there.start, there.end)


def check_figures(
    answer: str,
    chunks: Sequence[RetrievedChunk],
    cited: Sequence[int] = (),
    finish_reason: str = "stop",
    question: str = "",
) -> FigureReport:
    """Each figure of ``answer`` checked against ``chunks`` (the sources it was given, numbered from 1); ``cited``:
    the source numbers it cites, searched first; ``question``: what the answer answers, if known.

    Years bind figures to table columns: a value found only in columns headed by years its sentence does not name is
    not supported, and neither is a year of a sentence whose values the tables hold only under other years."""
    passages = [_passage(i, c) for i, c in enumerate(chunks, start=1)]
    order = [p for p in passages if p.number in cited] + [p for p in passages if p.number not in cited]
    common = _common_words(passages)
    found = figures(answer)
    tail = answer.rstrip(" \t\n,.;:-")
    sentences = [_sentence_bounds(answer, f.start, f.end) for f in found]
    years: dict[tuple[int, int], set[int]] = {}
    days: dict[tuple[int, int], set[date]] = {}  # the days each sentence names: they bind values to dated columns
    for figure, sentence in zip(found, sentences, strict=True):
        if figure.kind in ("date", "year"):
            years.setdefault(sentence, set()).add(_year(figure))
        if (day := _day(figure)) is not None:
            days.setdefault(sentence, set()).add(day)
    periods = [(p, period) for p in order if (period := _period(p.chunk))]
    # A quarter named that is a source's own heads its columns with the year its period ends in: Apple's fiscal Q1
    # 2023 is the column "December 31, 2022".
    mentions = quarter_mentions(_file_names_masked(answer))
    named_periods = [_named_period(answer, f, s[0], mentions) for f, s in zip(found, sentences, strict=True)]
    ends = [_ends_of_quarter(f, mentions, periods) for f in found]
    for figure_ends, sentence in zip(ends, sentences, strict=True):
        years.setdefault(sentence, set()).update(figure_ends)
    # What each sentence's figures measure: its words, or the answer's first sentence's, where a list of figures is
    # introduced; less the sources' company names, which say nothing about which line is meant.
    first = _about(_sentence(answer, 0, 0))
    asked = _about(question) - common if question else set()
    abouts = {sentence: (_about(answer[slice(*sentence)]) | first) - common for sentence in set(sentences)}
    if not any(abouts.values()):  # an answer that is its figure alone ("2007年") measures what the question asks
        abouts = dict.fromkeys(abouts, asked)
    # A sentence may leave what its figure measures to the one before ("they were $631 million") or to the question
    # ("the spending was $6,984 million", asked about R&D). Those words are tried only where its own find no line:
    # added always, they raise the bar of the closest line (_shared_enough) and lost more gold figures than they
    # found on SEC dev.
    previous = {s: _sentence_before(answer, s) for s in set(sentences)}
    before = {s: _about(answer[slice(*previous[s])]) - common for s in previous}
    seen = {sentence: _Seen() for sentence in set(sentences)}
    # A sentence's values are sought first in the documents of the periods it names, so that a figure of one
    # quarter is found in that quarter's filing rather than beside it in a later one (_values_elsewhere).
    reporting = [_files_reporting(p[0], periods) if p is not None and not p[1] else {} for p in named_periods]
    own_files: dict[tuple[int, int], set[str]] = {}
    for sentence, files in zip(sentences, reporting, strict=True):
        if files:
            own_files.setdefault(sentence, set()).update(f for f, year_ago in files.items() if year_ago is None)
    orders = {
        s: [p for p in order if p.chunk.file in files] + [p for p in order if p.chunk.file not in files]
        for s, files in own_files.items()
    }
    against_columns: set[int] = set()  # years and dates withdrawn for them
    checks = [FigureCheck(f.text, f.kind, f.start, f.end, "unsupported") for f in found]
    # Values first: a year's check reads the columns they were found in.
    for i in sorted(range(len(found)), key=lambda i: found[i].kind in ("date", "year")):
        figure, check, sentence = found[i], checks[i], sentences[i]
        if finish_reason == "length" and figure.end >= len(tail):
            check.status = "cut_off"
            continue
        about = abouts[sentence]
        if figure.kind == "year" and periods:
            # The sources' periods decide what a year names (_check_periods), wherever it stands; one that names no
            # period stands beside the words it stands beside in the answer, where there are any: a filing prints
            # its years in every column.
            about = _year_phrase(answer, figure, sentence) if named_periods[i] is None else set()
        if figure.kind == "date" and named_periods[i] is not None:
            about = set()  # a period's end or a balance's date: the periods' rules decide, or it may stand anywhere
        named = years.get(sentence, set())
        if re.search(r"\bfiscal\b|财年|财政年度", answer[slice(*sentence)], re.I):
            # A fiscal year is named by the calendar year it ends in, its quarters' columns by their own.
            named = named | {year - 1 for year in named}
        contexts = [about]
        if about and figure.kind in ("amount", "number", "percent"):
            contexts += [about | words for words in (before[sentence], asked) if words]
        in_order = orders.get(sentence, order)
        for words in contexts:
            if _look_up(
                check, figure, words, passages, in_order, named, days.get(sentence, set()), cited, seen[sentence]
            ):
                break
        held = seen[sentence].columns
        if figure.kind in ("date", "year") and held and _year(figure) not in held and not ends[i] & held:
            check.withdraw()
            against_columns.add(i)
    if periods:
        clauses = [_clause_bounds(answer, f, s) for f, s in zip(found, sentences, strict=True)]
        clauses = _between_periods(found, named_periods, clauses)
        names = _latest_named(periods)
        latest = {s: names for s in set(sentences) if _LATEST.search(answer[slice(*s)])}
        _check_periods(
            checks, sentences, named_periods, periods, cited, against_columns, seen, reporting, clauses, latest
        )
    told_later = _out_of_order(answer, mentions)
    for figure, check in zip(found, checks, strict=True):
        if (around := _mention_around(figure, mentions)) and around[0] in told_later:
            check.withdraw()
    for figure, check, sentence in zip(found, checks, sentences, strict=True):
        if check.status == "unsupported" and figure.kind in ("amount", "number", "percent"):
            # A change the answer computes is written beside its operands: in its sentence or the one before
            # ("= ($143,083 million - $75,022 million) ... = $68,061 million"), not anywhere in a long answer, where
            # some two figures' change rounds to almost any percentage.
            near = {sentence, previous[sentence]}
            supported = [
                f for f, c, s in zip(found, checks, sentences, strict=True) if c.status == "supported" and s in near
            ]
            check.derived_from = _derived(figure, supported)
            if check.derived_from:
                check.status = "supported"
    unknown = sorted({int(n) for n in re.findall(r"\[(\d+)\]", answer) if not 1 <= int(n) <= len(chunks)})
    return FigureReport(checks, unknown)
