"""The one answer pipeline: search, then a grounded answer with its sources, over async retriever and generator
interfaces.

The service's ingress holds it over Serve handles (serving.clients), ``rag ask`` and batch eval over in-process
objects (``LocalRetriever``, ``LocalGenerator``); the steps, their order, their timing and the source list that
follows every answer, whole or streamed, are written once, here. The generator side builds the prompt
(``Engine.prompt``), since the token budget is counted in its model's tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol

from rag.figures import FigureReport, check_figures
from rag.prompts import cited_indices, figures_refusal, source_list, unsupported_warning
from rag.types import Answer, AnswerRequest, Finished, RetrievedChunk, SearchResult, Usage

if TYPE_CHECKING:  # the ingress holds a pipeline without loading models or indexes
    from rag.llm.engines import Engine
    from rag.search import Searcher


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
    return "".join(parts), _ended(usage)


def _ended(usage: Usage | None) -> Usage:
    if usage is None:  # every generator ends its stream with one
        raise RuntimeError("the answer's stream ended without its usage")
    return usage


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def check_answer(question: str, raw: str, chunks: Sequence[RetrievedChunk], usage: Usage) -> FigureReport:
    """Every figure of the answer ``raw`` looked for in the sources it was given, those it cites first."""
    return check_figures(raw, chunks, cited_indices(raw, len(chunks)), usage.finish_reason, question)


class AnswerPipeline:
    """``unsupported_figures``: what an answer holding figures that its sources do not becomes (rag.config's
    answers.unsupported_figures): flagged in its checks only, followed by a warning, or refused."""

    def __init__(self, retriever: Retriever, generator: Generator, unsupported_figures: str = "flag"):
        self.retriever, self.generator, self.policy = retriever, generator, unsupported_figures

    async def search(self, request: AnswerRequest) -> SearchResult:
        return await self.retriever.search(request)

    def _shown(self, request: AnswerRequest, raw: str, report: FigureReport) -> str:
        """The answer's words as the policy lets them out."""
        unsupported = [c.text for c in report.checks if c.status == "unsupported"]
        if not unsupported or self.policy == "flag":
            return raw
        if self.policy == "warn":
            return raw + unsupported_warning(request.question, unsupported)
        report.refused = True
        return figures_refusal(request.question, unsupported)

    async def answer(self, request: AnswerRequest, found: SearchResult | None = None) -> Answer:
        """The whole answer, its sources appended; ``found``: what the caller has searched already."""
        started = time.perf_counter()
        found = found or await self.search(request)
        searched = time.perf_counter()
        raw, usage = await self.generator.complete(request, found.chunks)
        generated = time.perf_counter()
        report = check_answer(request.question, raw, found.chunks, usage)
        text = self._shown(request, raw, report) + source_list(raw, found.chunks)
        return Answer(
            text,
            raw,
            found,
            usage,
            (searched - started) * 1000,
            (generated - searched) * 1000,
            report,
            _ms_since(generated),
        )

    async def stream(self, request: AnswerRequest, found: SearchResult) -> AsyncIterator[str | Finished]:
        """The answer's text deltas for chunks already found, then one Finished with its source list and checks.

        Its figures are checked after its last token, so the check never delays the first. Where the policy refuses
        unsupported figures, nothing is sent before the check: the answer (or the refusal) comes whole."""
        answer, usage = "", None
        async for item in self.generator.stream(request, found.chunks):
            if isinstance(item, Usage):
                usage = item
            else:
                answer += item
                if self.policy != "refuse":
                    yield item
        usage = _ended(usage)
        report = check_answer(request.question, answer, found.chunks, usage)
        shown = self._shown(request, answer, report)
        rest = shown if self.policy == "refuse" else shown[len(answer) :]
        if rest:
            yield rest
        yield Finished(source_list(answer, found.chunks), usage, report)


class LocalRetriever:
    """A Searcher in this process."""

    def __init__(self, searcher: Searcher):
        self.searcher = searcher

    async def search(self, request: AnswerRequest) -> SearchResult:
        return self.searcher.search(
            request.question, request.top_k, request.history, request.filters, request.mode, request.auto_filters
        )


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


def local_pipeline(searcher: Searcher, engine: Engine, unsupported_figures: str = "flag") -> AnswerPipeline:
    return AnswerPipeline(LocalRetriever(searcher), LocalGenerator(engine), unsupported_figures)
