"""The retriever and generator deployments: the shared core's search and engines in Serve replicas, with the query
embeddings batched across requests, each collection followed to its current index version, and answers
continuously batched."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import Any, TypeVar

import numpy as np
import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

from rag.answering import collect
from rag.config import BatchedDeploymentSettings, Settings
from rag.devices import set_cpu_threads
from rag.embedding import TextEncoder
from rag.llm.batching import ContinuousBatcher
from rag.llm.engines import Deltas, load_engine
from rag.model_thread import ModelThread
from rag.search import EmbeddedQuery, Searcher
from rag.store.errors import DamagedVersion
from rag.store.versions import IndexDir, NoIndex, open_index
from rag.tuning import with_tuning
from rag.types import AnswerRequest, RetrievedChunk, Sampling, SearchResult, Usage
from serving.telemetry import GeneratorMetrics, RetrieverMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")


def _replica_resources() -> tuple[float, float]:
    """(num_cpus, num_gpus) this replica reserved, read from Ray so the Serve config stays the only source."""
    context = ray.get_runtime_context()
    resources = context.get_assigned_resources()
    return resources.get("CPU", 1.0), resources.get("GPU", 0.0)


def _load_on_model_thread(name: str, load: Callable[[float], T]) -> tuple[ModelThread, T]:
    """A model thread for this replica, and ``load(num_gpus)`` run on it with torch's threads set to the replica's
    CPUs."""
    num_cpus, num_gpus = _replica_resources()
    thread = ModelThread(name)

    def run() -> T:
        set_cpu_threads(num_cpus)
        return load(num_gpus)

    return thread, thread.submit(run).result()


def _size_batches(batched: Any, cfg: BatchedDeploymentSettings) -> None:
    """Serve's batching of a ``@serve.batch`` method sized by the replica's config: the decorator's own defaults
    stand until this runs in the constructor."""
    batched.set_max_batch_size(cfg.max_batch_size)
    batched.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)


def _bm25_opened(searcher: Searcher) -> Searcher:
    """The searcher with its BM25 opened now where any of its modes reads it, not by the first request that does."""
    if {searcher.cfg.mode, *searcher.cfg.mode_by_language.values()} != {"dense"}:
        searcher.bm25()
    return searcher


@serve.deployment(name="Retriever")
class RetrieverDeployment:
    """Every collection's search: query embedding batched across concurrent requests, then the shared search (filters,
    dense/BM25/hybrid, rerank).

    Each collection is served at its index's current version and followed there (rag.store.versions): every
    ``serve.reload_interval_s`` the replica reads the version pointers, loads a new version beside the one
    serving and swaps it in; requests already running finish on the version they started with. It reports
    what it serves to ``registry`` (the Collections deployment), for /v1/collections."""

    def __init__(self, settings_json: str, registry: DeploymentHandle | None = None):
        self.settings = Settings.model_validate_json(settings_json)
        self.registry = registry
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.searchers: dict[str, Searcher | None] = {}  # None: no version yet, or an empty one
        self.loaded: dict[str, str | None] = {}  # the version each collection serves
        self._unloadable: dict[
            str, str | None
        ] = {}  # collection -> a version that failed to load, until the pointer moves
        self.metrics = RetrieverMetrics()
        num_cpus, self._num_gpus = _replica_resources()
        self._model_thread = ModelThread("retriever")
        self._model_thread.submit(set_cpu_threads, num_cpus).result()
        for name in self.settings.serve.collections:
            self.loaded[name], self.searchers[name] = self._load(name)
        _size_batches(self._embed, self.settings.serve.retriever)
        # Serve runs the constructor on the replica's event loop: the follower lives as long as the replica.
        self._follower = asyncio.get_running_loop().create_task(self._follow(self.settings.serve.reload_interval_s))

    def _load(self, name: str) -> tuple[str | None, Searcher | None]:
        """The collection's current version and a searcher over it, checked, with its BM25 built now rather than on
        the first request; no searcher while it has no version or an empty one. A query encoder already loaded for the
        same model is shared, and so are the segments the version it serves shares with the new one."""
        serving = self.searchers.get(name)
        try:
            store = open_index(self.settings.serve.collections[name].index, serving.store if serving else None)
        except NoIndex:
            return None, None
        if not len(store.chunks):
            return store.version, None
        encoders = [e for s in self.searchers.values() if s is not None for e in s.encoders]
        searcher = self._model_thread.submit(Searcher.over, store, self.settings, self._num_gpus, encoders).result()
        return store.version, _bm25_opened(searcher)  # while the old version still answers

    async def _follow(self, interval_s: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            for name, collection in self.settings.serve.collections.items():
                current = await loop.run_in_executor(None, IndexDir(collection.index).current_name)
                if current in (self.loaded[name], self._unloadable.get(name)):
                    continue
                started = time.perf_counter()
                try:
                    version, searcher = await loop.run_in_executor(None, self._load, name)
                except DamagedVersion as err:  # said in one line: the file and the way out
                    log.error("collection %s: %s; still serving %s", name, err, self.loaded[name])
                    self._unloadable[name] = current
                    continue
                except Exception:  # a broken version must not take the serving one down with it
                    log.exception(
                        "collection %s: could not load version %s; still serving %s", name, current, self.loaded[name]
                    )
                    self._unloadable[name] = current
                    continue
                old = self.loaded[name]
                self.loaded[name], self.searchers[name] = version, searcher
                log.info(
                    "collection %s: now serving version %s (was %s; loaded in %.1f s)",
                    name,
                    version,
                    old,
                    time.perf_counter() - started,
                )
            for name, searcher in list(self.searchers.items()):
                if searcher is not None:  # `rag tune` run while the collection is served
                    self.searchers[name] = await loop.run_in_executor(None, self._retuned, name, searcher)
            for name, searcher in self.searchers.items():  # every round: a gauge is exported as last set
                self.metrics.serving(name, self.loaded[name], len(searcher.store.chunks) if searcher else 0)
            if self.registry is not None:
                try:
                    await self.registry.report.remote(self.replica, dict(self.loaded))
                except Exception as err:  # the registry restarting costs a report, not the follower
                    log.warning("could not report versions: %r", err)
            await asyncio.sleep(interval_s)

    def _retuned(self, name: str, searcher: Searcher) -> Searcher:
        """The collection's searcher with the retrieval settings its tuning file now gives (rag.tuning)."""
        try:
            cfg = with_tuning(self.settings.retrieval, self.settings.serve.collections[name].index)
        except ValueError as err:
            log.error("collection %s: %s; searching as before", name, err)
            return searcher
        if cfg == searcher.cfg:
            return searcher
        log.info("collection %s: now searched with its tuned retrieval settings (modes %s)", name, cfg.mode_by_language)
        return _bm25_opened(searcher.retuned(cfg))  # a tuning may bring BM25 to a collection searched dense

    @serve.batch()
    async def _embed(self, queries: list[tuple[TextEncoder, str]]) -> list[np.ndarray]:
        """Queries to vectors, each by its collection's encoder (collections indexed with one model share a pass)."""
        loop = asyncio.get_running_loop()
        vectors: list[np.ndarray] = [np.empty(0)] * len(queries)
        for encoder in {id(e): e for e, _ in queries}.values():
            mine = [i for i, (e, _) in enumerate(queries) if e is encoder]
            questions = [queries[i][1] for i in mine]
            encoded = await loop.run_in_executor(
                self._model_thread, functools.partial(encoder.encode, questions, query=True)
            )
            for i, vector in zip(mine, encoded, strict=True):
                vectors[i] = vector
        return vectors

    async def search(self, request: AnswerRequest) -> SearchResult:
        name = request.collection or self.settings.serve.default()
        searcher = self.searchers[name]  # one version for the whole request, whatever is swapped in meanwhile
        if searcher is None:
            raise NoIndex(f"collection {name!r} has no documents indexed yet")
        mode = request.mode or searcher.mode_for(request.question)
        started = time.perf_counter()
        embedded = None
        if mode != "bm25":
            query = request.retrieval_query
            encoder = searcher.encoder_for(request.question)  # a Chinese question's, where the collection has both
            embedded = EmbeddedQuery(query, await self._embed((encoder, query)))
        embed_ms = (time.perf_counter() - started) * 1000
        found = searcher.search(
            request.question,
            request.top_k,
            request.history,
            request.filters,
            mode,
            request.auto_filters,
            embedded=embedded,
        )
        if embedded is not None:
            found.timings_ms = {"embed_ms": round(embed_ms, 2), **found.timings_ms}
            found.timings_ms["total_ms"] = round(found.timings_ms["total_ms"] + embed_ms, 2)
        self.metrics.latency.observe(time.perf_counter() - started, tags={"collection": name})
        return found

    def pages(self, collection: str, refs: list[tuple[str, int]]) -> list[RetrievedChunk | None]:
        """Pages of a collection's serving version as sources (None for one it does not hold), for /v1/verify."""
        searcher = self.searchers[collection]
        if searcher is None:
            raise NoIndex(f"collection {collection!r} has no documents indexed yet")
        return [searcher.page(file, page) for file, page in refs]

    def info(self) -> dict:
        collections = {
            name: {
                "version": self.loaded[name],
                "chunks": len(s.store.chunks),
                "files": len(s.store.files),
                "model": s.store.embedding_model,
                "device": s.encoder.device,
                "mode_by_language": s.cfg.mode_by_language,
            }
            if s
            else {"version": self.loaded[name]}
            for name, s in self.searchers.items()
        }
        return {"replica": self.replica, "mode": self.settings.retrieval.mode, "collections": collections}


