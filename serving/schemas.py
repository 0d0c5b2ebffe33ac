"""Typed requests and responses of the HTTP API: /query and the OpenAI-compatible chat endpoints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rag.config import RetrievalMode
from rag.figures import WHY, Why
from rag.filters import FILTER_FIELDS

_FILTERS = 'Metadata filters, e.g. {"company": "Apple", "fiscal_year": 2023, "fiscal_quarter": [2, 3]}; fields: ' + (
    ", ".join(FILTER_FIELDS)
)


class TextPart(BaseModel):
    type: Literal["text"] = Field(
        description="Only text parts: the service answers from documents, not images or audio"
    )
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] = Field(description="A string, or a list of text parts (joined)")

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)

    def turn(self) -> dict:
        return {"role": self.role, "content": self.text}


class Citation(BaseModel):
    index: int = Field(description="The [n] the answer uses for this source")
    file: str
    page: int = Field(description="1-based page number")
    score: float
    text: str


class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Timings(BaseModel):
    retrieve_ms: float
    generate_ms: float
    check_ms: float = Field(description="The figures' check, after the last token")
    total_ms: float


class FigureCheckInfo(BaseModel):
    text: str = Field(description="The figure as the answer writes it")
    kind: Literal["amount", "number", "percent", "date", "year"]
    start: int = Field(description="Offsets in the answer's own words (before the source list)")
    end: int
    status: Literal["supported", "unsupported", "cut_off"] = Field(
        description="cut_off: the answer ended inside it (finish_reason length)"
    )
    source: int | None = Field(None, description="The [n] of the source that holds it")
    file: str | None = None
    page: int | None = None
    span: str | None = Field(
        None,
        description="The table row, or the sentence of prose, of the source that holds it; for a period, the period "
        "its source's document reports on",
    )
    held_by: Literal["line", "period"] = Field(
        "line", description="period: a period the answer names, found in the metadata of its source's document"
    )
    cited: bool = Field(False, description="The answer cites the source that holds it")
    derived_from: list[str] = Field(
        default_factory=list,
        description="The figures of the answer it is computed from (the change between two, the one's share of the "
        "other, or the parts of a total), when no source's line holds it",
    )
    why: Why | None = Field(
        None,
        description="For an unsupported figure, the rule that found it so: "
        + "; ".join(f"{code}: {words}" for code, words in WHY.items()),
    )


class FigureSummary(BaseModel):
    figures: int
    supported: int
    unsupported: int
    cut_off: int
    unknown_citations: list[int] = Field(description="[n] marks of the answer that point at no source")
    refused: bool = Field(description="answers.unsupported_figures is refuse and the answer was withheld")


class RetrievalInfo(BaseModel):
    mode: RetrievalMode
    filters: dict[str, Any] = Field(description="Filters applied: the request's own and those read from the question")
    boosts: dict[str, Any] = Field(
        description="Uncertain mentions (a year with no company, an initialism) that raised matching chunks"
    )
    matched: list[str] = Field(description="What the question named that the filters and boosts came from")
    widened: dict[str, Any] = Field(
        default_factory=dict,
        description="Filters read from the question that were "
        "dropped because the best passage inside them scored far below the best outside",
    )
    timings_ms: dict[str, float] = Field(description="The retriever's stages: filter, embed, dense, bm25, rerank, rank")
    index_version: str = Field(description="The index version searched: every source of one answer comes from one")


class RetrievalOptions(BaseModel):
    """Search options shared by /query and chat completions (there as extra body fields)."""

    top_k: int | None = Field(None, gt=0, description="Chunks to retrieve (default from config)")
    file_glob: str | None = Field(None, description="Only chunks from files matching this glob, e.g. '*AAPL*'")
    filters: dict[str, Any] | None = Field(None, description=_FILTERS)
    retrieval_mode: RetrievalMode | None = Field(None, description="Default: the config's retrieval.mode")
    auto_filters: bool | None = Field(
        None, description="Turn companies, tickers, forms and periods the question names into filters (default: config)"
    )
    collection: str | None = Field(
        None,
        max_length=64,
        description="The collection to answer from (default: the "
        "service's default; in chat completions a model naming a collection also selects it)",
    )


class QueryRequest(RetrievalOptions):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1)
    history: list[ChatMessage] = Field(default_factory=list, description="Earlier turns, oldest first")
    max_tokens: int | None = Field(None, gt=0)


class QueryResponse(BaseModel):
    answer: str
    citations: list[Citation]
    checks: list[FigureCheckInfo] = Field(description="Every figure of the answer, looked for in its sources")
    figures: FigureSummary
    retrieval: RetrievalInfo
    timings: Timings
    usage: UsageInfo
    finish_reason: Literal["stop", "length"]
    model: str
    collection: str


class StreamOptions(BaseModel):
    include_usage: bool = False


# OpenAI parameters a client may send at their neutral values (some clients always do); any other value is refused.
NEUTRAL_PARAMETERS: dict[str, Any] = {
    "top_p": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": False,
    "logit_bias": {},
    "tools": [],
    "parallel_tool_calls": True,
    "store": False,
    "metadata": {},
}


class ChatCompletionRequest(RetrievalOptions):
    """OpenAI's request. Parameters the service does not support are refused by name (``unsupported``) rather than
    silently ignored; the retrieval options are extensions, passed by the openai client through extra_body."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    stop: str | list[str] | None = Field(None, description="Up to 4 sequences; the answer ends before the first")
    n: int = Field(1, ge=1, description="Only 1: one answer per request")
    temperature: float | None = Field(None, ge=0, le=2, description="Default: the config's llm.temperature")
    user: str | None = Field(None, description="Accepted and not used")

    def unsupported(self) -> list[str]:
        """Names of the parameters given that the service cannot honour."""
        names = [
            k
            for k, v in (self.model_extra or {}).items()
            if v is not None and (k not in NEUTRAL_PARAMETERS or NEUTRAL_PARAMETERS[k] != v)
        ]
        return sorted(names + (["n"] if self.n > 1 else []))

    @property
    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


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
    usage: UsageInfo
    citations: list[Citation] = Field(description="The sources the answer was grounded in")
    checks: list[FigureCheckInfo] = Field(description="Every figure of the answer, looked for in its sources")
    figures: FigureSummary
    retrieval: RetrievalInfo


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "ray-rag"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class DocumentInfo(BaseModel):
    file: str
    status: Literal["indexed", "failed", "pending"] = Field(
        description="pending: added, changed or removed since the current version; a job is making the next one"
    )
    reason: str | None = Field(
        None,
        description="Why a document failed; for a pending one, the job that will take it up or the one that failed to",
    )
    pages: int | None = None
    chunks: int | None = None
    size_bytes: int | None = None
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Company, form, period as read from the document"
    )
    note: str | None = None
    language: str | None = Field(
        None, description="zh, other (a script beyond Latin) or en (Latin script), from its first pages"
    )


class VerifySource(BaseModel):
    text: str = Field(min_length=1)
    file: str = ""
    page: int = 0


class PageRef(BaseModel):
    file: str
    page: int = Field(gt=0)


class VerifyRequest(BaseModel):
    """An answer from anywhere (your own LLM, your own RAG) and what it rests on: the sources' texts, numbered from 1
    as the answer's [n] cites them, or pages of a collection."""

    answer: str = Field(min_length=1)
    sources: list[VerifySource] | None = Field(None, description="The texts the answer was given, [1] first")
    citations: list[PageRef] | None = Field(
        None, description="Or pages of the collection, [1] first: their indexed text is the sources"
    )
    collection: str | None = Field(None, description="Where the pages are (default: the service's default)")
    finish_reason: Literal["stop", "length"] = Field("stop", description="length: a figure at the end may be cut off")
    question: str = Field(
        "", description="What the answer answers: its words say what a figure measures where the sentence does not"
    )


class VerifyResponse(BaseModel):
    checks: list[FigureCheckInfo]
    figures: FigureSummary
    sources: list[Citation] = Field(description="What was checked against, numbered as the answer cites it")
