"""The HTTP ingress and the application graph: Ingress -> Retriever -> Generator, composed with deployment handles.

No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at runtime.

Deploy with ``rag serve --index DIR``, or the Ray way with ``serve run configs/serve.yaml``; both
build the graph with ``build_app``, from the one typed config.
"""


import json
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from rag.answering import AnswerPipeline, AnswerRequest
from rag.config import Settings, load_settings
from rag.filters import FilterError, parse_filters
from rag.prompts import cited_indices, with_source_list
from rag.search import RetrievedChunk, SearchResult
from serving.clients import Overloaded, ServeGenerator, ServeRetriever
from serving.deployments import GeneratorDeployment, RetrieverDeployment
from serving.schemas import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChoiceMessage,
    Citation,
    ModelCard,
    ModelList,
    QueryRequest,
    QueryResponse,
    RetrievalInfo,
    RetrievalOptions,
    Timings,
)

app = FastAPI(title="ray-rag", description="Question answering over PDFs, with citations to file and page")


@app.exception_handler(Overloaded)
async def _overloaded(request: Request, exc: Overloaded) -> JSONResponse:
    retry_after = str(max(1, round(request.app.state.retry_after_s)))
    return JSONResponse(
        {"detail": "the service is at capacity; retry later"}, status_code=503, headers={"Retry-After": retry_after}
    )


