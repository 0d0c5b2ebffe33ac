"""The rules for the periods an answer names: each must be one a source reports on, as the period of its sentence's
figures, or the one its sentence compares with."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.figures.lookup import Seen
from rag.figures.passages import Passage
from rag.figures.periods import Named, Period, ahead, earlier_in_year, quarter_of, reports, year_before
from rag.figures.reading import Figure
from rag.figures.report import FigureCheck, supported_values
from rag.figures.words import words_of


def check_periods(
    checks: Sequence[FigureCheck],
    sentences: Sequence[tuple[int, int]],
    named: Sequence[tuple[Named, bool] | None],
    periods: Sequence[tuple[Passage, Period]],
    cited: Sequence[int],
    against_columns: set[int],
    seen: dict[tuple[int, int], Seen],
    reporting: Sequence[dict[str, int | None]],
    clauses: Sequence[tuple[int, int]],
    latest: dict[tuple[int, int], list[Named]],
) -> None:
    """A period the answer names ("Q3 2023", "the quarter ended July 1, 2023") must be one a source's document reports
    on, as its own or as the one a sentence compares with, or a quarter its outlook speaks of: every filing prints
    last year's figures beside its own, so the year alone is on its pages either way. A quarter that is a document's
    own is supported by its metadata whether or not the passage prints it (a statement's page dates its columns
    "October 30, 2022", not "fiscal 2023"), unless the sentence's values stand in the tables under other years
    (``against_columns``: those figures' indices). ``latest``: the sources' latest period, for each sentence that
    names it as "the most recent quarter"."""
    # The sources' own periods each sentence named, in order, and the checks that named them: the same periods a
    # year before, named later, compare with them.
    naming_own: dict[tuple[int, int], dict[Named, list[FigureCheck]]] = {}
    for i, (check, sentence, period_named) in enumerate(zip(checks, sentences, named, strict=True)):
        if period_named is None or check.status == "cut_off":
            continue
        said, compared = period_named
        reported = [(p, period) for p, period in periods if reports(period, said, False)]
        beside = ""
        # A source's own quarter needs no line: its metadata is the source. A date, or the year-ago period, must also
        # be printed (dates "as of" allow days the document does not report on).
        by_metadata = bool(reported) and quarter_of(said) is not None and i not in against_columns
        # reporting[i]: the files of a period named as a source's own and not compared against (files_reporting).
        if reporting[i] and _values_elsewhere(checks, clauses[i], sentence, reporting[i], seen[sentence]):
            # "In Q3 2022, revenue was $81.8 billion": a source's quarter, but not of that figure.
            check.withdraw("other_period")
            continue
        if compared and said in naming_own.get(sentence, {}):
            # "For the third quarter of 2022, ... compared to the same quarter in 2022": one of them is wrong.
            for c in (check, *naming_own[sentence][said]):
                c.withdraw("compared_with_itself")
            continue
        if reported:
            naming_own.setdefault(sentence, {}).setdefault(said, []).append(check)
            # A fiscal quarter is named by its own filing where one is a source, else by a later one's year to date.
            own = [(p, period) for p, period in reported if not earlier_in_year(said, period)]
            reported, beside = (own, "") if own else (reported, ", in its year to date")
        # A period compared against is the year before the sources' own period the sentence named before it, or the
        # latest where it says "the most recent quarter" instead: "the third quarter of 2023 ... compared to the
        # same quarter in 2022", not "... in 2021".
        elif any(year_before(said, then) for then in naming_own.get(sentence, {})) or (
            compared
            and (
                not (reference := list(naming_own.get(sentence, {})) or latest.get(sentence))
                or any(year_before(said, then) for then in reference)
            )
        ):
            reported = [(p, period) for p, period in periods if reports(period, said, True)]
            beside = ", beside the same period a year before"
            if not compared and _stated_for_another_year(
                check, _clause_values(checks, clauses[i], sentence), seen[sentence]
            ):
                check.withdraw("other_period")
                continue
        if reported and (check.status == "supported" or by_metadata):
            # Shown as the period of the document that holds its sentence's figures, where one reports on it: "As of
            # September 30, 2023, Amazon had $972 million ..." is Amazon's quarter, not another company's.
            holding = {c.file for c in supported_values(checks, sentence)}
            passage, period = min(reported, key=lambda source: source[0].chunk.file not in holding)
            check.status, check.source, check.cited = "supported", passage.number, passage.number in cited
            check.file, check.page, check.span = passage.chunk.file, passage.chunk.page, period.label + beside
            check.held_by = "period"
            continue
        if not (reported or ahead(said, periods)):
            check.withdraw("not_a_source_period")


_FROM_OR_TO = re.compile(r"\b(?:from|to)\b", re.I)


def run_to_itself(
    answer: str,
    found: Sequence[Figure],
    named: Sequence[tuple[Named, bool] | None],
    sentences: Sequence[tuple[int, int]],
) -> set[int]:
    """The figures that name a period a sentence runs from and the same period it runs to: "changed from $6,532
    million for the twelve months ended September 30, 2022, to $(9,133) million for the twelve months ended
    September 30, 2022" compares a period with itself, as "compared to the same quarter" does where it names the
    sentence's own (check_periods)."""
    out: set[int] = set()
    for j, (figure, sentence) in enumerate(zip(found, sentences, strict=True)):
        for i in range(j):
            if sentences[i] != sentence or named[i] is None or named[i] != named[j] or any(named[i + 1 : j]):
                continue
            # The one runs from the first ("from" is the last of the two words before it) to the second ("to",
            # with no "from" and no other period, between them): a list of ranges names each period once in each.
            before = [m[0].lower() for m in _FROM_OR_TO.finditer(answer, sentence[0], found[i].start)]
            between = [m[0].lower() for m in _FROM_OR_TO.finditer(answer, found[i].end, figure.start)]
            if before[-1:] == ["from"] and "to" in between and "from" not in between:
                out |= {i, j}
    return out


def _values_elsewhere(
    checks: Sequence[FigureCheck],
    clause: tuple[int, int],
    sentence: tuple[int, int],
    files: dict[str, int | None],
    seen: Seen,
) -> bool:
    """Whether the sentence's values were found (on a line) and none of them in ``files`` (files_reporting): a
    question about four quarters has all four filings as sources, and a period it names must be the period of its
    figures' filing, or of one that prints them in that period's column beside its own, not any source's."""
    values = _clause_values(checks, clause, sentence)
    return bool(values) and not any(
        c.file is not None and c.file in files and files[c.file] in (None, seen.column_of.get(c.start)) for c in values
    )


def _stated_for_another_year(period: FigureCheck, values: Sequence[FigureCheck], seen: Seen) -> bool:
    """Whether the values of a period named as their own, which the sources report only as the year before one of
    theirs, all stand on lines of prose that do not name its year: "In the Q1 2023 10-Q, Intel reported that in the
    first quarter of 2022, it issued $11.0 billion of senior notes", whose line says "In the first quarter of 2023, we
    issued ...". A table's cells are the columns' rule's (check.py), which knows the years a fiscal period's columns
    are headed by."""
    year = re.search(r"\d{4}", period.text)
    return (
        year is not None
        and bool(values)
        and not any(seen.column_of.get(c.start) is not None or year[0] in (c.span or "") for c in values)
    )


def _clause_values(
    checks: Sequence[FigureCheck], clause: tuple[int, int], sentence: tuple[int, int]
) -> list[FigureCheck]:
    """The values of a period's ``clause`` where it has any ("$1,945 million in fiscal Q3 2023, and $2,294 million in
    fiscal Q3 2024"), else of its whole sentence."""
    return supported_values(checks, clause) or supported_values(checks, sentence)


_CLAUSE_END = re.compile(r"[,;:()\n]")
_CLAUSE_BREAK = re.compile(r"[;:()\n]|,(?!\d)")  # the same, but a comma before a digit separates thousands


def clause_bounds(answer: str, figure: Figure, sentence: tuple[int, int]) -> tuple[int, int]:
    """Where the clause that holds ``figure`` starts and ends in the answer, within its sentence."""
    before = list(_CLAUSE_BREAK.finditer(answer, sentence[0], figure.start))
    after = _CLAUSE_BREAK.search(answer, figure.end, sentence[1])
    return before[-1].end() if before else sentence[0], after.start() if after else sentence[1]


def between_periods(
    found: Sequence[Figure], named: Sequence[tuple[Named, bool] | None], clauses: Sequence[tuple[int, int]]
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


def year_phrase(answer: str, figure: Figure, sentence: tuple[int, int]) -> set[str]:
    """The words beside a year in its clause, two on each side ("since the 2022 Form 10-K": "since", "form"): a year
    that names no period is the year of those words. Chosen on SEC dev: one on each side caught less, three lost a
    gold figure."""
    before = _CLAUSE_END.split(answer[sentence[0] : figure.start])[-1].split()[-2:]
    after = _CLAUSE_END.split(answer[figure.end : sentence[1]])[0].split()[:2]
    return words_of(" ".join(before + after))
