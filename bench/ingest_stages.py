"""Where ingestion's time goes: every stage of `rag ingest` run alone, in one process on one thread, over the same
files.

    python -m bench.ingest_stages [--docs DIR ...] [--limit N] [--out bench/results]

A stage's time on one thread is its cost in core-seconds. The stages are the project's own functions, called as the
pipeline calls them:
  parse     ingest.pdf_pages.read_pdf_pages (pdf.extractor's text, OCR for pages without a text layer)
  metadata  ingest.metadata_extraction.extract_metadata
  chunk     ingest.pipeline.chunk_page (the splitter, each chunk's section and header)
  embed     rag.embedding.TextEncoder.encode (the configured model and dtype) in batches of ingest.embed.batch_size
  index     rag.store.vectors.build_index, the configured kind
  write     rag.store.segments.write_segment (FAISS, the chunks, the vectors, and the BM25 index it builds)
The floor a machine sets is the larger of (1) all the stages that run in parallel tasks and actors (parse,
metadata, chunk, embed) spread over its cores, and (2) the driver's serial stages (index, write) after them.
Writes ingest_stages.json and ingest_stages.png.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from bench.harness import each_folder
from bench.paths import DATASETS

DEFAULT_DOCS = [DATASETS / "sec-10q" / "docs", DATASETS / "filings-mixed" / "docs"]
PARALLEL = ("parse", "metadata", "chunk", "embed")
SERIAL = ("index", "write")


class _NoCounter:
    """Stands in for the run's progress counter actor: the pipeline's stage functions report to one."""

    class _Call:
        @staticmethod
        def remote(*args) -> None:
            return None

    chunked = _Call()


_NO_COUNTER = _NoCounter()


class Clock:
    """Seconds spent per stage, summed over calls."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def time(self, stage: str, fn, *args, **kwargs):
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started
        return result


def profile(docs: Path, limit: int | None) -> dict:
    import numpy as np
    import pandas as pd
    import torch

    from ingest.metadata_extraction import extract_metadata
    from ingest.pdf_pages import UnreadableDocument, read_pdf_pages
    from ingest.pipeline import chunk_page
    from rag.config import Settings
    from rag.doc_metadata import with_header
    from rag.embedding import TextEncoder
    from rag.store.files import CHUNK_COLUMNS
    from rag.store.segments import write_segment
    from rag.store.vectors import build_index

    torch.set_num_threads(1)  # one thread: a stage's time is its core-seconds
    settings = Settings()
    files = sorted(p for p in docs.rglob("*.pdf"))[:limit]
    chunking_json = settings.chunking.model_dump_json()
    clock, rows, pages, failed = Clock(), [], 0, 0
    for path in files:
        try:
            doc = clock.time("parse", read_pdf_pages, path, settings.pdf)
        except UnreadableDocument:
            failed += 1
            continue
        meta = clock.time("metadata", extract_metadata, path.name, doc.texts, doc.info)
        pages += len(doc.texts)
        started = time.perf_counter()
        for number, text in enumerate(doc.texts, start=1):
            page = {
                "file": path.name,
                "doc_hash": "",
                "page": number,
                "text": text,
                "error": "",
                "metadata": meta.model_dump_json(),
            }
            rows += [
                {**chunk, "chunk_id": f"{path.name}:{number}:{chunk['chunk_index']}"}
                for chunk in chunk_page(page, chunking_json, settings.embedding.model, _NO_COUNTER)
            ]
        clock.seconds["chunk"] = clock.seconds.get("chunk", 0.0) + time.perf_counter() - started
    encoder = TextEncoder(settings.embedding.model_copy(update={"device": "cpu"}), gpu_fraction=0)
    texts = [with_header(r["header"], r["text"]) for r in rows]
    size = settings.ingest.embed.batch_size
    vectors = np.concatenate(
        [clock.time("embed", encoder.encode, texts[i : i + size]) for i in range(0, len(texts), size)]
    )
    built = clock.time("index", build_index, vectors, settings.index)
    chunks = pd.DataFrame(rows).reindex(columns=CHUNK_COLUMNS)
    with tempfile.TemporaryDirectory() as out:
        clock.time("write", write_segment, Path(out), built, None, chunks, vectors, settings.embedding.model)
    parallel = sum(clock.seconds[s] for s in PARALLEL)
    serial = sum(clock.seconds[s] for s in SERIAL)
    cores = os.cpu_count() or 1
    return {
        "docs": str(docs),
        "files": len(files),
        "failed": failed,
        "pages": pages,
        "chunks": len(rows),
        "embedding": {"model": settings.embedding.model, "dtype": encoder.dtype, "device": encoder.device},
        "core_seconds": {k: round(v, 2) for k, v in clock.seconds.items()},
        "cores": cores,
        "floor_seconds": round(parallel / cores + serial, 1),
        "slowest": max(clock.seconds, key=lambda stage: clock.seconds[stage]),
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [*PARALLEL, *SERIAL]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    left = [0.0] * len(results)
    labels = [f"{Path(r['docs']).parent.name}\n{r['pages']} pages, {r['chunks']} chunks" for r in results]
    for stage in stages:
        widths = [r["core_seconds"].get(stage, 0) for r in results]
        ax.barh(labels, widths, left=left, label=stage)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlabel("core-seconds (each stage alone, one thread)")
    ax.set_title("Ingestion cost per stage")
    ax.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    each_folder(__doc__, DEFAULT_DOCS, profile, "ingest_stages", plot, json.dumps)
