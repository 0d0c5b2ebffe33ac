"""The answer pipeline's retriever and generator as Serve deployment handles (rag.answering's interfaces)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from rag.answering import AnswerRequest
from rag.decoding import Usage
from rag.filters import Filters
from rag.search import RetrievedChunk, SearchResult


class Overloaded(Exception):
    """A downstream deployment's queue is full."""


def request_payload(request: AnswerRequest) -> dict:
    """An AnswerRequest as plain data for a replica in another process."""
    return {**asdict(request), "filters": request.filters.given()}


def request_from_payload(payload: dict) -> AnswerRequest:
    return AnswerRequest(**{**payload, "filters": Filters.model_validate(payload["filters"])})


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

    async def stream(self, request: AnswerRequest, chunks: list[RetrievedChunk]) -> AsyncIterator[str | Usage]:
        try:
            async for item in self.handle.options(stream=True).stream.remote(
                request_payload(request), [asdict(c) for c in chunks]
            ):
                yield item
        except BackPressureError as err:
            raise Overloaded() from err

    async def complete(self, request: AnswerRequest, chunks: list[RetrievedChunk]) -> tuple[str, Usage]:
        # Whole answers come back in one reply: a stream would cost a message between replicas per token.
        try:
            return await self.handle.complete.remote(request_payload(request), [asdict(c) for c in chunks])
        except BackPressureError as err:
            raise Overloaded() from err
