"""The HTTP ingress and the application graph: Ingress -> Retriever -> Generator, composed with deployment handles.

No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at runtime.

Deploy with ``rag serve --index DIR``, or the Ray way with ``serve run configs/serve.yaml``; both
build the graph with ``build_app``, from the one typed config.
"""


import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from rag.answering import AnswerPipeline, AnswerRequest
from rag.batching import DeadlineExceeded, DecodeLoopStopped
from rag.config import Settings, load_settings, resolve_api_key
from rag.decoding import Usage
from rag.filters import FilterError, parse_filters
from rag.prompts import cited_indices, source_list
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
    UsageInfo,
)

log = logging.getLogger(__name__)

app = FastAPI(title="ray-rag", description="Question answering over PDFs, with citations to file and page")


@app.exception_handler(Overloaded)
async def _overloaded(request: Request, exc: Overloaded) -> JSONResponse:
    retry_after = str(max(1, round(request.app.state.retry_after_s)))
    return JSONResponse(
        {"detail": "the service is at capacity; retry later"}, status_code=503, headers={"Retry-After": retry_after}
    )


@app.exception_handler(DeadlineExceeded)
async def _deadline(request: Request, exc: DeadlineExceeded) -> JSONResponse:
    return JSONResponse({"detail": _first_line(exc)}, status_code=504)


@app.exception_handler(DecodeLoopStopped)
async def _stopped(request: Request, exc: DecodeLoopStopped) -> JSONResponse:
    return JSONResponse({"detail": "the generator replica failed and is being replaced; retry"}, status_code=503,
                        headers={"Retry-After": str(max(1, round(request.app.state.retry_after_s)))})


def _first_line(exc: BaseException) -> str:
    """An exception's own message, without the remote traceback Ray puts around one raised in another replica."""
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.strip().splitlines()[-1] if text.strip() else type(exc).__name__


def _authorized(request: Request) -> bool:
    expected = request.app.state.api_key
    if expected is None:
        return True
    header = request.headers.get("authorization", "")
    return secrets.compare_digest(header.encode(), f"Bearer {expected}".encode())


def _check_api_key(request: Request) -> None:
    if not _authorized(request):
        raise HTTPException(status_code=401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def _citations(chunks: list[RetrievedChunk]) -> list[Citation]:
    return [Citation(index=i, file=c.file, page=c.page, score=c.score, text=c.text) for i, c in enumerate(chunks, 1)]


def _retrieval_info(found: SearchResult) -> RetrievalInfo:
    return RetrievalInfo(mode=found.mode, filters=found.filters, boosts=found.boosts, matched=found.matched,
                         timings_ms=found.timings_ms)


def _usage(usage: Usage) -> UsageInfo:
    return UsageInfo(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                     total_tokens=usage.prompt_tokens + usage.completion_tokens)


async def _prepend(first, rest: AsyncIterator) -> AsyncIterator:
    yield first
    async for item in rest:
        yield item


async def _sse(
    completion_id: str,
    created: int,
    model: str,
    deltas: AsyncIterator,
    found: SearchResult,
    include_usage: bool,
) -> AsyncIterator[str]:
    def event(delta: dict, finish: str | None = None, **extra) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **({"usage": None} if include_usage else {}),
            **extra,
        }
        return f"data: {json.dumps(body)}\n\n"

    yield event({"role": "assistant", "content": ""})
    answer, usage = "", None
    try:
        async for item in deltas:
            if isinstance(item, Usage):
                usage = item
            else:
                answer += item
                yield event({"content": item})
    except Exception as err:  # the status line has gone out: the stream ends with an error event instead
        status = 504 if isinstance(err, DeadlineExceeded) else 500
        log.warning("stream %s ended by %s", completion_id, type(err).__name__)
        yield f"data: {json.dumps({'error': {'message': _first_line(err), 'type': type(err).__name__, 'code': status}})}\n\n"
        return
    sources = source_list(answer, found.chunks)
    yield event({"content": sources}, usage.finish_reason, citations=[c.model_dump() for c in _citations(found.chunks)],
                retrieval=_retrieval_info(found).model_dump())
    if include_usage:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [], "usage": _usage(usage).model_dump()}
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"


