"""A source passage as the check reads it: its figures, the scales and columns that give them meaning, the lines that
hold them; and which of them hold a figure of the answer."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from rag.figures.reading import (
    COUNT_NOUNS,
    MONTHS,
    SCALES,
    SMALLEST_COUNT,
    UNITS,
    Figure,
    day_of,
    figures,
    other_currency,
    year_of,
)
from rag.figures.words import NOT_AN_END, WORD, line_bounds, line_ends, line_of, nth_line, passage_words, words_of
from rag.languages import has_han
from rag.types import RetrievedChunk

_MEASURE = re.compile(rf"\s*{UNITS}", re.I)
# A number followed by a noun counts things ("2,720 plaintiffs", "204 structures"), and one in parentheses before a
# word enumerates ("(2) if revolving loans ..."): neither is an amount in the page's "in millions". The words that
# join a value to its period or to another value do not make it one.
_COUNTED = re.compile(
    r"\)?\s+(?!(?:and|or|nor|to|in|of|for|from|at|as|by|on|with|than|versus|vs|compared|respectively|during|"
    r"through|until|per|each|while|which|that|was|were|is|are|had|has|have|million|billion|thousand|percent)\b)"
    r"[a-z]{2,}\b"
)
_NAMES_COUNTED = re.compile(rf"\b{COUNT_NOUNS}", re.I)
_CONTEXT_SCALE = re.compile(
    rf"(?:\b(?P<counts>{COUNT_NOUNS})\s+)?\bin\s+(?P<scale>thousands|millions|billions)\b|单位\s*[:：]\s*(?P<han>万|亿)",
    re.I,
)
_WORDS_SHORT_OF_BEST = 3  # chosen on SEC dev: 2 lost 0.019 of the gold figures, 3 one figure, 4 more than 3
# How many fewer words short of the best a value that only rounds to a source's may be; chosen on SEC dev: 1 caught 2
# more alterations with no gold figure lost, 2 caught 3 and lost 2 gold figures
_ROUNDED_WORDS = 1
_PER_SHARE = re.compile(r"\bper\s+(?:common\s+|diluted\s+|basic\s+)?share\b", re.I)
# A header that leaves per-share amounts out of its scale: "(In millions, except per share data)".
_EXCEPT_PER_SHARE = re.compile(
    r"\bin\s+(?:thousands|millions|billions)\b[^()]*?\bexcept\b[^()]*?\bper[-\s]share\b", re.I
)
_HEADING_LINES = 3  # rows a statement's heading ("Earnings per share:") stands above at most
_HEADER_WORDS = 8  # more words than this besides its dates make a line prose; a statement's header holds up to six
_Lines = tuple[tuple[frozenset[str], frozenset[str]], ...]  # each line that holds figures: its words, their kinds
_Column = tuple[int, date | None]  # the year heading a table's column, and the day where a date heads it


@dataclass
class Passage:
    number: int  # 1-based
    chunk: RetrievedChunk
    figures: tuple[Figure, ...]
    context_scales: tuple[tuple[float, bool], ...]  # what its bare numbers may be counted in; whether of things counted
    unscaled: frozenset[int]  # the starts of bare numbers counted in no scale
    columns: dict[int, _Column]  # a table cell's start -> the year (and day) its column is headed by
    lines: _Lines
    changes: dict[int, str]  # a change column's percentage's start -> "quarter" or "to_date" (_change_lengths)

    def closest(self, about: set[str], kind: str) -> int:
        """The most words of ``about`` a line of it holding a value of ``kind`` shares."""
        return max((len(about & words) for words, kinds in self.lines if kind in kinds), default=0)

    def scales(self, of: Figure | None) -> list[float]:
        """The scales a bare number may be counted in to be ``of`` (any figure, where None): where the headers give
        things counted a scale of their own ("dollars in millions and units in thousands"), an amount in a currency
        is counted in the others and a count of those things in theirs."""
        if of is None or not (of.currency or of.counts) or not any(counted for _, counted in self.context_scales):
            return [scale for scale, _ in self.context_scales]
        return [scale for scale, counted in self.context_scales if counted == of.counts]

    def values(self, kind: str, scaled_only: bool = False, of: Figure | None = None) -> Iterator[tuple[float, Figure]]:
        """``scaled_only``: a bare number of a passage whose headers give a scale counts at that scale only (an
        amount written "$81,797" is not the "81,797" of a table in millions); a table's cell always does. ``of``:
        the figure looked for, whose kind of measure picks the scales (``scales``)."""
        scales = self.scales(of)
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
                face = not (scaled_only or f.start in self.columns) or f.start in self.unscaled
                if f.scale_written or not self.context_scales or face:
                    yield f.value, f
                if not (f.scale_written or f.kind == "year" or f.start in self.unscaled):
                    for scale in scales:
                        yield f.raw * scale, f


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
        heads = [(year_of(f), day_of(f)) for f in line if f.kind in ("date", "year")]
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
LIST_JOIN = re.compile(r"\s*(?:,\s*(?:and\s+)?|and\s+)(?:Q[1-4]\s+)?", re.I)
_LIST_GAP = 16  # the most characters a join takes; longer gaps are not read
# A passage's sentence, for its lists and the spans shown: a PDF breaks prose over layout lines, so a line's end ends
# no sentence here (words.py's _SENTENCE_END, for answers, ends one at every line).
_PROSE_SENTENCE = re.compile(rf"(?<=[.;]){NOT_AN_END}\s+|\n\s*\n")
_SPAN_LINES = 2  # the most layout lines a prose sentence shown as a span reaches beyond its figure's, each way
_LATIN_WORD = re.compile(r"[A-Za-z]{3,}")


def span_of(text: str, start: int, end: int) -> str:
    """What a reader is shown as holding ``text[start:end]``: its table row, or in prose its sentence, which a PDF
    breaks over layout lines ("... was $2.8 billion and $2.7 billion as of" / "December 31, 2022 and June 30, 2023.")
    and may share one with another ("... convertible to equity. We have an agreement that"). A prose sentence reaches
    back over lines of prose only (not a heading) and _SPAN_LINES lines at most each way."""
    line = line_of(text, start, end)
    if not is_prose(line):
        return line
    starts = [0, *(m.end() for m in re.finditer("\n", text))]
    at = bisect_right(starts, start) - 1
    low = starts[at]
    for i in range(at - 1, max(at - 1 - _SPAN_LINES, -1), -1):
        if not is_prose(text[starts[i] : starts[i + 1]]):
            break
        low = starts[i]
    line_end = starts[at + 1] - 1 if at + 1 < len(starts) else len(text)
    high = starts[at + 1 + _SPAN_LINES] if at + 1 + _SPAN_LINES < len(starts) else len(text)
    before = [m.end() for m in _PROSE_SENTENCE.finditer(text, low, start)]
    after = _PROSE_SENTENCE.search(text, end, high)
    return " ".join(text[before[-1] if before else low : after.start() if after else max(line_end, end)].split())


def is_prose(line: str) -> bool:
    """Whether a layout line is running prose, by its words: a table's row or a heading has few."""
    return len(_LATIN_WORD.findall(line)) > _HEADER_WORDS


