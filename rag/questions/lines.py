"""The line of a passage that answers a question about a figure: a table row or a sentence that names what the
question asks and carries a figure.

A 10-K holds the same words ("repurchases of common stock") on a dozen pages; the page that answers "how much did
the company pay to repurchase common stock" is the one where those words stand on one line beside an amount
("Payments for repurchases of common stock (11,347)"). Chunk scores, dense or BM25, see a passage's words as a
whole; this reads it line by line. Words are compared by their first letters, a crude stem that needs no
language model ("repurchase" meets "repurchases", "pay" meets "payments").
"""

from __future__ import annotations

import re

from bm25s.stopwords import STOPWORDS_EN_PLUS

from rag.filters import name_words

_WORD = re.compile(r"[a-z][a-z&'’-]*")
_FIGURE = re.compile(r"\d{1,3}(?:,\d{3})+|\d+\.\d+|\d+\s*%|\$\s*\d+")
_STEM = 5  # the letters of a word that decide a match
_MIN_WORD = 3
# The words of how a question asks rather than of what it asks about: "how much did ... record in fiscal 2022".
_ASKING_WORDS = (
    "what which how much many did does do was were is are record recorded report reported fiscal year years "
    "according annual quarter quarterly company company's its their total amount value figure figures "
    "compared compare change changed"
)
_ASKING = frozenset(_ASKING_WORDS.split())


def asked_words(question: str, names: list[str]) -> list[str]:
    """The words of ``question`` that say what it asks about: no stopwords, no asking words, no words of the names
    it matched (a company, a period, a statement: the filters and the section boost use those)."""
    named = {w for name in names for w in name_words(name)}
    words = [w.strip("'’-") for w in _WORD.findall(question.lower())]
    kept = [w for w in words if len(w) >= _MIN_WORD and w not in STOPWORDS_EN_PLUS and w not in _ASKING]
    return list(dict.fromkeys(w for w in kept if w not in named))


def _meets(asked: str, word: str) -> bool:
    """The same word by its first letters; a short one ("pay", "tax") stands for the words it begins ("payments")."""
    shorter, longer = sorted((asked, word), key=len)
    return len(shorter) >= _MIN_WORD and longer.startswith(shorter[:_STEM])


def line_coverage(asked: list[str], text: str) -> float:
    """The largest share of ``asked`` that one line of ``text`` holding a figure names (0 when none does)."""
    if not asked:
        return 0.0
    best = 0
    stems = [a[:_STEM] for a in asked]
    for line in text.lower().splitlines():
        if not any(s in line for s in stems) or not _FIGURE.search(line):  # most lines name nothing asked
            continue
        words = [w for w in _WORD.findall(line) if w not in STOPWORDS_EN_PLUS]  # "for" stands for no "format"
        named = sum(any(_meets(a, w) for w in words) for a in asked)
        best = max(best, named)
    return best / len(asked)
