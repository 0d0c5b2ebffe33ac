"""Segments: the immutable parts a version is made of. A run writes one for the files it processed; the files it kept
stay in their segments by reference; a file changed or removed is masked out of its old segment (``SegmentRef.deleted``)
until a merge (rag.store.merging) rewrites what is left of it.

    INDEX_DIR/segments/s000004-3f9a1c2e/   faiss.index, chunks.parquet, embeddings.npy, bm25/ (rag.store.files)
                                           and segment.json, written last: a folder without it is unfinished

A name is never used twice (its suffix is random), so a reader that has a segment open by name has the same files.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import BaseModel

from rag.config import IndexConfig
from rag.store.errors import SEGMENTS, DamagedVersion
from rag.store.files import (
    FileEntry,
    Manifest,
    SegmentRef,
    StoredFile,
    check_hashes,
    check_sizes,
    read_faiss,
    read_lexical,
    read_manifest,
    read_trained,
    read_vectors,
    reading,
    search_texts,
    write_json,
    write_parts,
)
from rag.store.rows import ChunkRows

if TYPE_CHECKING:  # bm25s and faiss are loaded by what searches or writes, not by what only reads manifests
    import faiss

    from rag.store.lexical import Bm25
    from rag.store.vectors import Training

SEGMENT_FILE = "segment.json"


class SegmentInfo(BaseModel):
    rows: int
    files: dict[str, int]  # file -> its chunks here
    kind: str  # the FAISS index's (rag.config.IndexConfig.kind, or flat where too few vectors for it)
    built_on: str
    stored: dict[str, StoredFile]
    lexical: int  # rag.store.lexical.TERMS of its BM25; 0: none
    model: str | None = None  # that embedded its vectors; None: written before segments had their own (the manifest's)
    training: str | None = None  # names its IVF training (trained.index), the same in every segment that shares it


@dataclass(frozen=True)
class Located:
    """A segment a version uses: where its files are, what it holds, what of it the version masks out."""

    ref: SegmentRef
    path: Path
    info: SegmentInfo

    @property
    def deleted_rows(self) -> int:
        return sum(self.info.files.get(f, 0) for f in self.ref.deleted)

    def embedded_by(self, default: str) -> str:
        """The model of its vectors; ``default`` (the manifest's) for a segment written before segments named theirs."""
        return self.info.model or default


def segment_dir(index_root: Path, name: str) -> Path:
    return index_root / SEGMENTS / name


def new_segment_name(index_root: Path) -> str:
    taken = [int(p.name[1:7]) for p in (index_root / SEGMENTS).glob("s*") if p.name[1:7].isdigit()]
    return f"s{max(taken, default=0) + 1:06d}-{secrets.token_hex(4)}"


def read_info(path: Path) -> SegmentInfo:
    return reading(path, SEGMENT_FILE, lambda f: SegmentInfo.model_validate_json(f.read_text()))


def located(version_path: Path, manifest: Manifest) -> list[Located]:
    """The segments of the version at ``version_path``. One written before segments is its own single segment."""
    if manifest.segmented:
        root = version_path.parent.parent
        paths = [segment_dir(root, ref.name) for ref in manifest.segments]
        return [Located(ref, path, read_info(path)) for ref, path in zip(manifest.segments, paths, strict=True)]
    info = SegmentInfo(
        rows=manifest.index.vectors,
        files=_chunks_per_file(manifest.files),
        kind=manifest.index.kind,
        built_on=manifest.index.built_on,
        stored=manifest.stored,
        lexical=manifest.lexical,
    )
    return [Located(SegmentRef(name="", rows=manifest.index.vectors), version_path, info)]


def _chunks_per_file(entries: list[FileEntry]) -> dict[str, int]:
    return {e.file: e.chunks for e in entries if e.status != "failed" and e.chunks}


def write_segment(
    path: Path,
    built: tuple[faiss.Index, str],
    training: Training | None,
    chunks: pd.DataFrame,
    vectors: np.ndarray,
    model: str,
) -> SegmentInfo:
    """A segment's files into the empty directory ``path``, its segment.json last. ``built``: its FAISS index and
    where it was built (rag.store.vectors.build_index); ``training``: the index's, or None."""
    from rag.store.vectors import kind_of

    index, built_on = built
    stored, lexical = write_parts(path, index, training.index if training else None, chunks, vectors)
    files = {str(f): int(n) for f, n in chunks["file"].value_counts().sort_index().items()}
    info = SegmentInfo(
        rows=len(chunks),
        files=files,
        kind=kind_of(index),
        built_on=built_on,
        stored=stored,
        lexical=lexical,
        model=model,
        training=training.name if training else None,
    )
    write_json(path / SEGMENT_FILE, info)
    return info


def write_staged(
    staging: str | Path,
    chunks: pd.DataFrame,
    vectors: np.ndarray,
    cfg: IndexConfig,
    model: str,
    share: Sequence[Located] = (),
) -> str:
    """A segment of ``chunks`` and their ``vectors`` (embedded by ``model``, in (file, page, chunk) order, with FAISS of
    the kind ``cfg`` makes of them) in a new folder inside ``staging``, whoever writes it (a pipeline task on any node);
    returns the folder's name. The index's writer then names it (rag.store.versions.Writer.take). An IVF index takes
    up the training of the first of ``share`` (segments of the same model) whose training is as configured
    (rag.store.vectors.shares_training); only without one is it trained, on these vectors."""
    from rag.store.vectors import Training, build_index, train_index

    chunks, vectors = _in_order(chunks, vectors)
    path = Path(staging) / secrets.token_hex(8)
    path.mkdir()
    shared = _shared_training(share, len(vectors), vectors.shape[1], cfg)
    trained = shared.index if shared else train_index(vectors, cfg)
    built = build_index(vectors, cfg, trained)
    write_segment(path, built, shared or Training.of(trained), chunks, vectors, model)
    return path.name


def _shared_training(share: Sequence[Located], n: int, dim: int, cfg: IndexConfig) -> Training | None:
    from rag.store.vectors import Training, shares_training

    for segment in share:
        if segment.info.training:
            trained = read_trained(segment.path)
            if trained is not None and shares_training(trained, n, dim, cfg):
                return Training(trained, segment.info.training)
    return None


def _in_order(chunks: pd.DataFrame, vectors: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Chunks and their vectors in (file, page, chunk) order: a segment's, whatever order they came in."""
    order = np.lexsort((chunks["chunk_index"].to_numpy(), chunks["page"].to_numpy(), chunks["file"].to_numpy()))
    return chunks.iloc[order].reset_index(drop=True), np.ascontiguousarray(vectors[order], dtype=np.float32)


def adopt(version_path: Path, manifest: Manifest, target: Path) -> SegmentInfo:
    """The files of a version written before segments linked into the empty directory ``target`` as a segment: an
    old index becomes segmented on its next write without copying a byte."""
    (segment,) = located(version_path, manifest)
    for name in segment.info.stored or {}:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        os.link(version_path / name, target / name)
    if not segment.info.stored:  # written before sizes were kept: the three files it had, described now
        for name in ("faiss.index", "chunks.parquet", "embeddings.npy"):
            os.link(version_path / name, target / name)
    write_json(target / SEGMENT_FILE, segment.info)
    return segment.info


def verify(version_path: Path) -> tuple[Manifest, int]:
    """Every file of the version at ``version_path`` read whole against its SHA-256 (``rag index verify``), its
    manifest and the bytes checked returned; DamagedVersion names the first that does not match. Files written
    before hashes were kept are read through instead."""
    manifest = read_manifest(version_path)
    checked = 0
    for segment in located(version_path, manifest):
        check_hashes(segment.path, segment.info.stored)
        checked += sum(f.bytes for f in segment.info.stored.values())
        if not segment.info.stored:
            Segment(segment.path, segment.info)
    return manifest, checked


class Segment:
    """One segment opened for reading: its chunks read by row (rag.store.rows), its FAISS index read, its vectors
    memory-mapped (so a segment removed from disk while it is served stays readable) and its BM25 mapped when first
    asked for."""

    def __init__(self, path: Path, info: SegmentInfo):
        self.path, self.info = path, info
        check_sizes(path, info.stored)
        self.rows = ChunkRows(path)
        self.index = read_faiss(path)
        self.vectors = read_vectors(path, mapped=True)
        counts = {"segment": info.rows, "faiss": self.index.ntotal, "chunks": len(self.rows)}
        if len(set(counts.values())) > 1:
            raise DamagedVersion(path, "", f"holds counts that disagree ({counts})")
        self._lexical: Bm25 | None = None

    def lexical(self) -> Bm25:
        """Its BM25: the one stored with it, memory-mapped, or built now where it was stored without one."""
        from rag.store.lexical import Bm25

        if self._lexical is None:
            stored = read_lexical(self.path, self.info.lexical, self.info.rows)
            self._lexical = stored or Bm25.build(search_texts(self.rows.read(columns=["header", "text"])))
        return self._lexical
