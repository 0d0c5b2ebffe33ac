"""The index's files: what one version holds on disk, and the only code that reads or writes them.

A version directory (rag.store.versions keeps several and points to the current one) holds:
    faiss.index      vectors, row i of the chunk store is FAISS id i
    chunks.parquet   one row per chunk: chunk_id, file, page (1-based), chunk_index, text, char_start,
                     char_end, doc_hash, header (what is embedded before the text) and the file's
                     metadata (rag.doc_metadata.FIELDS)
    embeddings.npy   the vectors again, float32, so an incremental run can rebuild the index
                     without re-embedding what did not change
    manifest.json    config, model and dimension, one entry per input file (``Manifest``)

Written by ingestion, read by serving, eval and the CLI. faiss is imported only by the functions that touch its
file, so a process that reads manifests (the ingress, the collections registry) never loads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from rag.doc_metadata import FIELDS

INDEX_FILE = "faiss.index"
CHUNKS_FILE = "chunks.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
MANIFEST_FILE = "manifest.json"
INDEX_FILES = (INDEX_FILE, CHUNKS_FILE, EMBEDDINGS_FILE, MANIFEST_FILE)

CHUNK_COLUMNS = [
    "chunk_id",
    "file",
    "page",
    "chunk_index",
    "text",
    "char_start",
    "char_end",
    "doc_hash",
    "header",
    *FIELDS,
]

Status = Literal["indexed", "skipped_unchanged", "failed"]


class FileEntry(BaseModel):
    file: str  # path relative to the documents folder
    status: Status
    doc_hash: str
    size_bytes: int
    pages: int = 0
    chunks: int = 0
    reason: str | None = None  # why a file failed
    note: str | None = None  # anything unusual about how it was read, or that its source is gone
    metadata: dict = {}  # rag.doc_metadata.DocMetadata fields that were found
    ocr: list[dict] = []  # pages without a text layer: page, OCR's mean confidence, or why it has no text (ingest.ocr)
    overrides_hash: str = ""  # of the file's metadata.jsonl entry: a changed entry re-processes the file


class EmbedWorker(BaseModel):
    worker: str  # node id prefix and pid of the embedding actor
    device: str
    chunks: int
    busy_seconds: float  # time spent encoding, for throughput against the hardware's limit


class RunStats(BaseModel):
    seconds: float
    files_processed: int
    pages_processed: int
    chunks_embedded: int
    pages_per_s: float
    chunks_per_s: float
    embed_workers: list[EmbedWorker] = []


class EmbeddingInfo(BaseModel):
    model: str  # queries must be embedded by this model
    dim: int
    normalize: bool


class IndexInfo(BaseModel):
    kind: str  # rag.config.IndexConfig.kind
    built_on: str  # cpu or gpu
    vectors: int


class Manifest(BaseModel):
    version: int = 1
    created_at: str
    docs_dir: str
    fingerprint: str  # ingest.planning.fingerprint: what shaped the chunks and vectors
    settings: dict
    embedding: EmbeddingInfo
    index: IndexInfo
    files: list[FileEntry]
    run: RunStats

    def entries(self) -> dict[str, FileEntry]:
        return {e.file: e for e in self.files}

    @property
    def indexed_files(self) -> int:
        return sum(e.status != "failed" for e in self.files)


def has_manifest(path: Path) -> bool:
    """Whether ``path`` holds a version (its manifest is written last, so a half-written one has none)."""
    return (path / MANIFEST_FILE).is_file()


def read_manifest(path: Path) -> Manifest:
    if not has_manifest(path):
        raise FileNotFoundError(f"{path} is not an index directory: {MANIFEST_FILE} is missing")
    return Manifest.model_validate_json((path / MANIFEST_FILE).read_text())


def read_chunks(path: Path) -> pd.DataFrame:
    chunks = pd.read_parquet(path / CHUNKS_FILE)
    for column in CHUNK_COLUMNS:  # an index written before metadata existed has none
        if column not in chunks:
            chunks[column] = "" if column == "header" else None
    return chunks


def read_vectors(path: Path, mapped: bool = False) -> np.ndarray:
    """The stored embeddings; ``mapped``: memory-mapped, so a filtered search reads only its rows and a version pruned
    from disk while it is served stays readable."""
    return np.load(path / EMBEDDINGS_FILE, mmap_mode="r" if mapped else None)


def read_faiss(path: Path):
    import faiss

    return faiss.read_index(str(path / INDEX_FILE))


def write_version(path: Path, index, chunks: pd.DataFrame, vectors: np.ndarray, manifest: Manifest) -> None:
    """Every file of a version into ``path``, the manifest last."""
    import faiss

    faiss.write_index(index, str(path / INDEX_FILE))
    chunks[CHUNK_COLUMNS].to_parquet(path / CHUNKS_FILE, index=False)
    np.save(path / EMBEDDINGS_FILE, vectors)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest.model_dump(), indent=2) + "\n")
