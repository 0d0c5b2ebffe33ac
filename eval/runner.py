"""Run a question set through the pipeline: in batch as a Ray Data job, or online against a running service."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, replace

import ray

from eval.datasets import Question
from eval.rows import RunRow
from rag.answering import local_pipeline
from rag.config import Settings
from rag.devices import set_cpu_threads
from rag.filters import parse_filters
from rag.llm.engines import load_engine
from rag.ray_runtime import ensure_ray, pool_size
from rag.search import Searcher
from rag.types import AnswerRequest, RetrievedChunk

log = logging.getLogger(__name__)

RETRIEVE_K = 10  # enough for recall@10; the answer is generated from the first top_k


def _stored(chunk: RetrievedChunk) -> dict:
    """A hit as its row stores it, without its document's metadata: the scores read file, page and text, and Arrow
    cannot store a document that has none (an empty struct)."""
    return {k: v for k, v in asdict(chunk).items() if k != "metadata"}


class EvalActor:
    """Holds the searcher and the LLM; retrieves a batch of questions in each mode and answers them from one."""

    def __init__(
        self,
        index_dir: str,
        settings_json: str,
        retrievers: list[str],
        answer_retriever: str,
        generate: bool,
        gpu_fraction: float,
        num_cpus: float,
    ):
        set_cpu_threads(num_cpus)
        self.settings = Settings.model_validate_json(settings_json)
        self.searcher = Searcher.from_index_dir(index_dir, self.settings, gpu_fraction=gpu_fraction)
        self.pipeline = (
            local_pipeline(
                self.searcher,
                load_engine(self.settings.llm, gpu_fraction),
                self.settings.answers.unsupported_figures,
            )
            if generate
            else None
        )
        self.retrievers, self.answer_retriever = retrievers, answer_retriever

    def __call__(self, batch: dict) -> dict:
        out: dict[str, list] = {
            "id": list(batch["id"]),
            "retrieved": [],
            "filters": [],
            "answer": [],
            "error": [],
            "retrieve_s": [],
            "generate_s": [],
            "check_s": [],
            "figures": [],
        }
        for question, filters in zip(batch["question"], batch["filters"], strict=True):
            started = time.perf_counter()
            filters = parse_filters(json.loads(filters))
            found = {
                mode: self.searcher.search(question, RETRIEVE_K, filters=filters, mode=mode) for mode in self.retrievers
            }
            out["retrieve_s"].append((time.perf_counter() - started) / len(self.retrievers))
            out["retrieved"].append({k: [_stored(c) for c in f.chunks] for k, f in found.items()})
            # JSON: Arrow would merge the rows' filter objects into one struct, adding every field to every row.
            out["filters"].append(json.dumps(found[self.answer_retriever].filters))
            answer, error, gen_started = "", "", time.perf_counter()
            check_s, figures = None, None
            if self.pipeline is not None:
                top = found[self.answer_retriever]
                request = AnswerRequest(
                    question,
                    top_k=self.settings.serve.top_k,
                    max_tokens=self.settings.llm.max_new_tokens,
                    filters=filters,
                )
                try:
                    answered = asyncio.run(
                        self.pipeline.answer(request, replace(top, chunks=top.chunks[: request.top_k]))
                    )
                    answer, check_s, figures = answered.text, answered.check_ms / 1000, answered.figures.summary
                except Exception as err:  # one failed question is a recorded row, not a failed run
                    error = f"{type(err).__name__}: {err}"
            out["answer"].append(answer)
            out["error"].append(error)
            out["generate_s"].append(time.perf_counter() - gen_started)
            out["check_s"].append(check_s)
            out["figures"].append(json.dumps(figures))
        return out


def run_batch(
    questions: Sequence[Question],
    index_dir: str,
    settings: Settings,
    retrievers: list[str],
    answer_retriever: str,
    generate: bool,
) -> list[RunRow]:
    """Every question through retrieval (each retriever) and generation, as a Ray Data job over an actor pool."""
    ensure_ray(settings.ray)
    pool = settings.eval.pool
    ds: ray.data.Dataset = ray.data.from_items(
        [{"id": q.id, "question": q.question, "filters": json.dumps(q.filters)} for q in questions]
    )
    ds = ds.map_batches(
        EvalActor,
        fn_constructor_kwargs={
            "index_dir": str(index_dir),
            "settings_json": settings.model_dump_json(),
            "retrievers": retrievers,
            "answer_retriever": answer_retriever,
            "generate": generate,
            "gpu_fraction": pool.num_gpus,
            "num_cpus": pool.num_cpus,
        },
        compute=ray.data.ActorPoolStrategy(size=pool_size(pool, ray.cluster_resources())),
        batch_size=settings.eval.batch_size,
        batch_format="pandas",
        num_gpus=pool.num_gpus,
        num_cpus=pool.num_cpus,
    )
    return [
        RunRow(
            id=row["id"],
            error=row["error"],
            answer=row["answer"],
            retrieved={mode: [RetrievedChunk(**hit) for hit in hits] for mode, hits in row["retrieved"].items()},
            filters=json.loads(row["filters"]),
            retrieve_s=row["retrieve_s"],
            generate_s=row["generate_s"],
            check_s=row["check_s"],
            figures=json.loads(row["figures"]),
        )
        for row in ds.take_all()
    ]


async def _ask(http, url: str, q: Question, k: int, headers: dict) -> RunRow:
    started = time.perf_counter()
    try:
        r = await http.post(
            f"{url}/query", json={"question": q.question, "top_k": k, "filters": q.filters}, headers=headers
        )
    except Exception as err:
        return RunRow(q.id, error=f"{type(err).__name__}: {err}", latency_s=time.perf_counter() - started)
    latency = time.perf_counter() - started
    if r.status_code != 200:
        return RunRow(q.id, error=f"HTTP {r.status_code}: {r.text[:200]}", latency_s=latency)
    data = r.json()
    retrieved = [  # the API's citations name no chunk id
        RetrievedChunk(chunk_id="", file=c["file"], page=c["page"], score=c["score"], text=c["text"])
        for c in sorted(data["citations"], key=lambda c: c["index"])
    ]
    return RunRow(
        q.id,
        answer=data["answer"],
        retrieved={data["retrieval"]["mode"]: retrieved},
        filters=data["retrieval"]["filters"],
        latency_s=latency,
        retrieve_s=data["timings"]["retrieve_ms"] / 1000,
        generate_s=data["timings"]["generate_ms"] / 1000,
        check_s=data["timings"]["check_ms"] / 1000,
        figures={k: data["figures"][k] for k in ("figures", "supported", "unsupported", "cut_off")},
    )


def run_online(questions: Sequence[Question], url: str, concurrency: int, api_key: str | None, k: int) -> list[RunRow]:
    """Questions sent to a running service, at most ``concurrency`` at a time; latency recorded per request."""
    import httpx

    try:
        httpx.get(f"{url.rstrip('/')}/healthz", timeout=10).raise_for_status()
    except httpx.HTTPError as err:
        raise ConnectionError(f"the service at {url} is not reachable: {err}") from err
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def main() -> list[RunRow]:
        limit = asyncio.Semaphore(concurrency)
        done = 0
        async with httpx.AsyncClient(timeout=600) as http:

            async def one(q: Question) -> RunRow:
                nonlocal done
                async with limit:
                    row = await _ask(http, url.rstrip("/"), q, k, headers)
                done += 1
                if done % 10 == 0 or done == len(questions):
                    log.info("online eval: %d/%d questions answered", done, len(questions))
                return row

            return await asyncio.gather(*(one(q) for q in questions))

    return asyncio.run(main())
