"""The Ray Data job: files -> pages (pypdf, parallel tasks) -> chunks -> vectors (actor pool) -> segments (written by
tasks, rag.store) -> the driver, which receives one row per file and segment: what the manifest says, not the chunks.

A file that cannot be read travels through the stages as one row carrying its reason (``error``), so
a single streaming pass yields both the chunks and every failure, and nothing is dropped silently.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from functools import lru_cache

import numpy as np
import pandas as pd
import ray
from ray.data import ExecutionResources

from ingest.cluster import gpus_needed
from ingest.metadata_extraction import extract_metadata, section_at
from ingest.pdf_pages import UnreadableDocument, read_pdf_pages
from ingest.planning import SourceFile
from ingest.progress import page_reporter
from rag.chunking import make_splitter, split_text
from rag.config import ChunkingConfig, EmbeddingConfig, IndexConfig, PdfConfig, Settings
from rag.devices import set_cpu_threads
from rag.doc_metadata import FIELDS, DocMetadata, chunk_header, with_header
from rag.embedding import TextEncoder
from rag.store.files import CHUNK_COLUMNS
from rag.store.segments import Located, write_staged

# page == 0 and chunk_index == -1 mark a row that carries a file's failure instead of text. Missing
# error and note are "" rather than None: an all-null column comes back from Arrow as NaN floats.
_FAILED_PAGE = 0
_NO_CHUNK = -1

# Embedding actors that may die in a row while loading their model (killed by a node's memory monitor on a busy
# machine) and be replaced; one more fails the run, so a model that cannot load at all still ends it.
ACTOR_INIT_DEATHS = 2


def _failure_row(src: dict, reason: str) -> dict:
    return {
        **src,
        "page": _FAILED_PAGE,
        "n_pages": 0,
        "text": "",
        "note": "",
        "error": reason,
        "metadata": "{}",
        "ocr": "[]",
    }


def extract_pages(src: dict, pdf: dict, counter) -> Iterator[dict]:
    """One row per page of one file (page numbers 1-based), each carrying the file's metadata; or one failure row.
    ``counter``: the run's ProgressCounter."""
    doc, reason = None, ""
    try:
        doc = read_pdf_pages(src["path"], PdfConfig.model_validate(pdf), on_page=page_reporter(counter))
    except UnreadableDocument as err:
        reason = str(err)
    counter.parsed.remote(src["size_bytes"])
    if doc is None:
        yield _failure_row(src, reason)
        return
    meta = extract_metadata(src["file"], doc.texts, doc.info, json.loads(src["overrides"])).model_dump_json()
    ocr = json.dumps([asdict(page) for page in doc.ocr])  # the file's, on each of its rows like its metadata
    for number, text in enumerate(doc.texts, start=1):
        yield {
            **src,
            "page": number,
            "n_pages": len(doc.texts),
            "text": text,
            "note": doc.note or "",
            "error": "",
            "metadata": meta,
            "ocr": ocr,
        }


@lru_cache(maxsize=4)
def _splitter(chunking_json: str, model: str):
    return make_splitter(ChunkingConfig.model_validate_json(chunking_json), model)


def chunk_page(page: dict, chunking_json: str, model: str, counter) -> Iterator[dict]:
    """The page's chunks with offsets into the page text and their contextual header; a failure row passes through."""
    if page["error"]:
        yield {**page, "chunk_index": _NO_CHUNK, "char_start": 0, "char_end": 0, "header": ""}
        return
    cfg = ChunkingConfig.model_validate_json(chunking_json)
    meta = DocMetadata.model_validate_json(page["metadata"])
    running_headers = {v.lower() for v in (meta.company, meta.title) if v}
    chunks = split_text(_splitter(chunking_json, model), page["text"])
    counter.chunked.remote(len(chunks))
    for chunk in chunks:
        section = section_at(page["text"], chunk.char_start, chunk.char_end, running_headers)
        yield {
            **page,
            "text": chunk.text,
            "chunk_index": chunk.index,
            "char_start": chunk.char_start,
            "char_end": chunk.char_end,
            "header": chunk_header(meta, page["file"], section) if cfg.contextual_headers else "",
        }


class EmbedChunks:
    """A pool actor: loads the encoder once on its GPU share (or the CPU), then embeds batch after batch."""

    def __init__(self, embedding: dict, gpu_fraction: float, num_cpus: float, counter):
        set_cpu_threads(num_cpus)
        self.counter = counter
        self.encoder = TextEncoder(EmbeddingConfig.model_validate(embedding), gpu_fraction=gpu_fraction)
        context = ray.get_runtime_context()
        gpus = ",".join(context.get_accelerator_ids().get("GPU", [])) or "-"
        # node:pid:gpu ids, so the manifest shows where the work ran and which actors shared a GPU
        self.worker = f"{context.get_node_id()[:8]}:{os.getpid()}:gpu={gpus}"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["text"])
        has_text = batch["chunk_index"] >= 0
        vectors = np.zeros((n, self.encoder.dim), dtype=np.float32)
        started = time.perf_counter()
        texts = [with_header(h, t) for h, t in zip(batch["header"][has_text], batch["text"][has_text], strict=True)]
        # told pass by pass: a batch can take a minute on a CPU
        vectors[has_text] = self.encoder.encode(texts, on_encoded=self.counter.embedded.remote)
        # spread over the batch's chunks and summed per worker by the driver
        batch["embed_seconds"] = np.where(has_text, (time.perf_counter() - started) / max(1, has_text.sum()), 0.0)
        batch["embedding"] = vectors
        batch["worker"] = np.full(n, self.worker)
        batch["device"] = np.full(n, self.encoder.device)
        return batch


