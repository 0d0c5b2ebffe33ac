"""The one answer pipeline: search, then a grounded answer with its sources, over async retriever and generator interfaces.

The service's ingress holds it over Serve handles, ``rag ask`` and batch eval over in-process
objects (``LocalRetriever``, ``LocalGenerator``); the steps and their order are written once, here.
The generator side builds the prompt (``Engine.prompt``), since the token budget is counted in its
model's tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from rag.decoding import Sampling, Usage
from rag.engines import Engine
from rag.filters import Filters
from rag.prompts import with_source_list
from rag.search import RetrievedChunk, Searcher, SearchResult


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


@dataclass
class Answer:
    text: str  # the answer followed by its sources as file and page
    raw: str  # the model's own words
    search: SearchResult
    generate_ms: float
    usage: Usage

    @property
    def chunks(self) -> list[RetrievedChunk]:
        return self.search.chunks


class Retriever(Protocol):
    async def search(self, request: AnswerRequest) -> SearchResult: ...


class Generator(Protocol):
    def stream(self, request: AnswerRequest, chunks: list[RetrievedChunk]) -> AsyncIterator[str | Usage]:
        """The answer's text deltas, then one Usage."""

    async def complete(self, request: AnswerRequest, chunks: list[RetrievedChunk]) -> tuple[str, Usage]: ...


async def collect(deltas: AsyncIterator[str | Usage]) -> tuple[str, Usage]:
    """A streamed answer as its whole text and its Usage."""
    parts, usage = [], None
    async for item in deltas:
        if isinstance(item, Usage):
            usage = item
        else:
            parts.append(item)
    return "".join(parts), usage


class AnswerPipeline:
    def __init__(self, retriever: Retriever, generator: Generator):
        self.retriever, self.generator = retriever, generator

    async def search(self, request: AnswerRequest) -> SearchResult:
        return await self.retriever.search(request)

    async def answer(self, request: AnswerRequest, found: SearchResult | None = None) -> Answer:
        found = found or await self.search(request)
        started = time.perf_counter()
        raw, usage = await self.generator.complete(request, found.chunks)
        return Answer(with_source_list(raw, found.chunks), raw, found, (time.perf_counter() - started) * 1000, usage)

    def stream(self, request: AnswerRequest, found: SearchResult) -> AsyncIterator[str | Usage]:
        """The answer's deltas, then its Usage, for chunks already found; the caller appends the sources
        (``source_list``)."""
        return self.generator.stream(request, found.chunks)


class LocalRetriever:
    """A Searcher in this process."""

    def __init__(self, searcher: Searcher):
        self.searcher = searcher

    async def search(self, request: AnswerRequest) -> SearchResult:
        return self.searcher.search(request.question, request.top_k, request.history, request.filters, request.mode,
                                    request.auto_filters)


class LocalGenerator:
    """An engine in this process, answering one conversation at a time."""

    def __init__(self, engine: Engine):
        self.engine = engine

    async def stream(self, request: AnswerRequest, chunks: Sequence[RetrievedChunk]) -> AsyncIterator[str | Usage]:
        conversation = self.engine.prompt(request.question, chunks, request.history, request.instructions)
        parts = []
        for step in self.engine.stream_batch([conversation], [request.sampling]):
            if step[0]:
                parts.append(step[0])
                yield step[0]
            await asyncio.sleep(0)
        yield self.engine.usage(conversation, "".join(parts), request.sampling)

    async def complete(self, request: AnswerRequest, chunks: Sequence[RetrievedChunk]) -> tuple[str, Usage]:
        return await collect(self.stream(request, chunks))


def local_pipeline(searcher: Searcher, engine: Engine) -> AnswerPipeline:
    return AnswerPipeline(LocalRetriever(searcher), LocalGenerator(engine))
