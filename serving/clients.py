"""The answer pipeline's retriever and generator as Serve deployment handles (rag.answering's interfaces)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from rag.answering import AnswerRequest
from rag.search import RetrievedChunk, SearchResult


class Overloaded(Exception):
    """A downstream deployment's queue is full."""


def request_payload(request: AnswerRequest) -> dict:
    """An AnswerRequest as plain data for a replica in another process."""
    return {**asdict(request), "filters": request.filters.given()}


class ServeRetriever:
    def __init__(self, handle: DeploymentHandle):
        self.handle = handle

    async def search(self, request: AnswerRequest) -> SearchResult:
        try:
            found = await self.handle.search.remote(request_payload(request))
        except BackPressureError as err:
            raise Overloaded() from err
        return SearchResult(**{**found, "chunks": [RetrievedChunk(**c) for c in found["chunks"]]})


class ServeGenerator:
    def __init__(self, handle: DeploymentHandle):
        self.handle = handle

    async def stream(self, question: str, chunks: list[RetrievedChunk], history: list[dict],
                     max_tokens: int) -> AsyncIterator[str]:
        try:
            async for delta in self.handle.options(stream=True).stream.remote(
                question, [asdict(c) for c in chunks], history, max_tokens
            ):
                yield delta
        except BackPressureError as err:
            raise Overloaded() from err

    async def complete(self, question: str, chunks: list[RetrievedChunk], history: list[dict], max_tokens: int) -> str:
        # Whole answers come back in one reply: a stream would cost a message between replicas per token.
        try:
            return await self.handle.complete.remote(question, [asdict(c) for c in chunks], history, max_tokens)
        except BackPressureError as err:
            raise Overloaded() from err
