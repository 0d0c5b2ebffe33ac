"""The HTTP ingress: the page, the query and OpenAI chat APIs, and the collections API, routed to the retriever,
generator and collections deployments (serving.app builds the graph).

It only routes, so its replica loads no model and no index: what it imports (rag.types, rag.answering, serving.*)
stays clear of torch and faiss (tests/test_serving.py checks the running replica).

No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at runtime.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import UploadFile as StarletteUpload

from rag.answering import AnswerPipeline
from rag.config import Settings
from rag.figures import check_figures
from rag.filters import FilterError, parse_filters
from rag.prompts import cited_indices
from rag.types import AnswerRequest, RetrievedChunk
from serving.auth import authorized, check_api_key, key_scope
from serving.clients import ServeGenerator, ServeRetriever
from serving.errors import install_handlers
from serving.middleware import HeaderLimit, RequestLog
from serving.openai import (
    ChatStream,
    chat_completion,
    citations,
    conversation,
    figure_checks,
    figure_summary,
    retrieval_info,
    usage_info,
)
from serving.refusals import raise_refused
from serving.schemas import (
    ChatCompletionRequest,
    DocumentInfo,
    ModelCard,
    ModelList,
    QueryRequest,
    QueryResponse,
    RetrievalOptions,
    Timings,
    VerifyRequest,
    VerifyResponse,
)

_MAX_FILES_PER_UPLOAD = 20

app = FastAPI(title="ray-rag", description="Question answering over PDFs, with citations to file and page")
# The page for people (serving/static): plain files, served by the ingress beside the API.
_STATIC = Path(__file__).resolve().parent / "static"
app.mount("/static", StaticFiles(directory=_STATIC), name="static")
app.add_middleware(HeaderLimit)
app.add_middleware(RequestLog)  # added last, so outermost: a refused request gets its line too
install_handlers(app)


async def _prepend(first, rest: AsyncIterator) -> AsyncIterator:
    yield first
    async for item in rest:
        yield item


@serve.deployment(name="Ingress")
@serve.ingress(app)
class Ingress:
    def __init__(
        self,
        retriever: DeploymentHandle,
        generator: DeploymentHandle,
        collections: DeploymentHandle,
        settings_json: str,
        keys: dict[str, list[str] | None],
    ):
        """``keys``: every accepted bearer token and the collections it reaches (rag.config.resolve_keys), resolved by
        build_app where the user's environment is, so they hold wherever this replica runs."""
        self.settings = Settings.model_validate_json(settings_json)
        self.retriever = retriever
        self.generator = generator
        self.collections = collections
        self.pipeline = AnswerPipeline(
            ServeRetriever(retriever), ServeGenerator(generator), self.settings.answers.unsupported_figures
        )
        app.state.keys = keys
        app.state.retry_after_s = self.settings.serve.retry_after_s

    # ---- collections a request may reach ---------------------------------------------------------

    def _visible(self, request: Request) -> list[str]:
        scope = key_scope(request)
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
                status_code=413,
                detail=f"the question has {len(question)} characters; the limit is {cfg.max_question_chars}",
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
            raise HTTPException(
                status_code=400, detail=f"max_tokens {tokens} is above the limit of {cfg.max_tokens_limit}"
            )
        return k, tokens

    def _request(
        self,
        question: str,
        history: list[dict],
        options: RetrievalOptions,
        max_tokens: int | None,
        collection: str,
        **generation,
    ) -> AnswerRequest:
        """The pipeline's request, with the limits and filters checked (400/413 naming what is wrong).

        ``generation``: AnswerRequest's stop, temperature and instructions, where the API has them."""
        instructions = generation.get("instructions", "")
        k, tokens = self._limits(
            question, options.top_k, max_tokens, [*history, *([{"content": instructions}] if instructions else [])]
        )
        raw = dict(options.filters or {})
        if options.file_glob:
            raw.setdefault("file_glob", options.file_glob)
        try:
            filters = parse_filters(raw)
        except FilterError as err:
            raise HTTPException(status_code=400, detail=str(err)) from err
        return AnswerRequest(
            question,
            history,
            k,
            tokens,
            filters,
            options.retrieval_mode,
            options.auto_filters,
            collection=collection,
            **generation,
        )

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
        if verbose and authorized(request):
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

    @app.get("/v1/models", dependencies=[Depends(check_api_key)])
    async def models(self, request: Request) -> ModelList:
        """The collections this key may read: a chat completion's ``model`` names one (others get the default)."""
        return ModelList(data=[ModelCard(id=name) for name in self._visible(request)])

    # ---- collections and their documents ---------------------------------------------------------

    @app.get("/v1/collections", dependencies=[Depends(check_api_key)])
    async def list_collections(self, request: Request) -> dict:
        """Each collection the key may read: its current version, documents, chunks, the version each retriever
        replica serves, and the jobs under way."""
        return {"object": "list", "data": await self.collections.overview.remote(self._visible(request))}

    @app.get("/v1/collections/{name}", dependencies=[Depends(check_api_key)])
    async def get_collection(self, name: str, request: Request) -> dict:
        return (await self.collections.overview.remote([self._collection(request, name)]))[0]

    @app.get("/v1/collections/{name}/documents", dependencies=[Depends(check_api_key)])
    async def list_documents(self, name: str, request: Request) -> dict:
        documents = await self.collections.documents.remote(self._collection(request, name))
        return {"object": "list", "data": [DocumentInfo(**d) for d in documents]}

    @app.post("/v1/collections/{name}/documents", dependencies=[Depends(check_api_key)], status_code=202)
    async def add_documents(self, name: str, request: Request) -> dict:
        """Multipart upload of one or more PDFs (fields named ``files``); 202 with the job that will index them."""
        name = self._collection(request, name)
        cfg = self.settings.serve
        # Refused before the body is read when it cannot fit: the form parser would otherwise spool it all to disk.
        # Each file's own size is checked where it is stored (Collections.add).
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > cfg.max_upload_bytes * _MAX_FILES_PER_UPLOAD + 2**20:
            raise HTTPException(
                status_code=413,
                detail=f"the upload has {int(length) / 2**20:.0f} MB; the limit is "
                f"{cfg.max_upload_mb:g} MB a file, {_MAX_FILES_PER_UPLOAD} files a request",
            )
        # A malformed form, or one with too many parts, is a 400 from Starlette itself.
        form = await request.form(max_files=_MAX_FILES_PER_UPLOAD, max_fields=_MAX_FILES_PER_UPLOAD)
        uploads = []
        for item in form.getlist("files"):
            if not isinstance(item, StarletteUpload):
                raise HTTPException(status_code=400, detail="the 'files' fields must be files")
            uploads.append((item.filename or "", await item.read()))
        return raise_refused(await self.collections.add.remote(name, uploads))

    @app.delete("/v1/collections/{name}/documents/{file:path}", dependencies=[Depends(check_api_key)], status_code=202)
    async def remove_document(self, name: str, file: str, request: Request) -> dict:
        return raise_refused(await self.collections.remove.remote(self._collection(request, name), file))

    @app.post("/v1/collections/{name}/reindex", dependencies=[Depends(check_api_key)], status_code=202)
    async def reindex(self, name: str, request: Request) -> dict:
        """A job over the collection's whole folder: documents whose job failed are taken up again."""
        return raise_refused(await self.collections.reindex.remote(self._collection(request, name)))

    @app.get("/v1/collections/{name}/documents/{file:path}/pdf", dependencies=[Depends(check_api_key)])
    async def document_pdf(self, name: str, file: str, request: Request) -> FileResponse:
        """The document itself, for the browser's PDF viewer (``#page=N``): only a name the folder listing holds."""
        path = raise_refused(await self.collections.document_path.remote(self._collection(request, name), file))
        return FileResponse(
            path, media_type="application/pdf", filename=Path(path).name, content_disposition_type="inline"
        )

    @app.get("/v1/jobs/{job_id}", dependencies=[Depends(check_api_key)])
    async def get_job(self, job_id: str, request: Request) -> dict:
        job = raise_refused(await self.collections.job.remote(job_id))
        self._collection(request, job["collection"])  # a job of a collection beyond the key's reach does not exist
        return job

    @app.post("/query", dependencies=[Depends(check_api_key)])
    async def query(self, req: QueryRequest, http: Request) -> QueryResponse:
        history = [m.turn() for m in req.history]
        request = self._request(req.question, history, req, req.max_tokens, self._collection(http, req.collection))
        answer = await self.pipeline.answer(request)
        http.state.log = {
            "collection": request.collection,
            "index_version": answer.search.version,
            "retrieve_ms": round(answer.search_ms, 1),
            "generate_ms": round(answer.generate_ms, 1),
            "prompt_tokens": answer.usage.prompt_tokens,
            "completion_tokens": answer.usage.completion_tokens,
        }
        cited = set(cited_indices(answer.raw, len(answer.chunks)))
        return QueryResponse(
            answer=answer.text,
            # What the answer cited first, then the rest of what it was grounded in.
            citations=sorted(citations(answer.chunks), key=lambda c: c.index not in cited),
            checks=figure_checks(answer.figures),
            figures=figure_summary(answer.figures),
            retrieval=retrieval_info(answer.search),
            timings=Timings(
                retrieve_ms=answer.search_ms,
                generate_ms=answer.generate_ms,
                check_ms=answer.check_ms,
                total_ms=answer.search_ms + answer.generate_ms + answer.check_ms,
            ),
            usage=usage_info(answer.usage),
            finish_reason=answer.usage.finish_reason,
            model=self.settings.llm.model,
            collection=request.collection,
        )

    @app.post("/v1/chat/completions", dependencies=[Depends(check_api_key)])
    async def chat(self, req: ChatCompletionRequest, http: Request):
        messages, instructions = conversation(req)
        # The collection: the extra body field, else a model name that is one, else the default.
        named = req.collection or (req.model if req.model in self.settings.serve.collections else None)
        request = self._request(
            messages[-1]["content"],
            messages[:-1],
            req,
            req.max_completion_tokens or req.max_tokens,
            self._collection(http, named),
            stop=req.stops,
            temperature=req.temperature,
            instructions=instructions,
        )
        completion_id, created, model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), self.settings.llm.model
        if not req.stream:
            answer = await self.pipeline.answer(request)
            http.state.log = {"collection": request.collection, "index_version": answer.search.version, "stream": False}
            return chat_completion(completion_id, created, model, answer)
        found = await self.pipeline.search(request)
        http.state.log = {"collection": request.collection, "index_version": found.version, "stream": True}
        items = self.pipeline.stream(request, found)
        # Pull the first item before answering 200, so overload (503) and a deadline (504) are still status codes.
        first = await items.__anext__()
        stream = ChatStream(
            completion_id, created, model, bool(req.stream_options and req.stream_options.include_usage)
        )
        return StreamingResponse(stream.events(_prepend(first, items), found), media_type="text/event-stream")

    @app.post("/v1/verify", dependencies=[Depends(check_api_key)])
    async def verify(self, req: VerifyRequest, http: Request) -> VerifyResponse:
        """The figure checks of an answer written anywhere, against the texts it was given or pages of a collection."""
        if (req.sources is None) == (req.citations is None):
            raise HTTPException(status_code=400, detail="give either sources (texts) or citations (file and page)")
        cfg = self.settings.serve
        for name, text, limit in (
            ("answer", req.answer, cfg.max_message_chars),
            ("question", req.question, cfg.max_question_chars),
        ):
            if len(text) > limit:
                raise HTTPException(
                    status_code=413, detail=f"the {name} has {len(text)} characters; the limit is {limit}"
                )
        given = len(req.sources or req.citations or [])
        if not 0 < given <= self.settings.serve.max_top_k:
            raise HTTPException(status_code=400, detail=f"{given} sources; give 1 to {self.settings.serve.max_top_k}")
        sources = await self._verify_sources(req, http)
        cited = cited_indices(req.answer, len(sources))
        report = check_figures(req.answer, sources, cited, req.finish_reason, req.question)
        return VerifyResponse(checks=figure_checks(report), figures=figure_summary(report), sources=citations(sources))

    async def _verify_sources(self, req: VerifyRequest, http: Request) -> list[RetrievedChunk]:
        if req.sources is not None:
            return [RetrievedChunk(f"source-{i}", s.file, s.page, 0.0, s.text) for i, s in enumerate(req.sources, 1)]
        refs = [(c.file, c.page) for c in req.citations or []]
        pages = await self.retriever.pages.remote(self._collection(http, req.collection), refs)
        missing = [f"{file} p. {page}" for (file, page), found in zip(refs, pages, strict=True) if found is None]
        if missing:
            raise HTTPException(status_code=404, detail=f"not in the collection: {'; '.join(missing)}")
        return pages
