"""The retriever and generator deployments: thin Serve wrappers around the shared core's Retriever and engines."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import TypeVar

import ray
from ray import serve

from rag.answering import collect
from rag.batching import ContinuousBatcher
from rag.config import Settings
from rag.decoding import Sampling, Usage
from rag.engines import load_engine
from rag.filters import Filters
from rag.models import ModelThread, set_cpu_threads
from rag.search import RetrievedChunk, Searcher, retrieval_query
from serving.clients import request_from_payload

_END = object()
T = TypeVar("T")


def _replica_resources() -> tuple[float, float]:
    """(num_cpus, num_gpus) this replica reserved, read from Ray so the Serve config stays the only source."""
    context = ray.get_runtime_context()
    resources = context.get_assigned_resources()
    return resources.get("CPU", 1.0), resources.get("GPU", 0.0)


def _load_on_model_thread(name: str, load: Callable[[float], T]) -> tuple[ModelThread, T]:
    """A model thread for this replica, and ``load(num_gpus)`` run on it with torch's threads set to the replica's CPUs."""
    num_cpus, num_gpus = _replica_resources()
    thread = ModelThread(name)

    def run() -> T:
        set_cpu_threads(num_cpus)
        return load(num_gpus)

    return thread, thread.submit(run).result()


@serve.deployment(name="Retriever")
class RetrieverDeployment:
    """Query embedding batched across concurrent requests, then the shared search (filters, dense/BM25/hybrid, rerank)."""

    def __init__(self, index_dir: str, settings_json: str):
        settings = Settings.model_validate_json(settings_json)

        def load(num_gpus: float) -> Searcher:
            searcher = Searcher.from_index_dir(index_dir, settings, gpu_fraction=num_gpus)
            if settings.retrieval.mode != "dense":
                searcher.bm25  # built now, not on the first request
            return searcher

        self._model_thread, self.searcher = _load_on_model_thread("retriever", load)
        self._embed.set_max_batch_size(settings.serve.retriever.max_batch_size)
        self._embed.set_batch_wait_timeout_s(settings.serve.retriever.batch_wait_timeout_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.02)
    async def _embed(self, queries: list[str]) -> list:
        loop = asyncio.get_running_loop()
        return list(await loop.run_in_executor(self._model_thread, self.searcher.encoder.encode, queries))

    async def search(self, request: dict) -> dict:
        """``request``: an AnswerRequest's fields (serving.clients.request_payload); returns a SearchResult's."""
        mode = request["mode"] or self.searcher.cfg.mode
        started = time.perf_counter()
        vector = await self._embed(retrieval_query(request["question"], request["history"])) if mode != "bm25" else None
        embed_ms = (time.perf_counter() - started) * 1000
        found = self.searcher.search(
            request["question"], request["top_k"], request["history"], Filters.model_validate(request["filters"]),
            mode, request["auto_filters"], vector=vector,
        )
        if vector is not None:
            found.timings_ms = {"embed_ms": round(embed_ms, 2), **found.timings_ms}
            found.timings_ms["total_ms"] = round(found.timings_ms["total_ms"] + embed_ms, 2)
        return asdict(found)

    def info(self) -> dict:
        store = self.searcher.store
        return {"chunks": len(store.chunks), "files": len(store.files), "model": store.embedding_model,
                "device": self.searcher.encoder.device, "mode": self.searcher.cfg.mode}


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
            ContinuousBatcher(self.engine, batching.max_batch_size, batching.prefill_tokens, batching.deadline_s,
                              self._model_thread)
            if self.engine.continuous_batching
            else None
        )
        self._serve_batch.set_max_batch_size(batching.max_batch_size)
        self._serve_batch.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)

    def check_health(self) -> None:
        """Serve's periodic probe: a replica whose decode loop has died is replaced, not left holding requests."""
        if self.batcher:
            self.batcher.check()

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def _serve_batch(self, requests: list[tuple[list[dict], Sampling]]) -> AsyncIterator[list]:
        steps = self.engine.stream_batch([r[0] for r in requests], [r[1] for r in requests])
        while True:
            # The engine is synchronous: step it on its thread so the replica keeps answering health checks.
            deltas = await asyncio.get_running_loop().run_in_executor(self._model_thread, next, steps, _END)
            if deltas is _END:
                return
            # Serve ends a caller's stream when its slot holds StopIteration; the batch runs on for the rest.
            yield [StopIteration if delta is None else delta for delta in deltas]

    async def _fixed_batch(self, messages: list[dict], sampling: Sampling) -> AsyncIterator[str | Usage]:
        parts = []
        async for delta in self._serve_batch((messages, sampling)):
            parts.append(delta)
            yield delta
        yield self.engine.usage(messages, "".join(parts), sampling)

    async def stream(self, payload: dict, chunks: list[dict]) -> AsyncIterator[str | Usage]:
        """The answer (text deltas, then its Usage) to an AnswerRequest's fields grounded in ``chunks`` (RetrievedChunk
        fields); the prompt is fitted to the budget here, where the model's tokenizer is."""
        request = request_from_payload(payload)
        # Counting tokens is tokenizer work: on a worker thread, so this replica's event loop goes on streaming.
        messages = await asyncio.get_running_loop().run_in_executor(
            None, self.engine.prompt, request.question, [RetrievedChunk(**c) for c in chunks], request.history,
            request.instructions,
        )
        if self.batcher:
            deltas = self.batcher.stream(messages, request.sampling)
        else:
            deltas = self._fixed_batch(messages, request.sampling)
        async for item in deltas:
            if item:
                yield item

    async def complete(self, payload: dict, chunks: list[dict]) -> tuple[str, Usage]:
        return await collect(self.stream(payload, chunks))

    def info(self) -> dict:
        gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
        info = {"model": self.engine.model_name, "device": self.engine.device, "replica": self.replica, "gpu_ids": gpus}
        if self.batcher:
            info["batching"] = asdict(self.batcher.stats)
        return info
