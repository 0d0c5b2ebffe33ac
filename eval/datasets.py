"""Question sets through adapters: the SEC 10-Q CSV, and a generic JSONL users bring themselves."""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path


class DatasetError(Exception):
    """The dataset cannot be read; the message names the problem."""


@dataclass
class Question:
    id: str
    question: str
    answer: str
    gold_files: list[str] = field(default_factory=list)  # globs or names over the indexed file names
    gold_pages: list[tuple[str, int]] = field(default_factory=list)  # (file, 1-based page), where known
    question_type: str = "all"
    chunk_type: str = "all"
    filters: dict = field(default_factory=dict)  # metadata filters sent with the question (rag.filters)

    def is_gold_file(self, file: str) -> bool:
        return any(fnmatch.fnmatch(file, pattern) for pattern in self.gold_files)

    @property
    def split(self) -> str:
        """``dev`` (defaults are chosen on it) or ``test`` (held back, reported apart): half each, fixed by the
        question's text alone, so a question keeps its split whatever file or order it comes in."""
        return "dev" if hashlib.sha256(self.question.strip().encode()).digest()[0] % 2 == 0 else "test"


SEC_COLUMNS = ["Question", "Source Docs", "Question Type", "Source Chunk Type", "Answer"]


def load_sec_csv(path: Path) -> list[Question]:
    """``qna_data.csv``: a byte-order mark, multi-line answers, and ``Source Docs`` as comma-separated globs."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in SEC_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; found {reader.fieldnames}")
        questions = [
            Question(
                id=f"sec-{i}",
                question=row["Question"].strip(),
                answer=row["Answer"].strip(),
                gold_files=[g.strip() for g in row["Source Docs"].split(",") if g.strip()],
                question_type=row["Question Type"].strip(),
                chunk_type=row["Source Chunk Type"].strip(),
            )
            for i, row in enumerate(reader)
        ]
    return questions


def load_jsonl(path: Path) -> list[Question]:
    """One object per line: ``question``, ``answer``, optional ``gold_files`` (names or globs), ``gold_pages``
    (``[{"file": ..., "page": N}]``), ``question_type``, ``chunk_type``, ``filters`` (``{"company": "Apple"}``)."""
    questions = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}:{n}: not JSON: {err}") from err
        missing = [k for k in ("question", "answer") if k not in row]
        if missing:
            raise DatasetError(f"{path}:{n}: missing field(s) {', '.join(missing)}")
        questions.append(
            Question(
                id=str(row.get("id", f"q-{n}")),
                question=row["question"],
                answer=row["answer"],
                gold_files=list(row.get("gold_files", [])),
                gold_pages=[(p["file"], int(p["page"])) for p in row.get("gold_pages", [])],
                question_type=row.get("question_type", "all"),
                chunk_type=row.get("chunk_type", "all"),
                filters=dict(row.get("filters") or {}),
            )
        )
    return questions


def load_dataset(path: str | Path) -> list[Question]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset not found: {path}")
    loader = load_sec_csv if path.suffix.lower() == ".csv" else load_jsonl
    questions = loader(path)
    if not questions:
        raise DatasetError(f"{path}: the dataset holds no questions")
    return questions