def _prose_pairs(text: str, found: Sequence[Figure]) -> dict[int, _Column]:
    """The year (and day) each value of a sentence's list of values is stated for, where the sentence lists as many
    periods: "was $2.8 billion and $2.7 billion as of December 31, 2022 and June 30, 2023", "... $453 million and $619
    million in Q1 2022 and Q1 2023", "increased 5% and 7% in 2023 and 2022, respectively". The n-th value is the
    n-th period's, as in a table's columns."""
    values = _lists(text, [f for f in found if f.kind not in ("date", "year")])
    heads = _lists(text, [f for f in found if f.kind in ("date", "year")])
    if not (values and heads):
        return {}
    bounds = [0, *(m.end() for m in _PROSE_SENTENCE.finditer(text)), len(text) + 1]
    by_sentence: dict[int, list[list[Figure]]] = {}
    for run in heads:
        by_sentence.setdefault(bisect_left(bounds, run[0].start + 1), []).append(run)
    pairs: dict[int, _Column] = {}
    for cells in values:
        for periods in by_sentence.get(bisect_left(bounds, cells[0].start + 1), []):
            if len(cells) == len(periods):
                pairs.update((f.start, (year_of(p), day_of(p))) for f, p in zip(cells, periods, strict=True))
    return pairs


def _lists(text: str, found: Sequence[Figure]) -> list[list[Figure]]:
    """Runs of two or more figures written as a list ("A, B and C")."""
    runs: list[list[Figure]] = []
    for f in found:
        after = runs[-1][-1].end if runs else 0
        if runs and f.start - after <= _LIST_GAP and LIST_JOIN.fullmatch(text, after, f.start):
            runs[-1].append(f)
        else:
            runs.append([f])
    return [run for run in runs if len(run) > 1]


