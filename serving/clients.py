"""The answer pipeline's retriever and generator as Serve deployment handles (rag.answering's interfaces).

Requests, results and chunks cross as the dataclasses they are (rag.types); a full queue downstream becomes
``Overloaded``, which the ingress answers with 503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import cast

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from rag.types import AnswerRequest, RetrievedChunk, SearchResult, Usage


class Overloaded(Exception):
    """A downstream deployment's queue is full."""


class ServeRetriever:
    def __init__(self, handle: DeploymentHandle):
        self.handle = handle

    async def search(self, request: AnswerRequest) -> SearchResult:
        try:
            return await self.handle.search.remote(request)
        except BackPressureError as err:
            raise Overloaded() from err


class ServeGenerator:
    def __init__(self, handle: DeploymentHandle):
        self.handle = handle

    async def stream(self, request: AnswerRequest, chunks: list[RetrievedChunk]) -> AsyncIterator[str | Usage]:
        try:
            stream = cast(DeploymentResponseGenerator, self.handle.options(stream=True).stream.remote(request, chunks))
            async for item in stream:
                yield item
        except BackPressureError as err:
            raise Overloaded() from err

    async def complete(self, request: AnswerRequest, chunks: list[RetrievedChunk]) -> tuple[str, Usage]:
        # Whole answers come back in one reply: a stream would cost a message between replicas per token.
        try:
            return await self.handle.complete.remote(request, chunks)
        except BackPressureError as err:
            raise Overloaded() from err
