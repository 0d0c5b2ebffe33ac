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
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile as StarletteUpload
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.handle import DeploymentHandle

from rag.answering import AnswerPipeline, AnswerRequest
from rag.batching import DeadlineExceeded, DecodeLoopStopped
from rag.config import Settings, load_settings, resolve_keys
from rag.decoding import Usage
from rag.filters import FilterError, parse_filters
from rag.prompts import cited_indices, source_list
from rag.search import RetrievedChunk, SearchResult
from rag.versions import NoIndex
from serving.clients import Overloaded, ServeGenerator, ServeRetriever
from serving.collections import CollectionsDeployment, NotFound, UploadRefused, raise_refused
from serving.deployments import GeneratorDeployment, RetrieverDeployment
from serving.metrics import IngressMetrics
from serving.schemas import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChoiceMessage,
    Citation,
    DocumentInfo,
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

_MAX_FILES_PER_UPLOAD = 20

app = FastAPI(title="ray-rag", description="Question answering over PDFs, with citations to file and page")
# The page for people (serving/static): plain files, served by the ingress beside the API.
_STATIC = Path(__file__).resolve().parent / "static"
app.mount("/static", StaticFiles(directory=_STATIC), name="static")


# One JSON line per request in the ingress replica's Serve log: ids, route, status, collection, stage timings and
# tokens; never the question, the documents' text or a key.
_access = logging.getLogger("ray.serve")


class _RequestLog:
    """The request's line, under the id Serve's proxy gives every request: the client's X-Request-ID, or one it made
    up, returned in the response either way. Plain ASGI, so a streamed answer and a client going away pass through
    untouched."""

    def __init__(self, inner):
        self.inner = inner
        self.metrics = IngressMetrics()  # built with the middleware stack: in the replica, on its first request

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["log"] = {}
        started, status = time.perf_counter(), 500

        async def send_and_see(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.inner(scope, receive, send_and_see)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None)
            # json.dumps quotes whatever the client sent as its id: no line can be forged into the log.
            _access.info(json.dumps({"request_id": request_id[:128], "method": scope["method"],
                                     "route": route or scope["path"], "status": status,
                                     "ms": round(seconds * 1000, 1), **state["log"]}))
            # A path no route matched is the client's text: one label for all of them keeps the series bounded.
            self.metrics.record(route or "unmatched", status, state["log"].get("collection"), seconds)


# Request headers past this are refused with 431 before any route runs (nginx's default allows 32 KB, uvicorn's h11
# 16 KB; Serve's proxy let a 1 MB header through): docs/serving.md.
MAX_HEADER_BYTES = 16 * 1024


class _HeaderLimit:
    """431 for a request whose headers together pass MAX_HEADER_BYTES: a megabyte of headers is no client's need."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            response = JSONResponse({"detail": f"the request's headers are over the limit of {MAX_HEADER_BYTES // 1024} KB"},
                                    status_code=431)
            return await response(scope, receive, send)
        return await self.inner(scope, receive, send)


app.add_middleware(_HeaderLimit)
app.add_middleware(_RequestLog)  # added last, so outermost: a refused request gets its line too


def _retry_later(request: Request, detail: str) -> JSONResponse:
    """503 with the Retry-After the service advertises: the condition passes without the client changing anything."""
    return JSONResponse({"detail": detail}, status_code=503,
                        headers={"Retry-After": str(max(1, round(request.app.state.retry_after_s)))})


@app.exception_handler(Overloaded)
async def _overloaded(request: Request, exc: Overloaded) -> JSONResponse:
    return _retry_later(request, "the service is at capacity; retry later")


@app.exception_handler(DeadlineExceeded)
async def _deadline(request: Request, exc: DeadlineExceeded) -> JSONResponse:
    return JSONResponse({"detail": _first_line(exc)}, status_code=504)


@app.exception_handler(DecodeLoopStopped)
async def _stopped(request: Request, exc: DecodeLoopStopped) -> JSONResponse:
    return _retry_later(request, "the generator replica failed and is being replaced; retry")


@app.exception_handler(RayActorError)
async def _replica_lost(request: Request, exc: RayActorError) -> JSONResponse:
    # The replica holding the request died (its node went away); Serve starts another on the nodes that are left.
    log.warning("a replica was lost under a request: %s", type(exc).__name__)
    return _retry_later(request, "a replica serving this request was lost; retry")


def _first_line(exc: BaseException) -> str:
    """An exception's own message, without the remote traceback Ray puts around one raised in another replica."""
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.strip().splitlines()[-1] if text.strip() else type(exc).__name__


@app.exception_handler(UploadRefused)
async def _refused(request: Request, exc: UploadRefused) -> JSONResponse:
    return JSONResponse({"detail": _first_line(exc)}, status_code=exc.status)


@app.exception_handler(NotFound)
async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
    return JSONResponse({"detail": _first_line(exc)}, status_code=404)


@app.exception_handler(NoIndex)
async def _empty(request: Request, exc: NoIndex) -> JSONResponse:
    return JSONResponse({"detail": _first_line(exc)}, status_code=409)


