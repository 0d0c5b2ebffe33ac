"""``rag eval``: load the questions, run them (batch or online), score them, write the report."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from eval.datasets import Question, load_dataset
from eval.judge import judge_rows
from eval.report import write_report
from eval.rows import RunRow
from eval.runner import run_batch, run_online
from eval.scoring import score_row
from rag.config import RETRIEVAL_MODES, Settings
from rag.filters import parse_filters
from rag.store.versions import open_index

log = logging.getLogger(__name__)


def run_eval(
    dataset: str | Path,
    index_dir: str | Path,
    out_dir: str | Path,
    settings: Settings,
    endpoint: str | None = None,
    retrievers: tuple[str, ...] = RETRIEVAL_MODES,
    answer_retriever: str | None = None,
    generate: bool = True,
    limit: int | None = None,
    concurrency: int = 8,
    api_key: str | None = None,
    judge: dict | None = None,
    filters: dict | None = None,
) -> dict:
    """``judge``: ``{"base_url", "model", "api_key"}`` of an OpenAI-compatible endpoint; off when None.
    ``retrievers``: the retrieval modes a batch run compares; ``answer_retriever``: the one answers are generated from
    (default: the config's ``retrieval.mode``).
    ``filters``: metadata filters sent with every question, under each question's own."""
    started = time.perf_counter()
    answer_retriever = answer_retriever or settings.retrieval.mode
    questions: list[Question] = load_dataset(dataset)[:limit]
    if filters:
        parse_filters(filters)  # a typo stops the run here, not in every actor
        questions = [replace(q, filters={**filters, **q.filters}) for q in questions]
    indexed_files = set(open_index(index_dir).chunks["file"])
    missing = [q.id for q in questions if not any(q.is_gold_file(f) for f in indexed_files)]
    if missing:
        log.warning(
            "%d question(s) have no gold file in the index; they are scored as failures: %s",
            len(missing),
            ", ".join(missing[:10]),
        )
    if endpoint:
        rows = run_online(questions, endpoint, concurrency, api_key, k=10)
        run = "online"
        compared = sorted({mode for r in rows for mode in r.retrieved})
    else:
        unknown = [m for m in retrievers if m not in RETRIEVAL_MODES]
        if unknown:
            raise ValueError(f"unknown retrieval mode(s) {unknown}; choose from {list(RETRIEVAL_MODES)}")
        compared = list(retrievers)
        if answer_retriever not in compared and not generate:
            answer_retriever = compared[0]  # only its filters are recorded
        if answer_retriever not in compared:
            raise ValueError(f"answers are generated from {answer_retriever!r}, which is not among {compared}")
        rows = run_batch(questions, str(index_dir), settings, compared, answer_retriever, generate)
        run = "batch"
    by_id = {r.id: r for r in rows}
    scored = [
        score_row(q, by_id.get(q.id) or RunRow(q.id, error="no result"), indexed_files, answer_retriever)
        for q in questions
    ]
    if judge:
        judge_rows(scored, judge["base_url"], judge["model"], judge.get("api_key"))
    meta = {
        "dataset": str(dataset),
        "index": str(index_dir),
        "run": run,
        "retrievers": compared,
        "answer_retriever": answer_retriever if generate else None,
        "llm": settings.llm.model,
        "retrieval": settings.retrieval.model_dump(),
        "max_new_tokens": settings.llm.max_new_tokens,
        "questions": len(questions),
        "judge": judge and {"base_url": judge["base_url"], "model": judge["model"]},
        "seconds": time.perf_counter() - started,
    }
    return write_report(Path(out_dir), scored, meta)
