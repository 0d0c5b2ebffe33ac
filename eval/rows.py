"""What eval carries per question: the run's result (batch or online alike), then the same scored."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rag.types import RetrievedChunk


@dataclass
class RunRow:
    """One question through the pipeline: what each retriever found (best first), the answer, or the error."""

    id: str
    error: str = ""
    answer: str = ""
    retrieved: dict[str, list[RetrievedChunk]] = field(default_factory=dict)  # retrieval mode -> chunks
    filters: dict[str, Any] = field(default_factory=dict)  # applied to the answer's search
    latency_s: float | None = None  # online: the whole request
    retrieve_s: float | None = None
    generate_s: float | None = None
    check_s: float | None = None  # the answer's figures checked (rag.figures)
    figures: dict[str, int] | None = None  # the check's counts: figures, supported, unsupported, cut_off


@dataclass
class ScoredRow:
    """A question, its gold data, its run and its scores: one line of rows.jsonl."""

    id: str
    question: str
    gold_answer: str
    gold_files: list[str]
    question_type: str
    chunk_type: str
    split: str
    answer: str
    filters: dict[str, Any]
    error: str
    latency_s: float | None
    retrieve_s: float | None
    generate_s: float | None
    check_s: float | None
    # retrieval mode -> the files and pages it found and their scores (recall@k, hit@k, mrr, page_*)
    retrieval: dict[str, dict[str, Any]] = field(default_factory=dict)
    answer_scores: dict[str, Any] | None = None  # token_f1, number_recall, citation_precision, refusal
    judge: dict[str, Any] | None = None  # the LLM judge's score and reason, where one was asked

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k not in ("answer_scores", "judge")}
