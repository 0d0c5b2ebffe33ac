"""The index's files: the manifest of a version, the files of a segment, and the only code that reads or writes them.

A version (rag.store.versions keeps several and points to the current one) is its manifest.json: config, model and
dimension, one entry per input file, the run's figures, and the segments it is made of (``Manifest.segments``), each
with the files masked out of it since it was written. A segment (rag.store.segments) is a folder of:
    faiss.index      vectors, row i of the segment's chunks is FAISS id i
    trained.index    an IVF index's training, empty (its coarse quantizer, IVF-PQ's codebooks): segments built later
                     take it up rather than train their own, so a collection's IVF segments share it
    chunks.parquet   one row per chunk: file, page (1-based), chunk_index, char_start, char_end, doc_hash,
                     header (what is embedded before the text) and the file's metadata (rag.doc_metadata.FIELDS)
    text.bin, chunk_id.bin and their .offsets.npy
                     each chunk's text and id, UTF-8 one after another, and where each starts: a hit's text
                     is a slice of a memory-mapped file (segments written before them hold both in chunks.parquet)
    embeddings.npy   the vectors again, float32: exact re-scoring, and merges without re-embedding
    bm25/            the lexical index over the same texts (rag.store.lexical), memory-mapped when opened
    segment.json     its rows, chunks per file, and the size and SHA-256 of each file above (``SegmentInfo``)

A version written before segments (manifest "version": 1) holds one segment's files in its own folder, with their
sizes and hashes in its manifest; it is read as it is.

Written by ingestion, read by serving, eval and the CLI. faiss and bm25s are imported only by the functions that
touch their files, so a process that reads manifests (the ingress, the collections registry) never loads them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import threading
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
TRAINED_FILE = "trained.index"
CHUNKS_FILE = "chunks.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
MANIFEST_FILE = "manifest.json"
LEXICAL_DIR = "bm25"
INDEX_FILES = (INDEX_FILE, CHUNKS_FILE, EMBEDDINGS_FILE, MANIFEST_FILE)  # of a version written before segments
FORMAT = 2
CHUNK_ROW_GROUP = 256  # rows per Parquet row group of chunks.parquet: reading a row decodes its group
# Columns read for every hit of every search, stored apart from chunks.parquet (rag.store.rows.Strings): decoding a
# row group per hit cost more than the rest of a search over a million chunks.
STRING_COLUMNS = ("chunk_id", "text")

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
    language: str | None = None  # rag.languages.language_of its first pages: zh, other, en; None: no text there


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


class SegmentRef(BaseModel):
    """A segment as a version uses it: its folder's name under segments/, and what of it is live there."""

    name: str
    rows: int  # live: the segment's rows less those of ``deleted``
    deleted: list[str] = []  # files masked out of it (changed or removed since it was written), until a merge


class Manifest(BaseModel):
    version: int = FORMAT  # of the layout: 1 before segments
    created_at: str
    docs_dir: str
    fingerprint: str  # ingest.planning.fingerprint: what shaped the chunks and vectors
    settings: dict
    embedding: EmbeddingInfo  # Latin-script files' model (every file's, where the collection has one model)
    multilingual: EmbeddingInfo | None = None  # other scripts' model, where the collection holds both kinds
    index: IndexInfo
    files: list[FileEntry]
    run: RunStats
    segments: list[SegmentRef] = []
    # Layout 1 only, where the version's folder holds its one segment's files:
    stored: dict[str, StoredFile] = {}  # their sizes and hashes; empty in versions written before they were kept
    lexical: int = 0  # rag.store.lexical.TERMS of the BM25 stored with it; 0: none (built when opened)

    @property
    def segmented(self) -> bool:
        return self.version >= 2

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
    return reading(path, MANIFEST_FILE, lambda f: Manifest.model_validate_json(f.read_text()))


def check_sizes(path: Path, stored: dict[str, StoredFile]) -> None:
    """Every file listed is there at its size (cheap, done whenever a segment is opened); DamagedVersion names the
    first that is not."""
    for name, entry in stored.items():
        try:
            size = (path / name).stat().st_size
        except FileNotFoundError:
            raise DamagedVersion(path, name, "is missing") from None
        if size != entry.bytes:
            raise DamagedVersion(path, name, f"holds {size:,} bytes where {entry.bytes:,} were written")


def check_hashes(path: Path, stored: dict[str, StoredFile]) -> None:
    """Every file listed read whole against its SHA-256 (``rag index verify``)."""
    check_sizes(path, stored)
    for name, entry in stored.items():
        if _sha256(path / name) != entry.sha256:
            raise DamagedVersion(path, name, "does not match the SHA-256 recorded when it was written")


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def reading(path: Path, name: str, read: Callable[[Path], T]) -> T:
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


def read_vectors(path: Path, mapped: bool = False) -> np.ndarray:
    """The stored embeddings; ``mapped``: memory-mapped, so a filtered search reads only its rows and a version pruned
    from disk while it is served stays readable."""
    return reading(path, EMBEDDINGS_FILE, lambda f: load_npy(f, mapped))


# numpy parses a .npy file's header with ast.literal_eval, and CPython 3.11 counts the AST constructor's depth per
# interpreter, not per thread: two threads opening .npy files at once can fail with a spurious SystemError ("AST
# constructor recursion depth mismatch", python/cpython#106905), which would call a sound segment damaged. Every .npy
# the store opens, its own and bm25s's, is opened under this lock; memory-mapped, only its header is read under it.
_NPY_OPENING = threading.Lock()


