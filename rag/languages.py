"""Text handling that depends on the script: Chinese (and Japanese kanji) has no spaces between words, so word
boundaries come from a segmenter, line breaks a PDF's layout put inside a sentence must go, and a character carries
about as much as three English letters."""

from __future__ import annotations

import itertools
import re
from functools import cache
from typing import Literal

# What a document or a question is written in, as the embedding model sees it (language_of)
Language = Literal["en", "zh", "other"]

# CJK unified ideographs (with extension A and the compatibility block), and the full-width punctuation around them
HAN_CHARS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # for a regular expression's character class
_FULL_WIDTH = "\u3000-\u303f\uff00-\uffef"
_HAN_CHAR = re.compile(f"[{HAN_CHARS}]")
_WIDE = re.compile(f"[{HAN_CHARS}{_FULL_WIDTH}]")
_LETTER = re.compile(rf"[^\W\d_]|[{HAN_CHARS}]")
_LATIN_END = 0x024F  # the last letter of Latin Extended-B
# A lower-cased Latin word or number, decimals and thousands kept whole ("81,797", "3.5"): search and scoring alike
LATIN_WORD = r"[a-z0-9]+(?:[.,][0-9]+)*"
# Latin words and numbers, and Han runs, in the order the text has them
_WORD_OR_RUN = re.compile(rf"[{HAN_CHARS}]+|{LATIN_WORD}")

# Chinese sentence ends first, then clause marks: where a Chinese chunk may be cut before cutting inside a clause
SENTENCE_ENDS = ("。", "！", "？", "；")
CLAUSE_MARKS = ("，", "、")

# Function words and question words: frequent in questions, they say nothing about which passage answers them
# (a question word is rare in the answering text, so BM25 would weigh it highly).
_CHINESE_STOPWORDS = frozenset(
    [
        "的",
        "了",
        "是",
        "在",
        "和",
        "与",
        "及",
        "或",
        "等",
        "为",
        "也",
        "就",
        "都",
        "而",
        "这",
        "那",
        "之",
        "其",
        "把",
        "被",
        "有",
        "中",
        "对",
        "从",
        "到",
        "由",
        "以",
        "于",
        "个",
        "上",
        "吗",
        "呢",
        "啊",
        "吧",
        "什么",
        "哪",
        "哪里",
        "哪个",
        "哪些",
        "哪一",
        "哪年",
        "谁",
        "多少",
        "几",
        "如何",
        "怎么",
        "怎样",
        "为什么",
        "为何",
        "是否",
        "请问",
        "是什么",
        "叫什么",
        "有哪些",
        "一个",
        "这个",
        "那个",
        "以及",
        "并且",
        "或者",
        "因为",
        "所以",
        "但是",
        "如果",
        "可以",
    ]
)

# A Han character counts as this many characters towards a chunk's size: multilingual-e5's tokenizer reads 1.6 Han
# characters a token against 4.8 English letters (measured on zh-wiki and SEC pages), so 1,000 counts hold about
# the same number of tokens, and about as much meaning, in either script.
HAN_CHAR_WEIGHT = 3


def language_of(text: str) -> Language | None:
    """What a document is written in, as far as the embedding model cares: "zh" (at least 30% of its letters Han),
    "other" (as many in another script beyond Latin: Cyrillic, Arabic, Hangul, kana ...), "en" (Latin script; French
    or German count here too), None when it has no letters (a scan before OCR)."""
    letters = _LETTER.findall(text)
    if not letters:
        return None
    if len(_HAN_CHAR.findall(text)) >= 0.3 * len(letters):
        return "zh"
    beyond_latin = sum(ord(c) > _LATIN_END for c in letters)
    return "other" if beyond_latin >= 0.3 * len(letters) else "en"


def is_chinese(text: str) -> bool:
    """Mostly Han: a Chinese passage or question (a few Latin names and numbers inside it do not change that)."""
    return language_of(text) == "zh"


def has_han(text: str) -> bool:
    return _HAN_CHAR.search(text) is not None


def weighted_length(text: str) -> int:
    """Characters, a Han character counted HAN_CHAR_WEIGHT times: the chunk splitter's measure."""
    return len(text) + (HAN_CHAR_WEIGHT - 1) * len(_HAN_CHAR.findall(text))


def _width(line: str) -> float:
    """How wide a line is set, in full-width characters: a Latin letter or digit takes about half of one."""
    wide = len(_WIDE.findall(line))
    return wide + 0.5 * (len(line) - wide)


def join_wrapped_lines(text: str) -> str:
    """The page's text without the line breaks its layout put inside Chinese sentences.

    A line is taken as wrapped when it is about as wide as the page's widest lines and the break has Chinese on one
    side and no space on either: a heading or a paragraph's last line is short and keeps its break, and English text
    (breaks between Latin words) is left as it is. Only newlines are removed, so the page keeps every other
    character where it was."""
    if not has_han(text):
        return text
    lines = text.split("\n")
    widths = sorted(w for w in map(_width, lines) if w > 0)
    if not widths:
        return text
    full = 0.85 * widths[round(0.9 * (len(widths) - 1))]
    out = [lines[0]]
    for before, line in itertools.pairwise(lines):
        if (
            before
            and line
            and not before[-1].isspace()
            and not line[0].isspace()
            and (_WIDE.match(before[-1]) or _WIDE.match(line[0]))
            and _width(before) >= full
        ):
            out[-1] += line
        else:
            out.append(line)
    return "\n".join(out)


@cache
def _segmenter():
    """rjieba (jieba-rs, a binary wheel); jieba, its pure-Python original with the same dictionary, where no wheel
    is."""
    try:
        import rjieba

        return rjieba
    except ImportError:
        import jieba

        return jieba


@cache
def _english_stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN_PLUS

    return frozenset(STOPWORDS_EN_PLUS)


def search_terms(text: str) -> list[str]:
    """BM25's terms, the same for chunks and questions: Latin words and numbers as they are, lower-cased; Han runs cut
    into words by jieba's search mode (which also yields the shorter words inside a long one, so "盛大网络" matches
    "盛大" too); stopwords of either language dropped."""
    out: list[str] = []
    for match in _WORD_OR_RUN.finditer(text.lower()):
        token = match.group()
        if _HAN_CHAR.match(token):
            out.extend(w for w in _segmenter().cut_for_search(token) if w not in _CHINESE_STOPWORDS)
        elif token not in _english_stopwords():
            out.append(token)
    return out