def _prose_around(text: str, line: Sequence[Figure]) -> bool:
    """Whether the dates of a line stand in running prose ("... at any time. As of September 30, 2023,"), which heads
    no column, rather than in a table's header: more words besides months than a header's "(In Millions, Except Per
    Share Amounts; Unaudited)". The line holds no other figure, and a date's only word is its month."""
    words = WORD.findall(line_of(text, line[0].start, line[-1].end))
    return sum(1 for word in words if word.lower() not in MONTHS) > _HEADER_WORDS


def _scale_of(text: str, scale: re.Match) -> tuple[float, bool] | None:
    """A header's scale and whether it counts things apart from the amounts (``Passage.scales``); None for one given as
    an exception for anything else: "(In millions, except number of shares which are reflected in thousands)" counts
    shares in thousands and no amount; "(in millions, except remaining performance" / "obligation, which is presented
    in billions)", its parenthesis wrapped onto the next line, counts nothing in billions."""
    value = SCALES[(scale["scale"] or scale["han"]).lower()]
    start = scale.start()
    line = text.rfind("\n", 0, start) + 1
    opened = text.rfind("(", 0, start)
    if opened >= line or (opened >= 0 and ")" not in text[opened:start] and text.count("\n", opened, start) == 1):
        line = opened + 1
    _, excepted, exception = text[line:start].lower().partition("except")
    if not excepted:
        return value, bool(scale["counts"])
    return (value, True) if scale["counts"] or _NAMES_COUNTED.search(exception) else None


@lru_cache(maxsize=1024)
def read_passage(
    text: str,
) -> tuple[
    tuple[Figure, ...], tuple[tuple[float, bool], ...], frozenset[int], dict[int, _Column], _Lines, dict[int, str]
]:
    """A passage's figures, the scales its bare numbers may be counted in and those that are in none, its cells'
    column years, its lines that hold values and its change columns' periods; kept, since the same passages come back
    for question after question."""
    scales = tuple({scale for m in _CONTEXT_SCALE.finditer(text) if (scale := _scale_of(text, m))})
    found = tuple(figures(text, everything=True))
    ends = line_ends(text)
    on_line: dict[int, list[Figure]] = {}  # each line's values
    kinds_on: dict[int, set[str]] = {}  # each line's kinds of figure, dates too (shared_enough)
    for f in found:
        at = bisect_left(ends, f.start)
        kinds_on.setdefault(at, set()).add(_matched_as(f.kind))
        if f.kind != "date":
            on_line.setdefault(at, []).append(f)
    held = tuple((row_words(text, i), frozenset(kinds)) for i, kinds in sorted(kinds_on.items()))
    # A small whole number alone on its line is a page's number ("Notes to Financial Statements 11") or a count in
    # prose, not a table's cell: the table's scale does not make it "$11.0 million".
    unscaled = frozenset(line[0].start for line in on_line.values() if len(line) == 1 and _small_whole(line[0]))
    # A duration or a measure ("11.4 years", a lease's term; "300mm") is counted in its own unit, whatever the
    # table's amounts are in.
    unscaled |= {f.start for f in found if f.kind == "number" and _MEASURE.match(text, f.end)}
    unscaled |= {f.start for f in found if f.kind == "number" and _COUNTED.match(text, f.end)}
    unscaled |= _per_share(text, on_line)
    columns = _prose_pairs(text, found) | _column_years(text, found)
    return found, scales, unscaled, columns, held, _change_lengths(text, on_line)