@serve.deployment(name="Ingress")
@serve.ingress(app)
class Ingress:
    def __init__(self, retriever: DeploymentHandle, generator: DeploymentHandle, settings_json: str,
                 api_key: str | None):
        """``api_key``: resolved by build_app where the user's environment is, so it holds wherever this replica runs."""
        self.settings = Settings.model_validate_json(settings_json)
        self.retriever = retriever
        self.generator = generator
        self.pipeline = AnswerPipeline(ServeRetriever(retriever), ServeGenerator(generator))
        app.state.api_key = api_key
        app.state.retry_after_s = self.settings.serve.retry_after_s

    # ---- validation shared by both APIs -------------------------------------------------------

    def _limits(self, question: str, top_k: int | None, max_tokens: int | None, turns: list[dict]) -> tuple[int, int]:
        cfg = self.settings.serve
        if not question.strip():
            raise HTTPException(status_code=400, detail="the question is empty")
        if len(question) > cfg.max_question_chars:
            raise HTTPException(
                status_code=413, detail=f"the question has {len(question)} characters; the limit is {cfg.max_question_chars}"
            )
        if len(turns) + 1 > cfg.max_messages:
            raise HTTPException(status_code=400, detail=f"{len(turns) + 1} messages; the limit is {cfg.max_messages}")
        longest = max((len(t["content"]) for t in turns), default=0)
        if longest > cfg.max_message_chars:
            raise HTTPException(
                status_code=413, detail=f"a message has {longest} characters; the limit is {cfg.max_message_chars}"
            )
        k = top_k or cfg.top_k
        if k > cfg.max_top_k:
            raise HTTPException(status_code=400, detail=f"top_k {k} is above the limit of {cfg.max_top_k}")
        tokens = max_tokens or self.settings.llm.max_new_tokens
        if tokens > cfg.max_tokens_limit:
            raise HTTPException(status_code=400, detail=f"max_tokens {tokens} is above the limit of {cfg.max_tokens_limit}")
        return k, tokens

    def _request(self, question: str, history: list[dict], options: RetrievalOptions, max_tokens: int | None,
                 **generation) -> AnswerRequest:
        """The pipeline's request, with the limits and filters checked (400/413 naming what is wrong).

        ``generation``: AnswerRequest's stop, temperature and instructions, where the API has them."""
        instructions = generation.get("instructions", "")
        k, tokens = self._limits(question, options.top_k, max_tokens,
                                 [*history, *([{"content": instructions}] if instructions else [])])
        raw = dict(options.filters or {})
        if options.file_glob:
            raw.setdefault("file_glob", options.file_glob)
        try:
            filters = parse_filters(raw)
        except FilterError as err:
            raise HTTPException(status_code=400, detail=str(err)) from err
        return AnswerRequest(question, history, k, tokens, filters, options.retrieval_mode, options.auto_filters,
                             **generation)

    # ---- endpoints --------------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(self, request: Request, verbose: bool = False) -> JSONResponse:
        """Ready when every deployment of this application is healthy, as Serve's controller knows it: never through the
        request queues, so a busy service stays ready. Details (replicas, devices, batching) only for ``verbose`` and a
        valid key."""
        ready = await asyncio.to_thread(self._all_healthy)
        body: dict = {"status": "ready" if ready else "not ready"}
        if verbose and _authorized(request):
            for name, handle in (("retriever", self.retriever), ("generator", self.generator)):
                try:
                    body[name] = await asyncio.wait_for(handle.info.remote(), timeout=10)
                except Exception as err:  # details are best effort; readiness is decided above
                    body[name] = {"error": type(err).__name__}
        return JSONResponse(body, status_code=200 if ready else 503)

    @staticmethod
    def _all_healthy() -> bool:
        app_name = serve.get_replica_context().app_name
        status = serve.status().applications.get(app_name)
        return status is not None and all(d.status == "HEALTHY" for d in status.deployments.values())

    @app.get("/v1/models", dependencies=[Depends(_check_api_key)])
    async def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=self.settings.llm.model)])

    @app.post("/query", dependencies=[Depends(_check_api_key)])
    async def query(self, req: QueryRequest) -> QueryResponse:
        history = [m.turn() for m in req.history]
        request = self._request(req.question, history, req, req.max_tokens)
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
            usage=_usage(answer.usage),
            finish_reason=answer.usage.finish_reason,
            model=self.settings.llm.model,
        )

    @app.post("/v1/chat/completions", dependencies=[Depends(_check_api_key)])
    async def chat(self, req: ChatCompletionRequest):
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
        request = self._request(messages[-1]["content"], messages[:-1], req, req.max_completion_tokens or req.max_tokens,
                                stop=req.stops, temperature=req.temperature, instructions=instructions)
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
                choices=[Choice(message=ChoiceMessage(content=answer.text), finish_reason=answer.usage.finish_reason)],
                usage=_usage(answer.usage),
                citations=_citations(found.chunks),
                retrieval=_retrieval_info(found),
            )
        deltas = self.pipeline.stream(request, found)
        # Pull the first item before answering 200, so overload (503) and a deadline (504) are still status codes.
        first = await deltas.__anext__()
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return StreamingResponse(_sse(completion_id, created, model, _prepend(first, deltas), found, include_usage),
                                 media_type="text/event-stream")


def build_app(args: dict) -> serve.Application:
    """The application graph. ``args``: ``index`` (required), ``config`` (YAML path), ``set`` (list of overrides).

    The API key is resolved here, where the user's environment is, and handed to the ingress replica as an argument:
    not inside the settings every replica receives, and not through a runtime environment, which Ray writes to its
    logs."""
    if "index" not in args:
        raise ValueError("build_app needs args.index: the index directory to serve")
    settings = load_settings(args.get("config"), args.get("set", []))
    settings_json = settings.model_dump_json(exclude={"serve": {"api_key"}})
    cfg = settings.serve
    retriever = RetrieverDeployment.options(**cfg.retriever.serve_options()).bind(str(args["index"]), settings_json)
    generator = GeneratorDeployment.options(**cfg.generator.serve_options()).bind(settings_json)
    ingress_options = cfg.ingress.serve_options()
    ingress_options["backpressure_config"] = {"status_code": 503, "retry_after_s": cfg.retry_after_s}
    return Ingress.options(**ingress_options).bind(retriever, generator, settings_json, resolve_api_key(cfg))
