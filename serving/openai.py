"""OpenAI's chat completion protocol over the answer pipeline: the whole response, and the stream of server-sent
events (deltas, the closing event with the sources, the usage event, an error event once the status line is out)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict

from fastapi import HTTPException

from rag.figures import FigureReport
from rag.ray_runtime import own_message
from rag.types import Answer, Finished, RetrievedChunk, SearchResult, Usage
from serving.errors import stream_status
from serving.schemas import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChoiceMessage,
    Citation,
    FigureCheckInfo,
    FigureSummary,
    RetrievalInfo,
    UsageInfo,
)

log = logging.getLogger(__name__)


def conversation(req: ChatCompletionRequest) -> tuple[list[dict], str]:
    """The request's turns (the last one the user's question) and the client's instructions, or 400 naming what the
    service cannot honour."""
    unsupported = req.unsupported()
    if unsupported:
        raise HTTPException(status_code=400, detail=f"unsupported parameter(s): {', '.join(unsupported)}")
    if len(req.stops) > 4:
        raise HTTPException(status_code=400, detail="at most 4 stop sequences")
    # System (and developer) messages are the client's instructions: they follow the service's grounding rules.
    instructions = "\n\n".join(m.text for m in req.messages if m.role in ("system", "developer"))
    messages = [m.turn() for m in req.messages if m.role not in ("system", "developer")]
    if not messages or messages[-1]["role"] != "user":
        raise HTTPException(status_code=400, detail="the last message must come from the user")
    return messages, instructions


def citations(chunks: list[RetrievedChunk]) -> list[Citation]:
    return [Citation(index=i, file=c.file, page=c.page, score=c.score, text=c.text) for i, c in enumerate(chunks, 1)]


def figure_checks(report: FigureReport) -> list[FigureCheckInfo]:
    return [FigureCheckInfo(**asdict(c)) for c in report.checks]


def figure_summary(report: FigureReport) -> FigureSummary:
    return FigureSummary(**report.summary, unknown_citations=report.unknown_citations, refused=report.refused)


def retrieval_info(found: SearchResult) -> RetrievalInfo:
    return RetrievalInfo(
        mode=found.mode,
        filters=found.filters,
        boosts=found.boosts,
        matched=found.matched,
        widened=found.widened,
        timings_ms=found.timings_ms,
        index_version=found.version,
    )


def usage_info(usage: Usage) -> UsageInfo:
    return UsageInfo(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
    )


def chat_completion(completion_id: str, created: int, model: str, answer: Answer) -> ChatCompletionResponse:
    return ChatCompletionResponse(
        id=completion_id,
        created=created,
        model=model,
        choices=[Choice(message=ChoiceMessage(content=answer.text), finish_reason=answer.usage.finish_reason)],
        usage=usage_info(answer.usage),
        citations=citations(answer.chunks),
        checks=figure_checks(answer.figures),
        figures=figure_summary(answer.figures),
        retrieval=retrieval_info(answer.search),
    )


class ChatStream:
    """The events of one streamed chat completion."""

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool):
        self.completion_id, self.created, self.model, self.include_usage = completion_id, created, model, include_usage

    def _data(self, body: dict) -> str:
        return f"data: {json.dumps(body)}\n\n"

    def _chunk(self, choices: list[dict], **extra) -> str:
        return self._data(
            {
                "id": self.completion_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": choices,
                **extra,
            }
        )

    def _delta(self, delta: dict, finish: str | None = None, **extra) -> str:
        usage = {"usage": None} if self.include_usage else {}
        return self._chunk([{"index": 0, "delta": delta, "finish_reason": finish}], **usage, **extra)

    async def events(self, items: AsyncIterator[str | Finished], found: SearchResult) -> AsyncIterator[str]:
        """``items``: the pipeline's stream (rag.answering.AnswerPipeline.stream) for what was ``found``."""
        yield self._delta({"role": "assistant", "content": ""})
        try:
            async for item in items:
                if isinstance(item, Finished):
                    finished = item
                else:
                    yield self._delta({"content": item})
        except Exception as err:  # the status line has gone out: the stream ends with an error event instead
            log.warning("stream %s ended by %s", self.completion_id, type(err).__name__)
            yield self._data(
                {"error": {"message": own_message(err), "type": type(err).__name__, "code": stream_status(err)}}
            )
            return
        yield self._delta(
            {"content": finished.sources},
            finished.usage.finish_reason,
            citations=[c.model_dump() for c in citations(found.chunks)],
            checks=[c.model_dump() for c in figure_checks(finished.figures)],
            figures=figure_summary(finished.figures).model_dump(),
            retrieval=retrieval_info(found).model_dump(),
        )
        if self.include_usage:
            yield self._chunk([], usage=usage_info(finished.usage).model_dump())
        yield "data: [DONE]\n\n"
