"""The check itself: every figure of an answer looked for in the passages it was given."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from rag.figures.lookup import Seen, change_between, look_up, on_the_row, total_of
from rag.figures.passages import (
    Passage,
    common_words,
    dated_words,
    passage_of,
    read_passage,
    row_words,
    words_beside,
)
from rag.figures.period_checks import between_periods, check_periods, clause_bounds, run_to_itself, year_phrase
from rag.figures.periods import (
    FISCAL,
    LATEST,
    ends_of_quarter,
    files_reporting,
    latest_named,
    mention_around,
    named_period,
    out_of_order,
    period_of,
    read_period,
)
from rag.figures.reading import Figure, day_of, figures, file_names, without_file_names, year_of
from rag.figures.report import FigureCheck, FigureReport, supported_values
from rag.figures.words import about_words, line_ends, passage_words, sentence_before, sentence_bounds, sentence_of
from rag.questions.periods import quarter_mentions
from rag.types import RetrievedChunk


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
    passages = [passage_of(i, c) for i, c in enumerate(chunks, start=1)]
    order = [p for p in passages if p.number in cited] + [p for p in passages if p.number not in cited]
    common = common_words(passages)
    found = figures(answer)
    tail = answer.rstrip(" \t\n,.;:-")
    sentences = [sentence_bounds(answer, f.start, f.end) for f in found]
    years: dict[tuple[int, int], set[int]] = {}
    dated: dict[tuple[int, int], list[Figure]] = {}  # each sentence's dates and years, in order
    days: dict[tuple[int, int], set[date]] = {}  # the days each sentence names: they bind values to dated columns
    for figure, sentence in zip(found, sentences, strict=True):
        if figure.kind in ("date", "year"):
            years.setdefault(sentence, set()).add(year_of(figure))
            dated.setdefault(sentence, []).append(figure)
        if (day := day_of(figure)) is not None:
            days.setdefault(sentence, set()).add(day)
    periods = [(p, period) for p in order if (period := period_of(p.chunk))]
    # A quarter named that is a source's own heads its columns with the year its period ends in: Apple's fiscal Q1
    # 2023 is the column "December 31, 2022".
    mentions = quarter_mentions(without_file_names(answer))
    named_periods = [named_period(answer, f, s[0], mentions) for f, s in zip(found, sentences, strict=True)]
    ends = [ends_of_quarter(f, mentions, periods) for f in found]
    for figure_ends, sentence in zip(ends, sentences, strict=True):
        years.setdefault(sentence, set()).update(figure_ends)
    # What each sentence's figures measure: its words, or, for a figure alone before a colon ("About 6.8%: ..."), the
    # words after it; less the sources' company names, which say nothing about which line is meant.
    asked = about_words(question) - common if question else set()
    opening = about_words(sentence_of(answer, 0, 1)) - common
    introduced = {s: _colon_after(answer, s) for s in set(sentences)}
    abouts = {s: _measured(answer, s, introduced[s]) - common for s in set(sentences)}
    alone = not any(abouts.values())
    if alone:  # an answer that is its figure alone ("2007年") measures what the question asks
        abouts = dict.fromkeys(abouts, asked)
    # A sentence may leave what its figure measures to the one before ("they were $631 million"), to the question
    # ("the spending was $6,984 million", asked about R&D) or to the answer's opening sentence, which names what a
    # list of figures below it measures ("R&D expenditure, categorized under "Technology and infrastructure" ...",
    # then "- For the quarter ended June 30, 2023, the R&D expenditure was $21,931 million."). Those words are tried
    # only where its own find no line: added always, they raise the bar of the closest line (shared_enough) and lost
    # more gold figures than they found on SEC dev.
    previous = {s: sentence_before(answer, s) for s in set(sentences)}
    before = {s: about_words(answer[slice(*previous[s])]) - common for s in previous}
    seen = {sentence: Seen() for sentence in set(sentences)}
    lengths = {s: _length_named(answer[slice(*s)]) for s in set(sentences)}  # its changes' period, where it names one
    # A sentence's values are sought first in the documents of the periods it names, so that a figure of one
    # quarter is found in that quarter's filing rather than beside it in a later one (period_checks).
    reporting = [files_reporting(p[0], periods) if p is not None and not p[1] else {} for p in named_periods]
    own_files: dict[tuple[int, int], set[str]] = {}
    for sentence, files in zip(sentences, reporting, strict=True):
        if files:
            own_files.setdefault(sentence, set()).update(f for f, year_ago in files.items() if year_ago is None)
    against_columns: set[int] = set()  # years and dates withdrawn for them
    clauses = [clause_bounds(answer, f, s) for f, s in zip(found, sentences, strict=True)]
    clauses = between_periods(found, named_periods, clauses)
    checks = [FigureCheck(f.text, f.kind, f.start, f.end, "unsupported") for f in found]
    # Values first: a year's check reads the columns they were found in.
    for i in sorted(range(len(found)), key=lambda i: found[i].kind in ("date", "year")):
        figure, check, sentence = found[i], checks[i], sentences[i]
        if finish_reason == "length" and figure.end >= len(tail):
            check.status = "cut_off"
            continue
        about = abouts[sentence]
        if figure.kind == "year" and periods:
            # The sources' periods decide what a year names (check_periods), wherever it stands; one that names no
            # period stands beside the words it stands beside in the answer, where there are any: a filing prints
            # its years in every column.
            about = year_phrase(answer, figure, sentence) if named_periods[i] is None else set()
        if figure.kind == "date" and named_periods[i] is not None:
            about = set()  # a period's end or a balance's date: the periods' rules decide, or it may stand anywhere
        named = years.get(sentence, set())
        if figure.kind in ("amount", "number", "percent") and _years_only_after(dated.get(sentence, []), clauses[i]):
            # "$1,054 million of income (against a $726 million expense in 2022)": the year is the later clause's.
            named = set()
        if FISCAL.search(answer[slice(*sentence)]):
            # A fiscal year is named by the calendar year it ends in, its quarters' columns by their own.
            named = named | {year - 1 for year in named}
        contexts = [about]
        if about and figure.kind in ("amount", "number", "percent"):
            contexts += [about | words for words in (before[sentence], asked, opening) if words - about]
        own = own_files.get(sentence, set())
        beside: set[str] = set()
        searched = passages
        if figure.kind in ("date", "year") and not periods and about:
            if headed := _headed_by(figure, checks, sentence, seen[sentence]):
                # The year heading the column its sentence's values stand in is theirs, whatever its header's words.
                searched, contexts = [p for p in passages if p.number in headed], [set()]
            else:
                # A sentence of prose names many years, each the year of its own clause ("2013年与一班大埔兄弟 ...，
                # 2014年，吕志兴随 ..."): the one an answer's stands on is the one its own clause's words stand beside.
                # (Where the sources have periods, a year that names none is held by year_phrase.)
                beside = asked if alone else _words_beside(answer, figure, dated[sentence], sentence) - common
        for words in contexts:
            if look_up(
                check,
                figure,
                words,
                searched,
                own,
                named,
                days.get(sentence, set()),
                cited,
                seen[sentence],
                beside,
                lengths[sentence],
            ):
                break
        held = seen[sentence].columns
        if (
            figure.kind in ("date", "year")
            and held
            and year_of(figure) not in held
            and not ends[i] & held
            and not _stated_in_prose(checks, clauses[i], seen[sentence])
        ):
            check.withdraw("other_period")
            against_columns.add(i)
    for i, figure in enumerate(found):
        if (
            day_of(figure)
            and checks[i].status == "supported"
            and _told_other_days(figure, supported_values(checks, clauses[i]), seen[sentences[i]])
        ):
            checks[i].withdraw("other_period")
    for i, figure in enumerate(found):
        # A percentage written beside an amount ("$4,520 million, up 5%") is the change its table's row states
        # beside it, where the row states one: another row's percentage that happens to be the same is not it.
        if figure.kind != "percent" or checks[i].status != "supported":
            continue
        row = _row_beside(found, i, sentences[i], seen[sentences[i]])
        if row and on_the_row(checks[i], figure, row, cited) is False:
            checks[i].withdraw("other_row")
    if periods:
        names = latest_named(periods)
        latest = {s: names for s in set(sentences) if LATEST.search(answer[slice(*s)])}
        check_periods(
            checks, sentences, named_periods, periods, cited, against_columns, seen, reporting, clauses, latest
        )
    for i in run_to_itself(answer, found, named_periods, sentences):
        if checks[i].status != "cut_off":
            checks[i].withdraw("compared_with_itself")
    told_later = out_of_order(answer, mentions)
    for figure, check in zip(found, checks, strict=True):
        if check.status != "cut_off" and (around := mention_around(figure, mentions)) and around[0] in told_later:
            check.withdraw("out_of_order")
    for figure, check, sentence in zip(found, checks, sentences, strict=True):
        if check.status == "unsupported" and figure.kind in ("amount", "number", "percent"):
            # A change the answer computes is written beside its operands: in its sentence or the one before
            # ("= ($143,083 million - $75,022 million) ... = $68,061 million"), or after the colon that ends its own
            # ("About 16.3%: net income ... over ..."), not anywhere in a long answer, where some two figures' change
            # rounds to almost any percentage.
            near = {sentence, previous[sentence]}
            if (after := introduced[sentence]) is not None:
                near.add(after)
            supported = [
                f for f, c, s in zip(found, checks, sentences, strict=True) if c.status == "supported" and s in near
            ]
            share = any(_SHARE.search(answer[slice(*s)]) for s in near)
            check.derived_from = change_between(figure, supported, share)
            if not check.derived_from and _TOTAL.search(answer[slice(*sentence)]):
                listed = zip(found, checks, strict=True)
                ahead = [f for f, c in listed if c.status == "supported" and f.end <= sentence[0]]
                check.derived_from = total_of(figure, ahead)
            if check.derived_from:
                check.status = "supported"
    for check in checks:
        check.why = (check.why or "not_found") if check.status == "unsupported" else None
    unknown = sorted({int(n) for n in re.findall(r"\[(\d+)\]", answer) if not 1 <= int(n) <= len(chunks)})
    return FigureReport(checks, unknown)


# Words by which an answer says an amount is the sum of those it listed before it.
_TOTAL = re.compile(
    r"\b(?:total(?:s|ed|led|ing)?|combined|sum|together|altogether|in\s+all|aggregate)\b|合计|总计|共计"
)

# Words by which an answer says a percentage is one figure's share of another: some two figures' ratio rounds to
# almost any percentage, so a share is computed only where the answer says it computed one.
_SHARE = re.compile(
    r"\b(?:over|divided\s+by|as\s+a\s+(?:share|percentage|percent|proportion|fraction)\s+of|share\s+of|ratio|"
    r"margin|against|accounts?\s+for|accounted\s+for|represent(?:s|ed|ing)?)\b|%\s+of\b|[/÷]|占"
)


def _stated_in_prose(checks: Sequence[FigureCheck], clause: tuple[int, int], seen: Seen) -> bool:
    """Whether a period's own clause states a value the sources hold in prose: the columns its sentence's other values
    stand in do not judge it ("revenue was $11.7 billion in Q1 2023, compared to $18.4 billion in Q1 2022": only the
    year-ago value was found in a table)."""
    return any(c.start in seen.column_of and seen.column_of[c.start] is None for c in supported_values(checks, clause))


def _years_only_after(dated: Sequence[Figure], clause: tuple[int, int]) -> bool:
    """Whether every date and year of a value's sentence (``dated``) stands after the value's clause, which names
    none."""
    return bool(dated) and all(f.start >= clause[1] for f in dated)


def _told_other_days(date: Figure, values: Sequence[FigureCheck], seen: Seen) -> bool:
    """Whether the values of a day's clause were all found in sentences of prose that name days, none of them
    ``date``'s: "from 91.3% at September 30, 2015 to 91.4% at December 31, 2015" holds no 91.4% of December 31, 2014.
    (A year alone is looser: a clause's values and its year may be two sentences' of a source.)"""
    told: list[set[float]] = []
    for value in values:
        if value.derived_from or seen.column_of.get(value.start) is not None or value.span is None:
            return False
        days = {f.value for f in figures(value.span) if day_of(f)}
        if not days:
            return False
        told.append(days)
    return bool(told) and all(date.value not in days for days in told)


_TO_DATE = re.compile(
    r"\b(?:six|nine)[-\s]months?\b|\bfirst\s+(?:half|six|nine)\b|\byear[-\s]to[-\s]date\b|\bYTD\b|\b[12]H\b|\bH[12]\b",
    re.I,
)
_QUARTER = re.compile(r"\bquarter\b|\bthree[-\s]months?\b|\bQ[1-4]\b", re.I)


def _length_named(sentence: str) -> str | None:
    """ "quarter" or "to_date" where a sentence names a quarter and no months to date ("the first six months"), or the
    months to date and no quarter; else None."""
    to_date, quarter = _TO_DATE.search(sentence) is not None, _QUARTER.search(sentence) is not None
    if to_date == quarter:
        return None
    return "to_date" if to_date else "quarter"


def _colon_after(answer: str, sentence: tuple[int, int]) -> tuple[int, int] | None:
    """The sentence that a colon ending ``sentence`` introduces ("About 16.3%: net income ... over ..."), if any."""
    if not answer[: sentence[1]].rstrip().endswith(":") or sentence[1] >= len(answer):
        return None
    return sentence_bounds(answer, sentence[1], sentence[1] + 1)


def _measured(answer: str, sentence: tuple[int, int], introduced: tuple[int, int] | None) -> set[str]:
    """What a sentence says its figures measure: its words or, for a figure alone before a colon, those of the
    sentence the colon introduces."""
    words = about_words(answer[slice(*sentence)])
    return words if words or introduced is None else about_words(answer[slice(*introduced)])


def _row_beside(found: Sequence[Figure], i: int, sentence: tuple[int, int], seen: Seen) -> tuple[Passage, int] | None:
    """The row the amount nearest ``found[i]`` (a percentage) in its sentence was found on, if it was."""
    near = [
        f
        for f in found
        if f.kind in ("amount", "number") and sentence[0] <= f.start < sentence[1] and f.start in seen.row_of
    ]
    if not near:
        return None
    return seen.row_of[min(near, key=lambda f: abs(f.start - found[i].start)).start]


def _headed_by(figure: Figure, checks: Sequence[FigureCheck], sentence: tuple[int, int], seen: Seen) -> set[int]:
    """The sources whose table columns headed by ``figure``'s year hold a value of its sentence."""
    year = year_of(figure)
    return {
        c.source
        for c in checks
        if c.source is not None and sentence[0] <= c.start < sentence[1] and seen.column_of.get(c.start) == year
    }


def _words_beside(answer: str, figure: Figure, dated: Sequence[Figure], sentence: tuple[int, int]) -> set[str]:
    """The words beside a date or year in the answer's sentence, whose dates and years are ``dated`` (words_beside)."""
    return words_beside(answer, dated, dated.index(figure), *sentence)


def clear_caches() -> None:
    """Forget every passage and document read so far: the check keeps them (lru caches), since the same passages come
    back for question after question; a cost benchmark empties them to time an answer that meets its passages first."""
    for cache in (read_passage, dated_words, passage_words, read_period, line_ends, row_words, file_names):
        cache.cache_clear()
