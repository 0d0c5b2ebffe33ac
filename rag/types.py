"""The data every stage passes along: a request, what search found, what an answer cost, and how answering fails.

Plain dataclasses, importing neither torch nor faiss: the ingress replica, which only routes, holds these and nothing
heavier, and they cross between replicas as they are (Ray pickles them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from rag.filters import Filters

if TYPE_CHECKING:  # rag.figures reads RetrievedChunk from here
    from rag.figures import FigureReport

_QUERY_CHARS = 1000  # about the embedding model's 256-token window
_QUERY_TURNS = 2  # earlier user turns a follow-up leans on


@dataclass
class RetrievedChunk:
    chunk_id: str
    file: str
    page: int
    score: float
    text: str
    # Its document's metadata (rag.doc_metadata.FIELDS it has): the period an answer's "Q3 2023" is checked against.
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchResult:
    chunks: list[RetrievedChunk]
    mode: str
    filters: dict = field(default_factory=dict)  # applied: the request's and those read from the question
    boosts: dict = field(default_factory=dict)  # uncertain mentions that raised matching chunks
    matched: list[str] = field(default_factory=list)  # words of the question the filters came from
    widened: dict = field(default_factory=dict)  # filters read from the question that were dropped, and why
    timings_ms: dict[str, float] = field(default_factory=dict)  # per stage
    version: str = ""  # of the index searched (rag.store.versions)


@dataclass
class Sampling:
    """What a request asks of its answer."""

    max_tokens: int
    stop: tuple[str, ...] = ()  # the answer ends before the first of these, which is not sent
    temperature: float | None = None  # None: the engine's configured temperature; 0: greedy


@dataclass
class Usage:
    """Tokens a request cost and why its answer ended: "stop" (the model ended it, or a stop sequence) or "length"."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"


def retrieval_query(question: str, history: Sequence[dict] = (), turns: int = _QUERY_TURNS) -> str:
    """The question first, then the previous user turns that a follow-up ("and the quarter before?") leans on; cut to
    what the embedding model reads, so the question is never the part that is lost."""
    earlier = [m["content"] for m in history if m.get("role") == "user"][-turns:][::-1]
    return " ".join([question, *earlier])[:_QUERY_CHARS]


@dataclass
class AnswerRequest:
    question: str
    history: list[dict] = field(default_factory=list)  # earlier turns, oldest first
    top_k: int = 5
    max_tokens: int = 128
    filters: Filters = field(default_factory=Filters)
    mode: str | None = None  # None: the configured retrieval.mode
    auto_filters: bool | None = None  # None: the configured retrieval.auto_filters
    stop: tuple[str, ...] = ()  # the answer ends before the first of these
    temperature: float | None = None  # None: the configured llm.temperature
    instructions: str = ""  # the client's own system message, placed after the grounding rules
    collection: str = ""  # which of the service's collections to search; "": its default

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.max_tokens, tuple(self.stop), self.temperature)

    @cached_property
    def retrieval_query(self) -> str:
        return retrieval_query(self.question, self.history)


@dataclass
class Answer:
    text: str  # the answer followed by its sources as file and page
    raw: str  # the model's own words
    search: SearchResult
    usage: Usage
    search_ms: float  # 0 when the caller had searched already
    generate_ms: float
    figures: FigureReport  # each figure of ``raw`` checked against the sources
    check_ms: float

    @property
    def chunks(self) -> list[RetrievedChunk]:
        return self.search.chunks


@dataclass
class Finished:
    """A streamed answer's last item: the source list that follows its text, what it cost, and its figures' checks."""

    sources: str
    usage: Usage
    figures: FigureReport


class DeadlineExceeded(TimeoutError):
    """A request was still being answered when its deadline passed; its place in the batch is freed."""


class DecodeLoopStopped(RuntimeError):
    """The decode loop is gone: nothing this replica holds or receives will be answered."""
