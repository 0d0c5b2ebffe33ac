"""Merges: segments rewritten as one, without what was masked out of them. A run merges when it leaves more segments
than ``index.max_segments`` (the smallest are merged), a segment with more than ``index.max_deleted_share`` of its
chunks masked out, or one of another kind of index than ``index.kind`` now makes; ``rag index merge`` merges all."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rag.clock import utc_now
from rag.config import IndexConfig
from rag.store.files import CHUNK_COLUMNS, FORMAT, RunStats, read_manifest, read_vectors
from rag.store.rows import ChunkRows
from rag.store.segments import Located
from rag.store.vectors import kind_for
from rag.store.versions import IndexDir, Writer

log = logging.getLogger(__name__)


def due(segments: list[Located], cfg: IndexConfig) -> list[Located]:
    """The segments a run should merge (none, or at least one that has chunks masked out, or two)."""
    chosen = [s for s in segments if _stale(s, cfg)]
    if len(segments) - len(chosen) + (1 if chosen else 0) > cfg.max_segments:
        # The smallest first, down to half the bound: each chunk is then rewritten a logarithmic number of times, as
        # in Lucene's tiered merges, and the runs that follow do not merge again at once.
        rest = sorted((s for s in segments if s not in chosen), key=lambda s: s.ref.rows)
        while rest and len(segments) - len(chosen) + 1 > max(1, cfg.max_segments // 2):
            chosen.append(rest.pop(0))
    return chosen  # never one segment alone that is not stale: the count's rule takes two at least


def _stale(segment: Located, cfg: IndexConfig) -> bool:
    """Rewritten even alone: too much of it masked out, or of another kind of index than the configured one makes of
    its rows (index.kind changed)."""
    masked = segment.deleted_rows > cfg.max_deleted_share * segment.info.rows
    return masked or segment.info.kind != kind_for(segment.ref.rows, cfg)


def merge(
    writer: Writer, segments: list[Located], chosen: list[Located], cfg: IndexConfig, default_model: str
) -> list[Located]:
    """``segments`` with ``chosen`` replaced by one new segment of their live chunks per embedding model among them
    (two models' vectors never share an index), where the first of each was. ``default_model``: the manifest's, for
    segments written before they named their own."""
    for model in dict.fromkeys(s.embedded_by(default_model) for s in chosen):
        group = [s for s in chosen if s.embedded_by(default_model) == model]
        # Any of the model's segments may lend its IVF training, those merged too: it stays with the new segment.
        share = [s for s in segments if s.embedded_by(default_model) == model]
        segments = _merged(writer, segments, group, cfg, model, share)
    return segments


def _merged(
    writer: Writer,
    segments: list[Located],
    chosen: list[Located],
    cfg: IndexConfig,
    model: str,
    share: list[Located],
) -> list[Located]:
    if not chosen:
        return segments
    parts, vectors = [], []
    for segment in chosen:
        chunks = ChunkRows(segment.path).read()
        live = ~chunks["file"].isin(segment.ref.deleted).to_numpy()
        parts.append(chunks[live])
        vectors.append(np.asarray(read_vectors(segment.path, mapped=True)[live], dtype=np.float32))
    chunks = pd.concat(parts, ignore_index=True)[CHUNK_COLUMNS]
    if not len(chunks):
        return [s for s in segments if s not in chosen]
    log.info("merging %d segments (%d chunks live)", len(chosen), len(chunks))
    merged = writer.add_segment(chunks, np.concatenate(vectors), cfg, model, share)
    first = min(segments.index(s) for s in chosen)
    return (
        [s for s in segments[:first] if s not in chosen] + [merged] + [s for s in segments[first:] if s not in chosen]
    )


def merge_all(root: Path, cfg: IndexConfig, wait_s: float | None = 0) -> tuple[str, str | None, int, int]:
    """``rag index merge``: the current version's segments rewritten as one, published as a new version. Returns the
    version merged, the new one (None: nothing to merge) and the segments before and after."""
    started = time.perf_counter()
    with IndexDir(root).writing(wait_s, purpose="a merge") as writer:
        version = writer.index.current()
        manifest = read_manifest(version.path)
        segments = writer.segments_of(version)
        if len(segments) < 2 and not any(s.ref.deleted for s in segments) and manifest.segmented:
            return version.name, None, len(segments), len(segments)
        merged = merge(writer, segments, segments, cfg, manifest.embedding.model)
        run = RunStats(
            seconds=round(time.perf_counter() - started, 2),
            files_processed=0,
            pages_processed=0,
            chunks_embedded=0,
            pages_per_s=0,
            chunks_per_s=0,
        )
        update = {"created_at": utc_now(), "version": FORMAT, "segments": [s.ref for s in merged], "run": run}
        published = writer.publish_manifest(manifest.model_copy(update=update), cfg.keep_versions)
    return version.name, published, len(segments), len(merged)
