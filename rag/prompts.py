"""Grounded prompts: numbered sources in, answers that cite them as [n] out, and follow-ups resolved against history."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.retrieval import RetrievedChunk

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources below. Cite the sources you use as [1], [2]. "
    "If the sources do not contain the answer, say that you do not know."
)

_CITATION = re.compile(r"\[(\d+)\]")


def source_label(chunk: RetrievedChunk) -> str:
    return f"{chunk.file}, p. {chunk.page}"


def format_sources(chunks: Sequence[RetrievedChunk], max_chars_per_source: int) -> str:
    return "\n\n".join(
        f"[{i}] ({source_label(c)})\n{' '.join(c.text.split())[:max_chars_per_source]}" for i, c in enumerate(chunks, 1)
    )


def build_messages(
    question: str,
    chunks: Sequence[RetrievedChunk],
    history: Sequence[dict] = (),
    max_chars_per_source: int = 1200,
) -> list[dict]:
    """Chat messages for the LLM: system rules with the sources, earlier turns, then the question."""
    system = f"{SYSTEM_PROMPT}\n\nSources:\n{format_sources(chunks, max_chars_per_source)}"
    return [{"role": "system", "content": system}, *history, {"role": "user", "content": question}]


def cited_indices(answer: str, n_sources: int) -> list[int]:
    """1-based source numbers the answer cites, in first-seen order, ignoring numbers with no source."""
    seen: list[int] = []
    for match in _CITATION.finditer(answer):
        i = int(match.group(1))
        if 1 <= i <= n_sources and i not in seen:
            seen.append(i)
    return seen


def with_source_list(answer: str, chunks: Sequence[RetrievedChunk]) -> str:
    """The answer followed by the file and page of each source, so plain-text clients see the citations too."""
    if not chunks:
        return answer
    cited = cited_indices(answer, len(chunks)) or list(range(1, len(chunks) + 1))
    lines = "\n".join(f"[{i}] {source_label(chunks[i - 1])}" for i in cited)
    return f"{answer.rstrip()}\n\nSources:\n{lines}"


def retrieval_query(question: str, history: Sequence[dict], turns: int = 2) -> str:
    """The question a follow-up stands for, for retrieval: it joined with the previous user turns.

    A follow-up such as "and in the next quarter?" embeds to nothing useful alone; the earlier user
    questions carry its subject. Embedding them together is robust where a small LLM's rewrite is not.
    """
    earlier = [m["content"] for m in history if m.get("role") == "user"][-turns:]
    return " ".join([*earlier, question])
