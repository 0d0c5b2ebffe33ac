"""Typed requests and responses of the HTTP API: /query and the OpenAI-compatible chat endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Citation(BaseModel):
    index: int = Field(description="The [n] the answer uses for this source")
    file: str
    page: int = Field(description="1-based page number")
    score: float
    text: str


class Timings(BaseModel):
    retrieve_ms: float
    generate_ms: float
    total_ms: float


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1)
    top_k: int | None = Field(None, gt=0, description="Chunks to retrieve (default from config)")
    file_glob: str | None = Field(None, description="Only chunks from files matching this glob, e.g. '*AAPL*'")
    history: list[ChatMessage] = Field(default_factory=list, description="Earlier turns, oldest first")
    max_tokens: int | None = Field(None, gt=0)


class QueryResponse(BaseModel):
    answer: str
    citations: list[Citation]
    timings: Timings
    model: str


class ChatCompletionRequest(BaseModel):
    """OpenAI's request; unknown fields are accepted and ignored, as OpenAI clients send many."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    # Extensions, passed by the openai client through extra_body.
    top_k: int | None = Field(None, gt=0)
    file_glob: str | None = None


class ChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ChoiceMessage
    finish_reason: Literal["stop", "length"] = "stop"


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    citations: list[Citation] = Field(description="The sources the answer was grounded in")


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "ray-rag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