@serve.deployment(name="Generator")
class GeneratorDeployment:
    """The LLM. Concurrent requests share each forward pass, and each streams its own answer out of it."""

    def __init__(self, settings_json: str):
        settings = Settings.model_validate_json(settings_json)
        self._model_thread, self.engine = _load_on_model_thread(
            "generator", lambda num_gpus: load_engine(settings.llm, num_gpus)
        )
        self.replica = f"{ray.get_runtime_context().get_node_id()[:8]}:{os.getpid()}"
        batching = settings.serve.generator
        # An engine that decodes step by step takes new requests between steps, its loop on the model's thread;
        # the others get Serve's fixed batches.
        self.batcher = (
            ContinuousBatcher(
                self.engine, batching.max_batch_size, batching.prefill_tokens, batching.deadline_s, self._model_thread
            )
            if self.engine.continuous_batching
            else None
        )
        _size_batches(self._serve_batch, batching)  # type: ignore[misc]  # serve.batch's stubs: see _serve_batch
        self.metrics = GeneratorMetrics()
        if self.batcher:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_batching(self.batcher))

    async def _sample_batching(self, batcher: ContinuousBatcher) -> None:
        """The decode batch's size and queue as gauges, every second: the loop itself never waits on metrics."""
        while True:
            self.metrics.batching(batcher.stats.running, batcher.stats.waiting)
            await asyncio.sleep(1)

    def check_health(self) -> None:
        """Serve's periodic probe: a replica whose decode loop has died is replaced, not left holding requests."""
        if self.batcher:
            self.batcher.check()

    # serve.batch's annotations cover methods that return lists, not async generators that stream them (which it
    # supports): mypy is told so here and where the method is called.
    @serve.batch()  # type: ignore[arg-type]
    async def _serve_batch(  # type: ignore[misc]
        self, requests: list[tuple[list[dict], Sampling]]
    ) -> AsyncIterator[list]:
        steps = self.engine.stream_batch([r[0] for r in requests], [r[1] for r in requests])
        while True:
            # The engine is synchronous: step it on its thread so the replica keeps answering health checks.
            deltas: Deltas | None = await asyncio.get_running_loop().run_in_executor(
                self._model_thread, next, steps, None
            )
            if deltas is None:  # the batch has finished
                return
            # Serve ends a caller's stream when its slot holds StopIteration; the batch runs on for the rest.
            yield [StopIteration if delta is None else delta for delta in deltas]

    async def _fixed_batch(self, messages: list[dict], sampling: Sampling) -> AsyncIterator[str | Usage]:
        parts = []
        async for delta in self._serve_batch((messages, sampling)):  # type: ignore[misc, call-arg]
            parts.append(delta)
            yield delta
        yield self.engine.usage(messages, "".join(parts), sampling)

    async def stream(self, request: AnswerRequest, chunks: list[RetrievedChunk]) -> AsyncIterator[str | Usage]:
        """The answer (text deltas, then its Usage) to ``request`` grounded in ``chunks``; the prompt is fitted to the
        budget here, where the model's tokenizer is."""
        started = time.perf_counter()
        # Counting tokens is tokenizer work: on a worker thread, so this replica's event loop goes on streaming.
        messages = await asyncio.get_running_loop().run_in_executor(
            None,
            self.engine.prompt,
            request.question,
            chunks,
            request.history,
            request.instructions,
        )
        if self.batcher:
            deltas = self.batcher.stream(messages, request.sampling)
        else:
            deltas = self._fixed_batch(messages, request.sampling)
        last = None
        async for item in deltas:
            if isinstance(item, Usage):
                if item.completion_tokens:  # a counter takes only increments above zero
                    self.metrics.tokens.inc(item.completion_tokens)
            elif item:
                now = time.perf_counter()
                if last is None:
                    self.metrics.ttft.observe(now - started)
                else:
                    self.metrics.token_gap.observe(now - last)
                last = now
            if item:
                yield item

    async def complete(self, request: AnswerRequest, chunks: list[RetrievedChunk]) -> tuple[str, Usage]:
        return await collect(self.stream(request, chunks))

    def info(self) -> dict:
        gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
        info: dict[str, Any] = {
            "model": self.engine.model_name,
            "device": self.engine.device,
            "replica": self.replica,
            "gpu_ids": gpus,
        }
        if self.batcher:
            info["batching"] = asdict(self.batcher.stats)
        return info