# A quarterly filing's table gives each row's change over the quarter, then over the months to date: "Three Months
# Ended Six Months Ended" above "Total net sales $ 94,836 $ 97,278 (3)% $ 211,990 $ 221,223 (4)%".
_QUARTER_THEN_TO_DATE = re.compile(r"three\s+months\s+ended.*?\b(?:six|nine)\s+months\s+ended", re.I)


def _change_lengths(text: str, on_line: dict[int, list[Figure]]) -> dict[int, str]:
    """The period of each change column of a table that gives a quarter's change and then the months to date's: of
    a row's two percentages below such a header, the first is the quarter's ("quarter"), the second the months to
    date's ("to_date")."""
    header = _QUARTER_THEN_TO_DATE.search(text)
    if header is None:
        return {}
    below = bisect_left(line_ends(text), header.start())
    out: dict[int, str] = {}
    for i, line in on_line.items():
        changes = [f for f in line if f.kind == "percent"]
        if i > below and len(changes) == 2:
            out |= {changes[0].start: "quarter", changes[1].start: "to_date"}
    return out


def _per_share(text: str, on_line: dict[int, list[Figure]]) -> set[int]:
    """The starts of per-share amounts, which a statement's "(In millions, except per share amounts)" leaves at face
    value: those written in cents on a line, or under a heading ("Earnings per share:"), that says per share, or
    anywhere under a header that says so (a column's "Average Price" / "Paid Per" / "Share", rows below)."""
    if _EXCEPT_PER_SHARE.search(text):
        return {f.start for line in on_line.values() for f in line if _in_cents(f)}
    out: set[int] = set()
    for i, line in on_line.items():
        above = range(i - 1, max(i - _HEADING_LINES, 0) - 1, -1)
        heading = next((nth_line(text, j) for j in above if j not in on_line), "")
        if _PER_SHARE.search(nth_line(text, i)) or (_PER_SHARE.search(heading) and heading.rstrip().endswith(":")):
            out.update(f.start for f in line if _in_cents(f))
    return out


def _in_cents(figure: Figure) -> bool:
    """An amount or number written to the cent with no scale word ("1.26", "$ 184.34")."""
    return (
        figure.kind in ("amount", "number")
        and not figure.scale_written
        and re.search(r"\.\d\d$", figure.text.rstrip(")")) is not None
    )


def _small_whole(figure: Figure) -> bool:
    return figure.kind == "number" and figure.raw < SMALLEST_COUNT and re.fullmatch(r"\d+", figure.text) is not None


def _matched_as(kind: str) -> str:
    """The kind of passage figure a figure of ``kind`` is looked for among: a number may be an amount's value."""
    return "amount" if kind in ("number", "year") else kind


def passage_of(number: int, chunk: RetrievedChunk) -> Passage:
    return Passage(number, chunk, *read_passage(chunk.text))


