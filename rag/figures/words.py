"""What a stretch of text is about (its words), and where its sentences and lines end."""

from __future__ import annotations

import re
from bisect import bisect_left
from functools import lru_cache

from rag.figures.reading import MONTHS, SCALES

WORD = re.compile(r"[A-Za-z]{3,}|[\u4e00-\u9fff]{2,}")
# A stop after these ends no sentence: "Apple Inc. reported", "the U.S. federal R&D credit".
NOT_AN_END = "".join(rf"(?<!\b{re.escape(a)})" for a in ("Inc.", "Co.", "No.", "U.S."))
# A Chinese sentence's end takes no space after it: without splitting there, an answer of ten sentences about ten years
# is one sentence, whose words are about all of them.
_SENTENCE_END = re.compile(rf"(?<=[.!?;:]){NOT_AN_END}\s+|(?<=[。！？；：])\s*|\n")
# A line of Chinese prose is a whole paragraph, hundreds of characters about many things: its sentences are the lines
# a value stands on. (A line of a filing is a line of its layout, shorter than most sentences.)
_LINE_ENDS = "\n。！？；"
LINE_END = re.compile(f"[{_LINE_ENDS}]")
# Words that say nothing about what a figure measures.
_FILLER = (
    "the and for was were are has had have with from that this its their which than over into per of in on to by "
    "as at about approximately total compared same period quarter quarters year years ended ending months three "
    "six nine fiscal during while also based reported amount amounts respectively increase increased decrease "
    "decreased change changed these those what how might could would should there them they been being such can "
    "will who whom whose when where why other"
)
_PLAIN_WORDS = {
    *MONTHS,
    *(w for w in SCALES if w.isascii()),
    *_FILLER.split(),
}
# What filings and answers call the same line by other names: an answer's "R&D" or "revenue" is the statement's
# "Research and development" or "Net sales".
_SAME_THING = {
    "r&d": {"research", "development"},
    "sg&a": {"selling", "general", "administrative"},
    "d&a": {"depreciation", "amortization"},
    "revenue": {"sale"},
    "sale": {"revenue"},
    "eps": {"earning", "share"},
    "capex": {"capital", "expenditure"},
    "opex": {"operating", "expense"},
    "cogs": {"cost", "good", "sold"},
    "fcf": {"free", "cash", "flow"},
    "profit": {"income", "earning"},
    "headcount": {"employee"},
    "buyback": {"repurchase", "repurchased"},
}
_ABBREVIATED = re.compile(r"\b(?:R&D|SG&A|D&A|EPS|COGS|capex)\b", re.I)  # read whole: "COGS" is no plural


def words_of(text: str) -> set[str]:
    """What a stretch of text is about: its longer words (lower case, a plural's s dropped), Chinese as pairs of
    characters."""
    out = set()
    for word in WORD.findall(text):
        if word.isascii():
            word = word.lower()
            if word not in _PLAIN_WORDS:
                out.add(_singular(word))
        else:
            out.update(word[i : i + 2] for i in range(len(word) - 1))
    return out


def about_words(sentence: str) -> set[str]:
    """What an answer's sentence says its figures measure: its words, and the names filings give the same things."""
    words = words_of(sentence) | {m.lower() for m in _ABBREVIATED.findall(sentence)}
    return words | set().union(*(_SAME_THING.get(w, set()) for w in words))


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


def sentence_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    bounds = [0, *(m.end() for m in _SENTENCE_END.finditer(text)), len(text)]
    return max(b for b in bounds if b <= start), min((b for b in bounds if b >= end), default=len(text))


def sentence_of(text: str, start: int, end: int) -> str:
    return text[slice(*sentence_bounds(text, start, end))]


def sentence_before(text: str, sentence: tuple[int, int]) -> tuple[int, int]:
    """The bounds of the sentence before ``sentence`` (empty bounds at 0, for the first)."""
    at = max(0, sentence[0] - 1)
    return sentence_bounds(text, at, at)


@lru_cache(maxsize=1024)
def line_ends(text: str) -> tuple[int, ...]:
    """Where a passage's lines end (_LINE_ENDS); kept, as every value looked up on it reads its line."""
    return tuple(m.start() for m in LINE_END.finditer(text))


def line_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """Where the line of a passage that holds ``text[start:end]`` starts and ends."""
    ends = line_ends(text)
    return _start_of(ends, bisect_left(ends, start)), _end_of(text, ends, bisect_left(ends, end))


def nth_line(text: str, i: int) -> str:
    """A passage's ``i``-th line (0-based), as line_ends divides it."""
    ends = line_ends(text)
    return text[_start_of(ends, i) : _end_of(text, ends, i)]


def _start_of(ends: tuple[int, ...], i: int) -> int:
    return ends[i - 1] + 1 if i else 0


def _end_of(text: str, ends: tuple[int, ...], i: int) -> int:
    return ends[i] if i < len(ends) else len(text)


def line_of(text: str, start: int, end: int) -> str:
    """The line of a passage that holds ``text[start:end]``, its spaces made single."""
    return " ".join(text[slice(*line_bounds(text, start, end))].split())


@lru_cache(maxsize=1024)
def passage_words(text: str) -> frozenset[str]:
    return frozenset(words_of(text))