_UNKNOWN = object()


def _key_scope(request: Request):
    """The collections the request's bearer token reaches: None for all, ``_UNKNOWN`` for no valid token."""
    keys = request.app.state.keys
    if not keys:
        return None
    header = request.headers.get("authorization", "").encode()
    # Every key is compared, so the time taken says nothing about which one came close.
    matches = [scope for key, scope in keys.items() if secrets.compare_digest(header, f"Bearer {key}".encode())]
    return (None if matches[0] is None else frozenset(matches[0])) if matches else _UNKNOWN


def _authorized(request: Request) -> bool:
    return _key_scope(request) is not _UNKNOWN


def _check_api_key(request: Request) -> None:
    if not _authorized(request):
        raise HTTPException(status_code=401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def _citations(chunks: list[RetrievedChunk]) -> list[Citation]:
    return [Citation(index=i, file=c.file, page=c.page, score=c.score, text=c.text) for i, c in enumerate(chunks, 1)]


def _retrieval_info(found: SearchResult) -> RetrievalInfo:
    return RetrievalInfo(mode=found.mode, filters=found.filters, boosts=found.boosts, matched=found.matched,
                         widened=found.widened, timings_ms=found.timings_ms, index_version=found.version)


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
        status = 504 if isinstance(err, DeadlineExceeded) else 503 if isinstance(err, RayActorError) else 500
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
    def __init__(self, retriever: DeploymentHandle, generator: DeploymentHandle, collections: DeploymentHandle,
                 settings_json: str, keys: dict[str, list[str] | None]):
        """``keys``: every accepted bearer token and the collections it reaches (rag.config.resolve_keys), resolved by
        build_app where the user's environment is, so they hold wherever this replica runs."""
        self.settings = Settings.model_validate_json(settings_json)
        self.retriever = retriever
        self.generator = generator
        self.collections = collections
        self.pipeline = AnswerPipeline(ServeRetriever(retriever), ServeGenerator(generator))
        app.state.keys = keys
        app.state.retry_after_s = self.settings.serve.retry_after_s

    # ---- collections a request may reach ---------------------------------------------------------

    def _visible(self, request: Request) -> list[str]:
        scope = _key_scope(request)
        return [name for name in self.settings.serve.collections if scope is None or name in scope]

    def _collection(self, request: Request, name: str | None) -> str:
        """The collection a request names (its default when none), if its key may read it; else the same 404 as for
        a collection that does not exist, so a key learns nothing of collections beyond its reach."""
        name = name or self.settings.serve.default()
        if name not in self._visible(request):
            raise HTTPException(status_code=404, detail=f"collection {name!r} not found")
        return name

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
                 collection: str, **generation) -> AnswerRequest:
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
                             collection=collection, **generation)

    # ---- endpoints --------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def page(self) -> FileResponse:
        return FileResponse(_STATIC / "index.html")

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
    async def models(self, request: Request) -> ModelList:
        """The collections this key may read: a chat completion's ``model`` names one (others get the default)."""
        return ModelList(data=[ModelCard(id=name) for name in self._visible(request)])

    # ---- collections and their documents ---------------------------------------------------------

    @app.get("/v1/collections", dependencies=[Depends(_check_api_key)])
    async def list_collections(self, request: Request) -> dict:
        """Each collection the key may read: its current version, documents, chunks, the version each retriever
        replica serves, and the jobs under way."""
        return {"object": "list", "data": await self.collections.overview.remote(self._visible(request))}

    @app.get("/v1/collections/{name}", dependencies=[Depends(_check_api_key)])
    async def get_collection(self, name: str, request: Request) -> dict:
        return (await self.collections.overview.remote([self._collection(request, name)]))[0]

    @app.get("/v1/collections/{name}/documents", dependencies=[Depends(_check_api_key)])
    async def list_documents(self, name: str, request: Request) -> dict:
        documents = await self.collections.documents.remote(self._collection(request, name))
        return {"object": "list", "data": [DocumentInfo(**d) for d in documents]}

    @app.post("/v1/collections/{name}/documents", dependencies=[Depends(_check_api_key)], status_code=202)
    async def add_documents(self, name: str, request: Request) -> dict:
        """Multipart upload of one or more PDFs (fields named ``files``); 202 with the job that will index them."""
        name = self._collection(request, name)
        cfg = self.settings.serve
        limit = cfg.max_upload_mb * 2**20
        # Refused before the body is read when it cannot fit: the form parser would otherwise spool it all to disk.
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit * _MAX_FILES_PER_UPLOAD + 2**20:
            raise HTTPException(status_code=413, detail=f"the upload has {int(length) / 2**20:.0f} MB; the limit is "
                                f"{cfg.max_upload_mb:g} MB a file, {_MAX_FILES_PER_UPLOAD} files a request")
        # A malformed form, or one with too many parts, is a 400 from Starlette itself.
        form = await request.form(max_files=_MAX_FILES_PER_UPLOAD, max_fields=_MAX_FILES_PER_UPLOAD)
        uploads = []
        for item in form.getlist("files"):
            if not isinstance(item, StarletteUpload):
                raise HTTPException(status_code=400, detail="the 'files' fields must be files")
            if item.size is not None and item.size > limit:
                raise HTTPException(status_code=413, detail=f"{item.filename!r} is over the limit of "
                                    f"{cfg.max_upload_mb:g} MB")
            uploads.append((item.filename or "", await item.read()))
        return raise_refused(await self.collections.add.remote(name, uploads))

    @app.delete("/v1/collections/{name}/documents/{file:path}", dependencies=[Depends(_check_api_key)],
                status_code=202)
    async def remove_document(self, name: str, file: str, request: Request) -> dict:
        return raise_refused(await self.collections.remove.remote(self._collection(request, name), file))

    @app.post("/v1/collections/{name}/reindex", dependencies=[Depends(_check_api_key)], status_code=202)
    async def reindex(self, name: str, request: Request) -> dict:
        """A job over the collection's whole folder: documents whose job failed are taken up again."""
        return raise_refused(await self.collections.reindex.remote(self._collection(request, name)))

    @app.get("/v1/collections/{name}/documents/{file:path}/pdf", dependencies=[Depends(_check_api_key)])
    async def document_pdf(self, name: str, file: str, request: Request) -> FileResponse:
        """The document itself, for the browser's PDF viewer (``#page=N``): only a name the folder listing holds."""
        path = raise_refused(await self.collections.document_path.remote(self._collection(request, name), file))
        return FileResponse(path, media_type="application/pdf", filename=Path(path).name,
                            content_disposition_type="inline")

    @app.get("/v1/jobs/{job_id}", dependencies=[Depends(_check_api_key)])
    async def get_job(self, job_id: str, request: Request) -> dict:
        job = raise_refused(await self.collections.job.remote(job_id))
        self._collection(request, job["collection"])  # a job of a collection beyond the key's reach does not exist
        return job

    @app.post("/query", dependencies=[Depends(_check_api_key)])
    async def query(self, req: QueryRequest, http: Request) -> QueryResponse:
        history = [m.turn() for m in req.history]
        request = self._request(req.question, history, req, req.max_tokens, self._collection(http, req.collection))
        started = time.perf_counter()
        found = await self.pipeline.search(request)
        retrieved = time.perf_counter()
        answer = await self.pipeline.answer(request, found)
        done = time.perf_counter()
        http.state.log = {"collection": request.collection, "index_version": found.version,
                          "retrieve_ms": round((retrieved - started) * 1000, 1),
                          "generate_ms": round((done - retrieved) * 1000, 1),
                          "prompt_tokens": answer.usage.prompt_tokens, "completion_tokens": answer.usage.completion_tokens}
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
            collection=request.collection,
        )

    @app.post("/v1/chat/completions", dependencies=[Depends(_check_api_key)])
    async def chat(self, req: ChatCompletionRequest, http: Request):
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
        # The collection: the extra body field, else a model name that is one, else the default.
        named = req.collection or (req.model if req.model in self.settings.serve.collections else None)
        request = self._request(messages[-1]["content"], messages[:-1], req, req.max_completion_tokens or req.max_tokens,
                                self._collection(http, named), stop=req.stops, temperature=req.temperature,
                                instructions=instructions)
        found = await self.pipeline.search(request)
        http.state.log = {"collection": request.collection, "index_version": found.version, "stream": req.stream}
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
    """The application graph. ``args``: ``config`` (YAML path), ``set`` (list of overrides), and optionally ``index``
    (with ``docs``): a collection named default, beside those the config names.

    The API keys are resolved here, where the user's environment is, and handed to the ingress replica as an argument:
    not inside the settings every replica receives, and not through a runtime environment, which Ray writes to its
    logs."""
    overrides = list(args.get("set", []))
    if args.get("index"):
        overrides.append(f"serve.collections.default.index={json.dumps(str(args['index']))}")
        if args.get("docs"):
            overrides.append(f"serve.collections.default.docs={json.dumps(str(args['docs']))}")
    settings = load_settings(args.get("config"), overrides)
    cfg = settings.serve
    if not cfg.collections:
        raise ValueError("nothing to serve: give args.index (rag serve --index DIR) or serve.collections in the config")
    for collection in cfg.collections.values():
        # Relative to where the application is built: replicas may start in another working directory.
        collection.index = str(Path(collection.index).resolve())
        collection.docs = collection.docs and str(Path(collection.docs).resolve())
    settings_json = settings.model_dump_json(exclude={"serve": {"api_key"}})
    collections = CollectionsDeployment.bind(settings_json)
    retriever = RetrieverDeployment.options(**cfg.retriever.serve_options()).bind(settings_json, collections)
    generator = GeneratorDeployment.options(**cfg.generator.serve_options()).bind(settings_json)
    ingress_options = cfg.ingress.serve_options()
    ingress_options["backpressure_config"] = {"status_code": 503, "retry_after_s": cfg.retry_after_s}
    return Ingress.options(**ingress_options).bind(retriever, generator, collections, settings_json, resolve_keys(cfg))