def load_npy(file: Path, mapped: bool = True) -> np.ndarray:
    """The array in ``file``; ``mapped``: memory-mapped, else read into memory."""
    with _NPY_OPENING:
        return np.load(file, mmap_mode="r" if mapped else None)


def search_texts(chunks: pd.DataFrame) -> list[str]:
    """What was embedded for each chunk, and what BM25 reads: its header, then its text."""
    return [with_header(str(h), str(t)) for h, t in zip(chunks["header"], chunks["text"], strict=True)]


def read_lexical(path: Path, lexical: int, rows: int) -> Bm25 | None:
    """The BM25 stored in ``path`` over its ``rows`` chunks, memory-mapped; None where it was stored without one
    (``lexical`` 0), or with other terms."""
    from rag.store.lexical import TERMS, Bm25

    if lexical != TERMS:
        return None

    def load(folder: Path) -> Bm25:
        with _NPY_OPENING:
            return Bm25.load(folder, rows)

    return reading(path, LEXICAL_DIR, load)


def read_faiss(path: Path):
    """The segment's FAISS index memory-mapped, whatever its kind (IO_FLAG_MMAP_IFC maps a flat index's vectors, an
    IVF index's lists, HNSW's storage): only what searches touch is read, from the page cache that every replica on
    the machine shares, and a segment removed from disk while it is served stays readable."""
    import faiss

    flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY
    return reading(path, INDEX_FILE, lambda f: faiss.read_index(str(f), flags))


def read_trained(path: Path):
    """The training stored with the segment at ``path``, or None where it has none (not IVF, or written before
    trainings were kept)."""
    import faiss

    if not (path / TRAINED_FILE).exists():
        return None
    return reading(path, TRAINED_FILE, lambda f: faiss.read_index(str(f)))


def write_parts(
    path: Path, index, trained, chunks: pd.DataFrame, vectors: np.ndarray
) -> tuple[dict[str, StoredFile], int]:
    """A segment's files into the empty directory ``path`` (``trained``: its index's training, or None); returns each
    one's size and SHA-256, and the rag.store.lexical.TERMS of its BM25 (0: the chunks have no terms). A full disk is
    DiskFull, and what was written is removed."""
    import faiss

    from rag.store.lexical import TERMS, Bm25

    try:
        faiss.write_index(index, str(path / INDEX_FILE))
        if trained is not None:
            faiss.write_index(trained, str(path / TRAINED_FILE))
        tabled = [c for c in CHUNK_COLUMNS if c not in STRING_COLUMNS]
        chunks[tabled].to_parquet(path / CHUNKS_FILE, index=False, row_group_size=CHUNK_ROW_GROUP)
        for column in STRING_COLUMNS:
            write_strings(path, column, chunks[column])
        np.save(path / EMBEDDINGS_FILE, vectors)
        lexical = TERMS if Bm25.build(search_texts(chunks)).save(path / LEXICAL_DIR) else 0
        written = sorted(f for f in path.rglob("*") if f.is_file())
        stored = {
            f.relative_to(path).as_posix(): StoredFile(bytes=f.stat().st_size, sha256=_sha256(f)) for f in written
        }
    except (OSError, RuntimeError) as err:
        if _full(path, err):
            _empty(path)  # what fit is of no use: the space it takes is the user's again
            raise DiskFull(path, _size_of(chunks, vectors)) from None
        raise
    return stored, lexical


def strings_files(column: str) -> tuple[str, str]:
    """The files of a column stored apart (STRING_COLUMNS): its UTF-8 bytes, and where each row starts."""
    return f"{column}.bin", f"{column}.offsets.npy"


def write_strings(path: Path, column: str, values: pd.Series) -> None:
    data, offsets = strings_files(column)
    encoded = [str(v).encode() for v in values]
    (path / data).write_bytes(b"".join(encoded))
    np.save(path / offsets, np.cumsum([0, *map(len, encoded)], dtype=np.int64))


def replace_whole(path: Path, text: str) -> None:
    """``text`` as the whole of ``path``: written under a hidden name beside it and renamed over it, so that a reader
    sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name.lstrip('.')}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, model: BaseModel) -> None:
    """A manifest or segment description, the last file of its folder written; a full disk is DiskFull."""
    try:
        path.write_text(json.dumps(model.model_dump(), indent=2) + "\n")
    except OSError as err:
        if _full(path.parent, err):
            path.unlink(missing_ok=True)
            raise DiskFull(path, len(model.model_dump_json())) from None
        raise


def _full(path: Path, err: Exception) -> bool:
    """Whether a write failed for want of space. Each library words it its own way (numpy: "N requested and M
    written", with no errno), so a write that failed on a device left with next to nothing free is taken for it."""
    return getattr(err, "errno", None) == errno.ENOSPC or shutil.disk_usage(path).free < _NEARLY_FULL


def _empty(path: Path) -> None:
    for part in path.iterdir():
        if part.is_dir():
            shutil.rmtree(part)
        else:
            part.unlink()


def _size_of(chunks: pd.DataFrame, vectors: np.ndarray) -> int:
    """About what a version's files take: the vectors twice at most (stored, and in the index), the chunks' text and
    their other columns."""
    text = int(chunks["text"].str.len().sum()) if len(chunks) else 0
    return 2 * vectors.nbytes + text + 64 * len(chunks)