def matches(passage: Passage, figure: Figure, about: set[str], shared: int = 1) -> Iterator[tuple[Figure, int]]:
    """The figures of ``passage`` that hold the value of ``figure``, on a line that shares ``shared`` words (at least
    one) with ``about`` (what the answer's sentence says the figure measures) unless ``about`` is empty; each with
    the count of words its line shares."""
    if figure.kind not in ("date", "year") and abs(figure.value) <= figure.tolerance:
        return  # "$0.0 billion": within its rounding of every small number
    kind = "amount" if figure.kind == "number" else figure.kind
    for value, there in passage.values(kind, figure.kind == "amount" and not figure.scale_written, figure):
        off = abs(abs(value) - abs(figure.value))
        same = off <= figure.tolerance + 1e-9 * abs(figure.value)
        if same and figure.kind == "date" and there.tolerance > figure.tolerance:
            continue  # "March 2023" is no source for "March 16, 2023"
        if not same and figure.kind == "number" and there.kind != "date":
            off = abs(there.raw - abs(figure.raw))
            same = off <= figure.tolerance  # "81,797" without its table's scale
        if not same or other_currency(figure, there):
            continue
        if not about:
            yield there, 0
            continue
        # A value that only rounds to the source's ("$1.3 billion" of "1,340") is weaker evidence than one written the
        # same: some line of a filing rounds to almost any figure of two digits, so its line must be more about the
        # sentence.
        rounded = figure.kind in ("amount", "number", "percent") and off > 1e-9 * max(1.0, abs(figure.value))
        need = max(1, shared + _ROUNDED_WORDS if rounded else shared)
        if (count := len(about & _words_around(passage.chunk.text, there, figure.kind == "year"))) >= need:
            yield there, count


def _words_around(text: str, there: Figure, year: bool) -> frozenset[str]:
    """What the line of a source's figure is about. A year is held to the words beside it in the answer, which a PDF
    may wrap onto the next line ("with our 2022 U.S." / "federal R&D credit"): its prose sentence is read, not its
    layout line. A table's row is read with a label the PDF wraps onto the line above ("Funds from Operations
    attributable to Boston Properties," / "Inc. (1) $ 823,715")."""
    if year:
        return frozenset(words_of(span_of(text, there.start, there.end)))
    return row_words(text, bisect_left(line_ends(text), there.start))


@lru_cache(maxsize=65536)
def row_words(text: str, i: int) -> frozenset[str]:
    """The words of a passage's ``i``-th line, with the label above it where it is a table's row (_row_label); kept, as
    every value looked up on it reads its line's."""
    return frozenset(words_of(nth_line(text, i)) | words_of(_row_label(text, i)))


def _row_label(text: str, i: int) -> str:
    """The line above a table's row where it holds the rest of its label: words and no digits, no prose. (A line of
    Chinese is a sentence, whatever its words: the one before is another.)"""
    line = nth_line(text, i)
    if i == 0 or is_prose(line) or has_han(line):
        return ""
    above = nth_line(text, i - 1)
    return above if above.strip() and not re.search(r"\d", above) and not (is_prose(above) or has_han(above)) else ""


# Where a clause ends within a line: a comma before a digit separates thousands; a stop ends a sentence.
_CLAUSE_MARK = re.compile(r"[，；：、]|[,;:](?!\d)|[.!?](?=\s)")


# What joins the two ends of a range: "from 2010 to 2014", "2022 and 2023", "1992年至1998年".
_RANGE_JOIN = re.compile(r"[年月日]?\s*(?:to|through|until|and|-|–|—|~|～|至|到)\s*", re.I)


def words_beside(text: str, dated: Sequence[Figure], i: int, low: int, high: int) -> set[str]:
    """The words beside ``dated[i]``, one of the dates and years of ``text[low:high]`` (a line, or an answer's
    sentence, in order): those of the clause it stands in, and of the clause after it where a comma ends its own at
    once ("2014年，吕志兴随和富大埔升上 ..."). A clause's words between two dates or years are one's, not both's: the
    earlier's in Chinese ("1988年初在香港播出"), the later's in English ("in 1998 and moved to Ohio in 2005"); those
    of a range are both its ends' ("From 2010 to 2014 the bridge was rebuilt")."""
    at = dated[i]
    first, last = i, i
    while first and _RANGE_JOIN.fullmatch(text, dated[first - 1].end, dated[first].start):
        first -= 1
    while last + 1 < len(dated) and _RANGE_JOIN.fullmatch(text, dated[last].end, dated[last + 1].start):
        last += 1
    prev, after = (dated[first - 1] if first else None), (dated[last + 1] if last + 1 < len(dated) else None)
    start, end = prev.end if prev else low, after.start if after else high
    marks = [m.start() for m in _CLAUSE_MARK.finditer(text, start, end)]
    before = [m for m in marks if m < at.start]
    left = before[-1] + 1 if before else start
    if prev and not before and has_han(text[left : at.start]):
        left = at.start
    ends = [m for m in marks if m >= at.end]
    if ends and not WORD.search(text, at.end, ends[0]) and text[ends[0]] not in ".!?":
        ends = ends[1:]  # a clause of the year alone ("2014年，") takes the next one's words, not the next sentence's
    right = ends[0] if ends else end
    if after and not ends and not has_han(text[at.end : right]):
        right = at.end
    return words_of(text[left : at.start]) | words_of(text[at.end : right])


