"""A figure looked up in the sources, and one supported as the change between two others."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from itertools import permutations

from rag.figures.passages import Passage, beside_count, is_prose, matches, shared_enough, span_of
from rag.figures.periods import DAYS_OFF
from rag.figures.reading import Figure
from rag.figures.report import FigureCheck
from rag.figures.words import line_ends, nth_line


def change_between(figure: Figure, others: Sequence[Figure], share: bool = False) -> list[str]:
    """Two other figures of the answer that ``figure`` is the change between, if any; or, where its sentence says
    it computes a share (``share``: "net income $55,256 million over total assets $338,516 million"), the first's
    share of the second."""
    amounts = [o for o in others if o.kind in ("amount", "number") and o is not figure]
    for a, b in permutations(amounts, 2):
        if min(abs(a.value), abs(b.value)) <= figure.tolerance:
            continue  # "$496 million" is not the change from 190 to $496 million
        if figure.kind == "percent":
            if a.value and abs(abs((b.value - a.value) / a.value * 100) - figure.value) <= figure.tolerance:
                return [a.text, b.text]
            if share and abs(abs(a.value / b.value * 100) - figure.value) <= figure.tolerance:
                return [a.text, b.text]
        elif abs(abs(b.value - a.value) - abs(figure.value)) <= figure.tolerance and figure.value:
            return [a.text, b.text]
    return []


def total_of(figure: Figure, before: Sequence[Figure]) -> list[str]:
    """The last two or more amounts of ``before`` (the answer's supported figures ahead of ``figure``, in order) that
    ``figure`` is the sum of, if any: "- DCAI: $3.814 billion ... - IFS: $0.311 billion" then "The total ... was
    $6.105 billion", each written as precisely as the total. Only the figures just before it are summed, nearest
    first, and the sum grows with each, so one run at most can match: any run of a long answer's figures would sum to
    almost anything."""
    if figure.kind not in ("amount", "number") or not figure.value:
        return []
    run: list[Figure] = []
    total = 0.0
    for other in reversed(before):
        if other.kind not in ("amount", "number"):
            continue  # the periods and percentages written beside the amounts listed
        if other.currency != figure.currency or other.tolerance < figure.tolerance:
            break  # a total written coarser than its parts ("$1.6 billion" of "$353 million" ...) rounds too easily
        run.insert(0, other)
        total += abs(other.value)
        if len(run) > 1 and abs(total - abs(figure.value)) <= figure.tolerance:
            return [o.text for o in run]
        if total > abs(figure.value) + figure.tolerance:
            break
    return []


@dataclass
class Seen:
    """What a sentence's figures were found in so far."""

    columns: set[int] = field(default_factory=set)  # the years heading the columns its values were found in
    # The sources' dates and years (passage, start) its dates and years stand on: each stands on one of its own,
    # "2009年到2009年" is not the sources' "2009年到2010年".
    taken: set[tuple[int, int]] = field(default_factory=set)
    # The year heading the column each of its values was found in (None: not in a column), by the value's offset.
    column_of: dict[int, int | None] = field(default_factory=dict)
    # The source and line each of its values was found on, by the value's offset.
    row_of: dict[int, tuple[Passage, int]] = field(default_factory=dict)


def look_up(
    check: FigureCheck,
    figure: Figure,
    about: set[str],
    passages: Sequence[Passage],
    first: set[str],
    named: set[int],
    days: set[date],
    cited: Sequence[int],
    seen: Seen,
    beside: set[str],
    length: str | None = None,
) -> bool:
    """Whether a source holds ``figure`` on a line about ``about``, in a column of a year ``named`` (if any) and,
    where a date heads the column, of a day in ``days`` (if any); the first that does supports ``check``, and
    ``seen`` (its sentence's) gains what it was found in. Sought in the files ``first`` (the documents of the
    periods its sentence names), then in the rest, the sources the answer cites first in each; a value on the line
    most about its sentence first, so that the line shown is that one, not one that only happens to hold it too.
    ``beside``: the words beside a date or year in the answer (if any): it stands only on an occurrence they may
    stand beside (beside_count), the one beside most first. ``length``: "quarter" or "to_date" where
    its sentence names the one and not the other: a percentage stands only in a change column of that period, if any."""
    shared = shared_enough(passages, figure, about)
    value = figure.kind in ("amount", "number", "percent")
    found = [(p, there, count) for p in passages for there, count in matches(p, figure, about, shared)]
    if beside and not value:
        counted = [(p, there, beside_count(p, there, beside)) for p, there, _ in found]
        found = [(p, there, count) for p, there, count in counted if count is not None]
    found.sort(
        key=lambda match: (
            match[0].chunk.file not in first,
            match[0].number not in cited,
            -match[2] if value or beside else 0,
        ),
    )
    for passage, there, _ in found:
        column = passage.columns.get(there.start)
        if figure.kind == "percent" and length and passage.changes.get(there.start, length) != length:
            continue  # the second quarter's "(3)%", not the six months' "(4)%" on its row
        if figure.kind in ("date", "year"):
            if (passage.number, there.start) in seen.taken:
                continue
            seen.taken.add((passage.number, there.start))
        elif column is not None:
            year, day = column
            seen.columns.add(year)
            if named and year not in named:
                continue
            if day and days and not any(abs((day - said).days) <= DAYS_OFF for said in days):
                continue  # the column of December 31, 2022 is not the quarter ended June 25, 2022
        _support(check, passage, there, cited)
        seen.column_of[check.start] = column[0] if column else None
        seen.row_of[check.start] = (passage, bisect_left(line_ends(passage.chunk.text), there.start))
        return True
    return False


def on_the_row(check: FigureCheck, figure: Figure, row: tuple[Passage, int], cited: Sequence[int]) -> bool | None:
    """Whether the row an amount was found on holds ``figure``, a percentage the answer writes beside it ("$4,520
    million, up 5%"), and if so ``check`` stands on it; None where the row holds no percentage or is prose, as a
    table's row states its amount's change beside it where it states one."""
    passage, line = row
    if is_prose(nth_line(passage.chunk.text, line)):
        return None  # a line of prose runs on into other sentences' percentages
    ends = line_ends(passage.chunk.text)
    there = [f for f in passage.figures if f.kind == "percent" and bisect_left(ends, f.start) == line]
    if not there:
        return None
    held = next((f for f in there if abs(abs(f.value) - figure.value) <= figure.tolerance), None)
    if held is not None:
        _support(check, passage, held, cited)
    return held is not None


def _support(check: FigureCheck, passage: Passage, there: Figure, cited: Sequence[int]) -> None:
    check.status, check.source, check.cited = "supported", passage.number, passage.number in cited
    check.file, check.page = passage.chunk.file, passage.chunk.page
    check.span = span_of(passage.chunk.text, there.start, there.end)
