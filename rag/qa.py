"""One question answered in-process with the shared core: what `rag ask` without a service and batch eval run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from rag.engines import Engine
from rag.prompts import build_messages, retrieval_query, with_source_list
from rag.retrieval import RetrievedChunk, Retriever


@dataclass
class Answer:
    text: str  # the answer followed by its sources as file and page
    chunks: list[RetrievedChunk]
    retrieve_s: float
    generate_s: float


def answer_question(
    retriever: Retriever,
    engine: Engine,
    question: str,
    history: Sequence[dict] = (),
    top_k: int = 5,
    max_tokens: int = 128,
    file_glob: str | None = None,
) -> Answer:
    started = time.perf_counter()
    chunks = retriever.retrieve(retrieval_query(question, history), top_k, file_glob)
    retrieved = time.perf_counter()
    text = engine.generate(build_messages(question, chunks, history), max_tokens)
    return Answer(with_source_list(text, chunks), chunks, retrieved - started, time.perf_counter() - retrieved)