@lru_cache(maxsize=1024)
def dated_words(text: str, low: int, high: int) -> tuple[tuple[Figure, frozenset[str]], ...]:
    """Each date or year of the line ``text[low:high]`` of a passage, with the words beside it; kept, as every date or
    year looked up on the line compares them all."""
    dated = [f for f in read_passage(text)[0] if f.kind in ("date", "year") and low <= f.start < high]
    return tuple((f, frozenset(words_beside(text, dated, i, low, high))) for i, f in enumerate(dated))


def beside_count(passage: Passage, there: Figure, beside: set[str]) -> int | None:
    """How many words of ``beside`` (those beside a date or year in the answer) stand beside ``there`` on its line, or
    None where another date or year of the line stands beside more, or where words stand beside it and none of them
    is one of those: the line "2013年与一班大埔兄弟 ... 2014年，吕志兴随和富大埔升上" holds the answer's
    "2013年，吕志兴随和富大埔升上" on its 2014, not its 2013; "Towards the end of the decade ... relative to 2025
    levels" holds no "by the end of 2025". A year with no word of its own beside it ("from 91.3% at September 30,
    2015 to 91.4% at December 31, 2015") is judged by its rivals alone."""
    line = dated_words(passage.chunk.text, *line_bounds(passage.chunk.text, there.start, there.start))
    own = [words for f, words in line if f.start == there.start]
    count = max((len(beside & words) for words in own), default=0)
    if not count and any(own):
        return None
    rivals = (len(beside & words) for f, words in line if year_of(f) != year_of(there))
    return None if max(rivals, default=0) > count else count


def shared_enough(passages: Sequence[Passage], figure: Figure, about: set[str]) -> int:
    """How many words of ``about`` the line holding a value must share: no more than _WORDS_SHORT_OF_BEST fewer than
    the line of the sources that shares most with it, or half as many where that line shares more (a Chinese
    sentence's pairs of characters count many more than an English line's words). A value on a line much less about
    the sentence than another is most often some other line's figure that happens to round the same; a year on a line
    of another article that shares a word or two with its sentence ("始建于") is most often that article's year, and
    a month written without its day ("no earlier than March 2025") on a line about something else is most often some
    other event's month ("scheduled trial for March 2024"). A day is left to any line about its sentence: a sentence
    of two days ("the first closing on December 29, 2021, and the second no earlier than March 2025") is about both,
    and one day's line may share a word with it where the other's shares five."""
    month = figure.kind == "date" and day_of(figure) is None
    if not (figure.kind in ("amount", "number", "percent", "year") or month) or not about:
        return 1
    kind = _matched_as(figure.kind)
    best = max((p.closest(about, kind) for p in passages), default=0)
    return best - max(_WORDS_SHORT_OF_BEST, best // 2)


def common_words(passages: Sequence[Passage]) -> set[str]:
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
        return set().union(*(words_of(name) for name in names))
    if len(passages) < 3 or any(p.chunk.metadata for p in passages):
        return set()
    counts = Counter(word for p in passages for word in passage_words(p.chunk.text))
    return {word for word, n in counts.items() if n * 2 > len(passages)}
