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


@dataclass
class Answer:
    text: str  # the answer followed by its sources as file and page
    raw: str  # the model's own words
    search: SearchResult
    generate_ms: float

    @property
    def chunks(self) -> list[RetrievedChunk]:
        return self.search.chunks


class Retriever(Protocol):
    async def search(self, request: AnswerRequest) -> SearchResult: ...


class Generator(Protocol):
    def stream(self, question: str, chunks: list[RetrievedChunk], history: list[dict], max_tokens: int) -> AsyncIterator[str]: ...

    async def complete(self, question: str, chunks: list[RetrievedChunk], history: list[dict], max_tokens: int) -> str: ...


class AnswerPipeline:
    def __init__(self, retriever: Retriever, generator: Generator):
        self.retriever, self.generator = retriever, generator

    async def search(self, request: AnswerRequest) -> SearchResult:
        return await self.retriever.search(request)

    async def answer(self, request: AnswerRequest, found: SearchResult | None = None) -> Answer:
        found = found or await self.search(request)
        started = time.perf_counter()
        raw = await self.generator.complete(request.question, found.chunks, request.history, request.max_tokens)
        return Answer(with_source_list(raw, found.chunks), raw, found, (time.perf_counter() - started) * 1000)

    def stream(self, request: AnswerRequest, found: SearchResult) -> AsyncIterator[str]:
        """The answer's deltas for chunks already found; the caller appends the sources (``with_source_list``)."""
        return self.generator.stream(request.question, found.chunks, request.history, request.max_tokens)


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

    async def stream(self, question: str, chunks: Sequence[RetrievedChunk], history: Sequence[dict],
                     max_tokens: int) -> AsyncIterator[str]:
        for step in self.engine.stream_batch([self.engine.prompt(question, chunks, history)], [max_tokens]):
            if step[0]:
                yield step[0]
            await asyncio.sleep(0)

    async def complete(self, question: str, chunks: Sequence[RetrievedChunk], history: Sequence[dict],
                       max_tokens: int) -> str:
        return "".join([delta async for delta in self.stream(question, chunks, history, max_tokens)])


def local_pipeline(searcher: Searcher, engine: Engine) -> AnswerPipeline:
    return AnswerPipeline(LocalRetriever(searcher), LocalGenerator(engine))
