"""The index's files: what one version holds on disk, and the only code that reads or writes them.

A version directory (rag.store.versions keeps several and points to the current one) holds:
    faiss.index      vectors, row i of the chunk store is FAISS id i
    chunks.parquet   one row per chunk: chunk_id, file, page (1-based), chunk_index, text, char_start,
                     char_end, doc_hash, header (what is embedded before the text) and the file's
                     metadata (rag.doc_metadata.FIELDS)
    embeddings.npy   the vectors again, float32, so an incremental run can rebuild the index
                     without re-embedding what did not change
    bm25/            the lexical index over the same texts (rag.store.lexical), memory-mapped when opened
    manifest.json    config, model and dimension, one entry per input file, and the size and SHA-256 of each
                     file above (``Manifest``)

Written by ingestion, read by serving, eval and the CLI. faiss and bm25s are imported only by the functions that
touch their files, so a process that reads manifests (the ingress, the collections registry) never loads them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np
import pandas as pd
from pydantic import BaseModel

from rag.doc_metadata import FIELDS, with_header
from rag.store.errors import DamagedVersion, DiskFull

if TYPE_CHECKING:
    from rag.store.lexical import Bm25

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

T = TypeVar("T")
_NEARLY_FULL = 1 << 20
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


class StoredFile(BaseModel):
    bytes: int
    sha256: str


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
    stored: dict[str, StoredFile] = {}  # the version's other files; empty in versions written before they were kept
    lexical: int = 0  # rag.store.lexical.TERMS of the BM25 stored with it; 0: none (built when opened)

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
    return _reading(path, MANIFEST_FILE, lambda f: Manifest.model_validate_json(f.read_text()))


def check_sizes(path: Path, manifest: Manifest) -> None:
    """Every file the manifest lists is there at its size (cheap, done whenever a version is opened); DamagedVersion
    names the first that is not."""
    for name, stored in manifest.stored.items():
        try:
            size = (path / name).stat().st_size
        except FileNotFoundError:
            raise DamagedVersion(path, name, "is missing") from None
        if size != stored.bytes:
            raise DamagedVersion(path, name, f"holds {size:,} bytes where {stored.bytes:,} were written")


def verify(path: Path) -> Manifest:
    """Every file of the version at ``path`` read whole against its SHA-256 (``rag index verify``); DamagedVersion
    names the first that does not match. A version written before hashes were kept is read through instead."""
    manifest = read_manifest(path)
    check_sizes(path, manifest)
    for name, stored in manifest.stored.items():
        if _sha256(path / name) != stored.sha256:
            raise DamagedVersion(path, name, "does not match the SHA-256 recorded when it was written")
    if not manifest.stored:
        for read in (read_chunks, read_vectors, read_faiss):
            read(path)
    return manifest


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _reading(path: Path, name: str, read: Callable[[Path], T]) -> T:
    """``read`` of the version's file ``name``; its failure (a cut or garbled file: each library words it its own way)
    as DamagedVersion."""
    try:
        return read(path / name)
    except FileNotFoundError:
        raise DamagedVersion(path, name, "is missing") from None
    except Exception as err:
        raise DamagedVersion(path, name, f"cannot be read ({_first_line(err)})") from err


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def read_chunks(path: Path) -> pd.DataFrame:
    chunks = _reading(path, CHUNKS_FILE, pd.read_parquet)
    for column in CHUNK_COLUMNS:  # an index written before metadata existed has none
        if column not in chunks:
            chunks[column] = "" if column == "header" else None
    return chunks


def read_vectors(path: Path, mapped: bool = False) -> np.ndarray:
    """The stored embeddings; ``mapped``: memory-mapped, so a filtered search reads only its rows and a version pruned
    from disk while it is served stays readable."""
    return _reading(path, EMBEDDINGS_FILE, lambda f: np.load(f, mmap_mode="r" if mapped else None))


def search_texts(chunks: pd.DataFrame) -> list[str]:
    """What was embedded for each chunk, and what BM25 reads: its header, then its text."""
    return [with_header(str(h), str(t)) for h, t in zip(chunks["header"], chunks["text"], strict=True)]


def read_lexical(path: Path, manifest: Manifest) -> Bm25 | None:
    """The BM25 stored with the version, memory-mapped; None where it was stored without one, or with other terms."""
    from rag.store.lexical import LEXICAL_DIR, TERMS, Bm25

    if manifest.lexical != TERMS:
        return None
    return _reading(path, LEXICAL_DIR, lambda d: Bm25.load(d, manifest.index.vectors))


def read_faiss(path: Path):
    import faiss

    return _reading(path, INDEX_FILE, lambda f: faiss.read_index(str(f)))


def write_version(path: Path, index, chunks: pd.DataFrame, vectors: np.ndarray, manifest: Manifest) -> Manifest:
    """Every file of a version into the empty directory ``path``, the manifest last, with each other file's size and
    SHA-256; returns that manifest. A full disk is DiskFull, and what was written of the version is removed."""
    import faiss

    from rag.store.lexical import LEXICAL_DIR, TERMS, Bm25

    try:
        faiss.write_index(index, str(path / INDEX_FILE))
        chunks[CHUNK_COLUMNS].to_parquet(path / CHUNKS_FILE, index=False)
        np.save(path / EMBEDDINGS_FILE, vectors)
        lexical = TERMS if Bm25.build(search_texts(chunks)).save(path / LEXICAL_DIR) else 0
        written = sorted(f for f in path.rglob("*") if f.is_file())
        stored = {
            f.relative_to(path).as_posix(): StoredFile(bytes=f.stat().st_size, sha256=_sha256(f)) for f in written
        }
        manifest = manifest.model_copy(update={"stored": stored, "lexical": lexical})
        (path / MANIFEST_FILE).write_text(json.dumps(manifest.model_dump(), indent=2) + "\n")
    except (OSError, RuntimeError) as err:
        # Each library words it its own way (numpy: "N requested and M written", with no errno), so a write that
        # failed on a device left with next to nothing free is taken for a full one.
        if getattr(err, "errno", None) == errno.ENOSPC or shutil.disk_usage(path).free < _NEARLY_FULL:
            for part in path.iterdir():  # what fit is of no use: the space it takes is the user's again
                if part.is_dir():
                    shutil.rmtree(part)
                else:
                    part.unlink()
            raise DiskFull(path.parent, _size_of(chunks, vectors)) from None
        raise
    return manifest


def _size_of(chunks: pd.DataFrame, vectors: np.ndarray) -> int:
    """About what a version's files take: the vectors twice at most (stored, and in the index), the chunks' text and
    their other columns."""
    text = int(chunks["text"].str.len().sum()) if len(chunks) else 0
    return 2 * vectors.nbytes + text + 64 * len(chunks)
