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


def generate_answer(engine: Engine, question: str, chunks: Sequence[RetrievedChunk], history: Sequence[dict] = (),
                    max_tokens: int = 128) -> str:
    """The engine's answer grounded in ``chunks``, followed by the file and page of its sources."""
    return with_source_list(engine.generate(build_messages(question, chunks, history), max_tokens), chunks)


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
    text = generate_answer(engine, question, chunks, history, max_tokens)
    return Answer(text, chunks, retrieved - started, time.perf_counter() - retrieved)
