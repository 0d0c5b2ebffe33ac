"""Scores for one question: retrieval against gold files and pages, the answer against the gold answer."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

from rag.languages import HAN_CHARS, LATIN_WORD
from rag.prompts import split_source_list

K_VALUES = (1, 3, 5, 10)

# Words and numbers, and each Han character on its own (Chinese answers are scored by characters, as CMRC does)
_TOKEN = re.compile(rf"{LATIN_WORD}|[{HAN_CHARS}]")
_NUMBER = re.compile(r"(?<![\w.])\$?\(?-?\d[\d,]*(?:\.\d+)?%?")
_REFUSAL = re.compile(
    r"\b(i (do not|don't) know|not (mentioned|provided|available) in|cannot (find|answer)|no information)\b"
    r"|不知道|无法回答|没有(?:提到|提及|相关信息)",
    re.I,
)


# The gold answers' own source block ("SOURCE(S): 2023 Q3 AAPL.pdf") and file names: the service's source list is
# rag.prompts'.
_GOLD_SOURCES = re.compile(r"\n\s*SOURCES?(\(S\))?:.*", re.I | re.S)
_FILE_NAME = re.compile(r"\(*\"*\s*(SOURCE:\s*)?(\b\d{4} Q[1-4] [A-Z]{2,5}|[\w\-]+)\.pdf\"*\)*", re.I)


def strip_sources(text: str) -> str:
    """The answer without its source list and file names: their years and quarters are not the answer's numbers."""
    return _FILE_NAME.sub(" ", _GOLD_SOURCES.sub("", split_source_list(text)[0]))


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD-style bag-of-tokens F1."""
    pred, ref = tokens(prediction), tokens(gold)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def numbers(text: str) -> set[str]:
    """Numbers as written, normalised: '$81,797' and '81797' are the same; years and 1-digit counts included."""
    found = set()
    for raw in _NUMBER.findall(text):
        value = raw.strip("$()%").replace(",", "")
        if value.strip("-"):
            found.add(value.lstrip("-").rstrip(".").removesuffix(".0") or "0")
    return found


def number_recall(prediction: str, gold: str) -> float | None:
    """Share of the gold answer's numbers that appear in the prediction; None when the gold has none."""
    gold_numbers = numbers(gold)
    if not gold_numbers:
        return None
    return len(gold_numbers & numbers(prediction)) / len(gold_numbers)


def is_refusal(answer: str) -> bool:
    return bool(_REFUSAL.search(answer))


def recall_at_k(retrieved: Sequence[str], is_gold: Callable[[str], bool], n_gold: int, k: int) -> float:
    """Distinct gold items among the first k retrieved, over the number of gold items."""
    if n_gold == 0:
        return 0.0
    found = {item for item in retrieved[:k] if is_gold(item)}
    return min(1.0, len(found) / n_gold)


def hit_at_k(retrieved: Sequence[str], is_gold: Callable[[str], bool], k: int) -> float:
    return float(any(is_gold(item) for item in retrieved[:k]))


def reciprocal_rank(retrieved: Sequence[str], is_gold: Callable[[str], bool]) -> float:
    for rank, item in enumerate(retrieved, 1):
        if is_gold(item):
            return 1.0 / rank
    return 0.0


def citation_precision(cited_files: Sequence[str], is_gold: Callable[[str], bool]) -> float | None:
    """Share of the distinct files the answer cites that are gold files; None when it cites none."""
    distinct = set(cited_files)
    if not distinct:
        return None
    return sum(is_gold(f) for f in distinct) / len(distinct)