def _check_api_key(request: Request) -> None:
    expected = request.app.state.api_key
    if expected is None:
        return
    header = request.headers.get("authorization", "")
    if not secrets.compare_digest(header.encode(), f"Bearer {expected}".encode()):
        raise HTTPException(status_code=401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def _citations(chunks: list[RetrievedChunk]) -> list[Citation]:
    return [Citation(index=i, file=c.file, page=c.page, score=c.score, text=c.text) for i, c in enumerate(chunks, 1)]


def _retrieval_info(found: SearchResult) -> RetrievalInfo:
    return RetrievalInfo(mode=found.mode, filters=found.filters, boosts=found.boosts, matched=found.matched,
                         timings_ms=found.timings_ms)


async def _sse(
    completion_id: str,
    created: int,
    model: str,
    first: str,
    deltas: AsyncIterator[str],
    found: SearchResult,
) -> AsyncIterator[str]:
    def event(delta: dict, finish: str | None = None, **extra) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    yield event({"role": "assistant", "content": first})
    answer = first
    async for delta in deltas:
        answer += delta
        yield event({"content": delta})
    sources = with_source_list(answer, found.chunks)[len(answer) :]
    yield event({"content": sources}, "stop", citations=[c.model_dump() for c in _citations(found.chunks)],
                retrieval=_retrieval_info(found).model_dump())
    yield "data: [DONE]\n\n"


@serve.deployment(name="Ingress")
@serve.ingress(app)
class Ingress:
    def __init__(self, retriever: DeploymentHandle, generator: DeploymentHandle, settings_json: str):
        self.settings = Settings.model_validate_json(settings_json)
        self.retriever = retriever
        self.generator = generator
        self.pipeline = AnswerPipeline(ServeRetriever(retriever), ServeGenerator(generator))
        app.state.api_key = os.environ.get(self.settings.serve.api_key_env) or self.settings.serve.api_key
        app.state.retry_after_s = self.settings.serve.retry_after_s

    # ---- validation shared by both APIs -------------------------------------------------------

    def _limits(self, question: str, top_k: int | None, max_tokens: int | None, turns: int) -> tuple[int, int]:
        cfg = self.settings.serve
        if not question.strip():
            raise HTTPException(status_code=400, detail="the question is empty")
        if len(question) > cfg.max_question_chars:
            raise HTTPException(
                status_code=413, detail=f"the question has {len(question)} characters; the limit is {cfg.max_question_chars}"
            )
        if turns > cfg.max_messages:
            raise HTTPException(status_code=400, detail=f"{turns} messages; the limit is {cfg.max_messages}")
        k = top_k or cfg.top_k
        if k > cfg.max_top_k:
            raise HTTPException(status_code=400, detail=f"top_k {k} is above the limit of {cfg.max_top_k}")
        tokens = max_tokens or self.settings.llm.max_new_tokens
        if tokens > cfg.max_tokens_limit:
            raise HTTPException(status_code=400, detail=f"max_tokens {tokens} is above the limit of {cfg.max_tokens_limit}")
        return k, tokens

    def _request(self, question: str, history: list[dict], options: RetrievalOptions, max_tokens: int | None,
                 turns: int) -> AnswerRequest:
        """The pipeline's request, with the limits and filters checked (400/413 naming what is wrong)."""
        k, tokens = self._limits(question, options.top_k, max_tokens, turns)
        raw = dict(options.filters or {})
        if options.file_glob:
            raw.setdefault("file_glob", options.file_glob)
        try:
            filters = parse_filters(raw)
        except FilterError as err:
            raise HTTPException(status_code=400, detail=str(err)) from err
        return AnswerRequest(question, history, k, tokens, filters, options.retrieval_mode, options.auto_filters)

    # ---- endpoints --------------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(self) -> JSONResponse:
        try:
            retriever = await self.retriever.info.remote()
            generator = await self.generator.info.remote()
        except Exception as err:  # not ready is an answer, not an error
            return JSONResponse({"status": "not ready", "reason": str(err)}, status_code=503)
        return JSONResponse({"status": "ready", "retriever": retriever, "generator": generator})

    @app.get("/v1/models", dependencies=[Depends(_check_api_key)])
    async def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=self.settings.llm.model)])

    @app.post("/query", dependencies=[Depends(_check_api_key)])
    async def query(self, req: QueryRequest) -> QueryResponse:
        history = [m.model_dump() for m in req.history]
        request = self._request(req.question, history, req, req.max_tokens, len(history) + 1)
        started = time.perf_counter()
        found = await self.pipeline.search(request)
        retrieved = time.perf_counter()
        answer = await self.pipeline.answer(request, found)
        done = time.perf_counter()
        cited = set(cited_indices(answer.raw, len(found.chunks)))
        return QueryResponse(
            answer=answer.text,
            # What the answer cited first, then the rest of what it was grounded in.
            citations=sorted(_citations(found.chunks), key=lambda c: c.index not in cited),
            retrieval=_retrieval_info(found),
            timings=Timings(
                retrieve_ms=(retrieved - started) * 1000, generate_ms=(done - retrieved) * 1000, total_ms=(done - started) * 1000
            ),
            model=self.settings.llm.model,
        )

    @app.post("/v1/chat/completions", dependencies=[Depends(_check_api_key)])
    async def chat(self, req: ChatCompletionRequest):
        messages = [m for m in req.messages if m.role != "system"]
        if not messages or messages[-1].role != "user":
            raise HTTPException(status_code=400, detail="the last message must come from the user")
        history = [m.model_dump() for m in messages[:-1]]
        request = self._request(messages[-1].content, history, req, req.max_completion_tokens or req.max_tokens,
                                len(req.messages))
        found = await self.pipeline.search(request)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        model = self.settings.llm.model
        if not req.stream:
            answer = await self.pipeline.answer(request, found)
            return ChatCompletionResponse(
                id=completion_id,
                created=created,
                model=model,
                choices=[Choice(message=ChoiceMessage(content=answer.text))],
                citations=_citations(found.chunks),
                retrieval=_retrieval_info(found),
            )
        deltas = self.pipeline.stream(request, found)
        # Pull the first token before answering 200, so overload still becomes a 503 and not a broken stream.
        try:
            first = await deltas.__anext__()
        except StopAsyncIteration:
            first = ""
        return StreamingResponse(_sse(completion_id, created, model, first, deltas, found), media_type="text/event-stream")


def build_app(args: dict) -> serve.Application:
    """The application graph. ``args``: ``index`` (required), ``config`` (YAML path), ``set`` (list of overrides)."""
    if "index" not in args:
        raise ValueError("build_app needs args.index: the index directory to serve")
    settings = load_settings(args.get("config"), args.get("set", []))
    settings_json = settings.model_dump_json()
    cfg = settings.serve
    retriever = RetrieverDeployment.options(**cfg.retriever.serve_options()).bind(str(args["index"]), settings_json)
    generator = GeneratorDeployment.options(**cfg.generator.serve_options()).bind(settings_json)
    ingress_options = cfg.ingress.serve_options()
    ingress_options["backpressure_config"] = {"status_code": 503, "retry_after_s": cfg.retry_after_s}
    return Ingress.options(**ingress_options).bind(retriever, generator, settings_json)
