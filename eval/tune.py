"""``rag tune``: a collection's retrieval mode chosen on its own questions, per language.

Which mode reads a collection best depends on its documents and on how its users ask: on the SEC 10-Qs dense search
finds more gold pages than the hybrid default, on long 10-Ks and Chinese articles hybrid finds more
(docs/retrieval.md). For each language the questions are written in (rag.languages.language_of), every mode searches
that language's development questions; the one that finds the most gold pages in the top five (gold files, where the
questions have no gold pages), then the best reciprocal rank, becomes the collection's mode for that language. The
config's mode keeps a tie: a choice must be earned. The held-back questions are searched too and reported beside it,
never used to choose. The choice is written to the collection (rag.tuning), which every reader then searches with.

    rag tune --index ./index --dataset my-questions.jsonl
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

from eval.datasets import Question, load_dataset
from eval.scoring import retrieval_scores
from rag.config import RETRIEVAL_MODES, Settings
from rag.filters import parse_filters
from rag.languages import Language, language_of
from rag.search import Searcher
from rag.store.versions import open_index

log = logging.getLogger(__name__)

# Fewer development questions than this in a language cannot tell the modes apart: one question is then more than a
# tenth of the score, so the config's mode stays.
FEWEST = 10
SPLITS = ("dev", "test")


def tune(index_dir: str | Path, dataset: str | Path, settings: Settings, fewest: int = FEWEST) -> dict[str, Any]:
    """Every mode's figures per language and split, and the mode chosen for each language with at least ``fewest``
    development questions (``retrieval``: the settings to write; empty where the config's modes stand)."""
    store = open_index(index_dir)
    searcher = Searcher.over(store, settings, tuned=False)
    indexed = set(store.chunks["file"])
    by_language: dict[Language, list[Question]] = defaultdict(list)
    for q in load_dataset(dataset):
        if any(q.is_gold_file(f) for f in indexed):
            by_language[language_of(q.question) or "en"].append(q)
    if not by_language:
        raise ValueError(f"no question of {dataset} has a gold file in {index_dir}: nothing to choose by")
    languages: dict[str, Any] = {}
    chosen: dict[Language, str] = {}
    for language, questions in sorted(by_language.items()):
        configured = searcher.cfg.mode_by_language.get(language, searcher.cfg.mode)
        # Pages are what a reader is shown: where the questions have gold pages, those questions decide by them.
        paged = [q for q in questions if q.gold_pages]
        questions, metric = (paged, "page_hit@5") if paged else (questions, "recall@5")
        modes = [configured] + [m for m in RETRIEVAL_MODES if m != configured]
        log.info("tune: %s, %d questions by %s, %d modes", language, len(questions), metric, len(modes))
        gold_files = {q.id: sum(q.is_gold_file(f) for f in indexed) for q in questions}
        figures = {mode: _figures(searcher, questions, gold_files, mode, metric) for mode in modes}
        dev = [q for q in questions if q.split == "dev"]
        best = configured
        if len(dev) >= fewest:
            best = max(modes, key=lambda m: (figures[m]["dev"][metric], figures[m]["dev"]["mrr"], m == configured))
        if best != configured:
            chosen[language] = best
        languages[language] = {
            "questions": {s: sum(q.split == s for q in questions) for s in SPLITS},
            "metric": metric,
            "configured": configured,
            "chosen": best,
            "modes": figures,
        }
    return {
        "retrieval": {"mode_by_language": chosen} if chosen else {},
        "chosen_by": {"dataset": str(dataset), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "languages": languages},
    }


def _figures(
    searcher: Searcher, questions: list[Question], gold_files: dict[str, int], mode: str, metric: str
) -> dict[str, dict[str, float | None]]:
    """``metric`` and the reciprocal rank (of the gold page, or file) per split, over the top ten; ``gold_files``:
    how many of each question's gold files the index holds."""
    rank_of = "page_mrr" if metric.startswith("page") else "mrr"
    scores: dict[str, list[dict]] = defaultdict(list)
    for q in questions:
        hits = searcher.search(q.question, 10, filters=parse_filters(q.filters), mode=mode).chunks
        scores[q.split].append(retrieval_scores(q, hits, gold_files[q.id]))
    return {
        split: {
            metric: round(mean(s[metric] for s in scores[split]), 3) if scores[split] else None,
            "mrr": round(mean(s[rank_of] for s in scores[split]), 3) if scores[split] else None,
        }
        for split in SPLITS
    }


def table(report: dict[str, Any]) -> str:
    """The figures as a Markdown table, the chosen mode of each language marked."""
    lines = ["| language | mode | dev | test | dev MRR | test MRR |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for language, found in report["chosen_by"]["languages"].items():
        for mode, figures in found["modes"].items():
            mark = " (chosen)" if mode == found["chosen"] else ""
            dev, test = figures["dev"], figures["test"]
            lines.append(
                f"| {language} | {mode}{mark} | {_cell(dev[found['metric']])} | {_cell(test[found['metric']])} | "
                f"{_cell(dev['mrr'])} | {_cell(test['mrr'])} |"
            )
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
