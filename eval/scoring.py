"""Scores for one question: retrieval against gold files and pages, the answer against the gold answer; the source
list of an answer is read here and nowhere else in eval."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from eval.datasets import Question
from eval.rows import RunRow, ScoredRow
from rag.languages import HAN_CHARS, LATIN_WORD
from rag.prompts import split_source_list
from rag.types import RetrievedChunk

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


def cited_files(answer: str) -> list[str]:
    """Files named in the answer's source list (what it cited, or everything it was grounded in)."""
    return [file for file, _ in split_source_list(answer)[1]]


def score_row(q: Question, run: RunRow, indexed_files: set[str], answer_retriever: str) -> ScoredRow:
    """The question's run scored: each retriever's files and pages against the gold ones, the answer against the gold
    answer (``answer_retriever``: the retrieval mode it was generated from)."""
    gold_in_index = {f for f in indexed_files if q.is_gold_file(f)}
    scored = ScoredRow(
        id=q.id,
        question=q.question,
        gold_answer=q.answer,
        gold_files=q.gold_files,
        question_type=q.question_type,
        chunk_type=q.chunk_type,
        split=q.split,
        answer=run.answer,
        filters=run.filters,
        error=run.error or ("" if gold_in_index else "no gold file is in the index"),
        latency_s=run.latency_s,
        retrieve_s=run.retrieve_s,
        generate_s=run.generate_s,
        check_s=run.check_s,
    )
    scored.retrieval = {mode: retrieval_scores(q, hits, len(gold_in_index)) for mode, hits in run.retrieved.items()}
    if scored.answer:
        scored.answer_scores = {
            **_answer_scores(q, scored.answer),
            **figure_scores(run.figures),
            "answered_from": answer_retriever,
        }
    return scored


def retrieval_scores(q: Question, hits: list[RetrievedChunk], gold_files_indexed: int) -> dict[str, Any]:
    files = [h.file for h in hits]
    pages = [f"{h.file}#{h.page}" for h in hits]
    scores: dict[str, Any] = {"files": files, "pages": [h.page for h in hits]}
    if gold_files_indexed:
        for k in K_VALUES:
            scores[f"recall@{k}"] = recall_at_k(files, q.is_gold_file, gold_files_indexed, k)
            scores[f"hit@{k}"] = hit_at_k(files, q.is_gold_file, k)
        scores["mrr"] = reciprocal_rank(files, q.is_gold_file)
    if q.gold_pages:
        gold = {f"{f}#{p}" for f, p in q.gold_pages}
        for k in K_VALUES:
            scores[f"page_recall@{k}"] = recall_at_k(pages, gold.__contains__, len(gold), k)
            scores[f"page_hit@{k}"] = hit_at_k(pages, gold.__contains__, k)
        scores["page_mrr"] = reciprocal_rank(pages, gold.__contains__)
    return scores


def figure_scores(counts: dict[str, int] | None) -> dict[str, float | None]:
    """The answer's figures as the check found them (rag.figures): the shares supported and unsupported, and whether
    every one is supported; None for an answer with no figures."""
    total = counts["figures"] if counts else 0
    if not counts or not total:
        return {"figures_supported": None, "figures_unsupported": None, "all_figures_supported": None}
    return {
        "figures_supported": counts["supported"] / total,
        "figures_unsupported": counts["unsupported"] / total,
        "all_figures_supported": float(counts["supported"] == total),
    }


def _answer_scores(q: Question, answer: str) -> dict[str, float | None]:
    text, gold = strip_sources(answer), strip_sources(q.answer)
    return {
        "token_f1": token_f1(text, gold),
        "number_recall": number_recall(text, gold),
        "citation_precision": citation_precision(cited_files(answer), q.is_gold_file),
        "refusal": float(is_refusal(answer)),
    }
