"""The retriever and generator deployments: thin Serve wrappers around the shared core's Retriever and engines."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from typing import TypeVar

import ray
from ray import serve

from rag.batching import ContinuousBatcher
from rag.config import Settings
from rag.engines import load_engine
from rag.models import ModelThread, set_cpu_threads
from rag.retrieval import Retriever

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
    """Query embedding batched across concurrent requests, then FAISS search."""

    def __init__(self, index_dir: str, settings_json: str):
        settings = Settings.model_validate_json(settings_json)
        self._model_thread, self.retriever = _load_on_model_thread(
            "retriever", lambda num_gpus: Retriever.from_index_dir(index_dir, settings.embedding, gpu_fraction=num_gpus)
        )
        self._embed.set_max_batch_size(settings.serve.retriever.max_batch_size)
        self._embed.set_batch_wait_timeout_s(settings.serve.retriever.batch_wait_timeout_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.02)
    async def _embed(self, queries: list[str]) -> list:
        loop = asyncio.get_running_loop()
        return list(await loop.run_in_executor(self._model_thread, self.retriever.encoder.encode, queries))

    async def retrieve(self, query: str, k: int, file_glob: str | None = None) -> list[dict]:
        vector = await self._embed(query)
        hits = self.retriever.search_vectors(vector[None, :], k, file_glob)[0]
        return [asdict(h) for h in hits]

    def info(self) -> dict:
        store = self.retriever.store
        return {"chunks": len(store.chunks), "model": store.embedding_model, "device": self.retriever.encoder.device}


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
            ContinuousBatcher(self.engine, batching.max_batch_size, self._model_thread)
            if self.engine.continuous_batching
            else None
        )
        self._serve_batch.set_max_batch_size(batching.max_batch_size)
        self._serve_batch.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def _serve_batch(self, requests: list[tuple[list[dict], int]]) -> AsyncIterator[list]:
        steps = self.engine.stream_batch([r[0] for r in requests], [r[1] for r in requests])
        while True:
            # The engine is synchronous: step it on its thread so the replica keeps answering health checks.
            deltas = await asyncio.get_running_loop().run_in_executor(self._model_thread, next, steps, _END)
            if deltas is _END:
                return
            # Serve ends a caller's stream when its slot holds StopIteration; the batch runs on for the rest.
            yield [StopIteration if delta is None else delta for delta in deltas]

    async def stream(self, messages: list[dict], max_tokens: int) -> AsyncIterator[str]:
        request = (messages, max_tokens)
        deltas = self.batcher.stream(*request) if self.batcher else self._serve_batch(request)
        async for delta in deltas:
            if delta:
                yield delta

    async def complete(self, messages: list[dict], max_tokens: int) -> str:
        return "".join([delta async for delta in self.stream(messages, max_tokens)])

    def info(self) -> dict:
        gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
        info = {"model": self.engine.model_name, "device": self.engine.device, "replica": self.replica, "gpu_ids": gpus}
        if self.batcher:
            info["batching"] = asdict(self.batcher.stats)
        return info