def to_segment(
    batch: dict[str, np.ndarray], staging: str, index: dict, model: str, share: Sequence[Located] = ()
) -> dict[str, np.ndarray]:
    """A batch of embedded chunks as one segment, written into the folder ``staging`` by the task that holds them
    (rag.store.segments.write_staged: an IVF index takes up the training of one of ``share``, the collection's
    segments of ``model``, where it can); one row per file of the batch goes on to the driver: its pages, chunks,
    note, metadata, OCR, failure and embedding workers, and the segment's folder."""
    ok = batch["chunk_index"] >= 0
    segment = ""
    if ok.any():
        chunks = pd.DataFrame({c: batch[c][ok] for c in CHUNK_COLUMNS if c in batch and c not in FIELDS})
        chunks["chunk_id"] = [
            f"{h[:16]}:{p}:{c}"
            for h, p, c in zip(chunks["doc_hash"], chunks["page"], chunks["chunk_index"], strict=True)
        ]
        metadata = {f: json.loads(m) for f, m in zip(batch["file"][ok], batch["metadata"][ok], strict=True)}
        for name in FIELDS:
            chunks[name] = [metadata[f].get(name) for f in chunks["file"]]
        segment = write_staged(staging, chunks, batch["embedding"][ok], IndexConfig(**index), model, share)
    rows: dict[str, dict] = {}
    for i, file in enumerate(batch["file"]):
        row = rows.setdefault(
            file,
            {
                "file": file,
                "n_pages": int(batch["n_pages"][i]),
                "note": batch["note"][i],
                "error": batch["error"][i],
                "metadata": batch["metadata"][i],
                "ocr": batch["ocr"][i],
                "chunks": 0,
                "workers": {},
            },
        )
        if ok[i]:
            row["chunks"] += 1
            chunks_seconds = row["workers"].setdefault(f"{batch['worker'][i]}|{batch['device'][i]}", [0, 0.0])
            chunks_seconds[0] += 1
            chunks_seconds[1] += float(batch["embed_seconds"][i])
    return {
        **{key: np.array([r[key] for r in rows.values()]) for key in ("file", "n_pages", "note", "error", "metadata")},
        "ocr": np.array([r["ocr"] for r in rows.values()]),
        "chunks": np.array([r["chunks"] for r in rows.values()], dtype=np.int64),
        "workers": np.array([json.dumps(r["workers"]) for r in rows.values()]),
        "segment": np.full(len(rows), segment),
        "dim": np.full(len(rows), batch["embedding"].shape[1], dtype=np.int64),
    }


def build_dataset(
    files: list[SourceFile],
    settings: Settings,
    sidecar: dict[str, dict],
    counter,
    staging: str,
    share: Sequence[Located] = (),
) -> ray.data.Dataset:
    """The lazy pipeline over ``files``; iterate it to run it. ``sidecar``: metadata overrides per file; ``counter``:
    the ProgressCounter its stages report to; ``staging``: the folder its segments are written into, which every node
    must see (the index's); ``share``: segments whose IVF training the new ones may take up."""
    pool = settings.ingest.embed
    items = [
        {
            "path": f.path,
            "file": f.file,
            "doc_hash": f.doc_hash,
            "size_bytes": f.size_bytes,
            "overrides": json.dumps(sidecar.get(f.file, {})),
        }
        for f in files
    ]
    # One block per file, so files parse in parallel tasks instead of queueing in one.
    ds: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=len(items))
    # The job reports its own progress (files, chunks); Ray Data's per-operator bars only add noise to a log.
    ds.context.enable_progress_bars = False
    ds.context.execution_no_progress_timeout_s = settings.ingest.stall_timeout_s
    ds.context.max_consecutive_actor_init_deaths = ACTOR_INIT_DEATHS
    if settings.ingest.max_cpus is not None:
        ds.context.execution_options.resource_limits = ExecutionResources(
            cpu=settings.ingest.max_cpus, gpu=gpus_needed(settings)
        )
    ds = ds.flat_map(
        functools.partial(extract_pages, pdf=settings.pdf.model_dump(), counter=counter),
        num_cpus=settings.ingest.parse_num_cpus,
    )
    ds = ds.flat_map(
        functools.partial(
            chunk_page,
            chunking_json=settings.chunking.model_dump_json(),
            model=settings.embedding.model,
            counter=counter,
        ),
        num_cpus=settings.ingest.parse_num_cpus,
    )
    ds = ds.map_batches(
        EmbedChunks,
        fn_constructor_kwargs={
            "embedding": settings.embedding.model_dump(),
            "gpu_fraction": pool.num_gpus,
            "num_cpus": pool.num_cpus,
            "counter": counter,
        },
        # A batch goes to an actor when it is free, not queued behind its current one: at the end of a run an actor
        # holding two batches while the others sit idle cost the SEC set a quarter of a minute.
        compute=ray.data.ActorPoolStrategy(size=pool.fitted_actors(), max_tasks_in_flight_per_actor=1),
        batch_size=pool.batch_size,
        batch_format="numpy",
        num_gpus=pool.num_gpus,
        num_cpus=pool.num_cpus,
    )
    return ds.map_batches(
        functools.partial(
            to_segment,
            staging=staging,
            index=settings.index.model_dump(),
            model=settings.embedding.model,
            share=list(share),
        ),
        batch_size=settings.ingest.segment_chunks,
        batch_format="numpy",
        num_cpus=settings.ingest.parse_num_cpus,
    )
