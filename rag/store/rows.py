"""A segment's chunk table kept on disk and read by row: what search needs of every chunk (its file, page, place and
section header) is held in memory, dictionary-encoded (a few bytes a chunk); each hit's text and id are slices of
memory-mapped files (``Strings``); the rest is read from the row groups of chunks.parquet that hold the rows asked for.

The files are memory-mapped, so reads share the page cache with other processes and a segment removed from disk while
it is served stays readable."""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rag.store.files import CHUNK_COLUMNS, CHUNKS_FILE, STRING_COLUMNS, load_npy, reading, strings_files

IN_MEMORY = ["file", "page", "chunk_index", "header"]
_DICTIONARY = ["file", "header"]  # repeated strings, held as categories


class Strings:
    """One column's values as UTF-8 bytes one after another, memory-mapped, and where each row starts."""

    def __init__(self, path: Path, column: str):
        data, offsets = strings_files(column)
        self.offsets = reading(path, offsets, load_npy)
        self.data = reading(path, data, _mapped)

    def take(self, rows: np.ndarray) -> list[str]:
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        return [self.data[a:b].decode() for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]


def _mapped(file: Path) -> mmap.mmap | bytes:
    with open(file, "rb") as handle:  # the map outlives the descriptor
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if file.stat().st_size else b""


class ChunkRows:
    """The chunks of one segment: ``table`` in memory (the IN_MEMORY columns), the rest by ``read``."""

    def __init__(self, path: Path):
        self.path = path
        mapped = reading(path, CHUNKS_FILE, lambda f: pa.memory_map(str(f)))
        self._parquet = reading(path, CHUNKS_FILE, lambda _: pq.ParquetFile(mapped))
        meta = self._parquet.metadata
        self._starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        self._present = set(self._parquet.schema_arrow.names)
        # Segments written before the strings were stored apart hold them in chunks.parquet.
        self._strings = {c: Strings(path, c) for c in STRING_COLUMNS if c not in self._present}
        dictionary = [c for c in _DICTIONARY if c in self._present]
        categories = reading(path, CHUNKS_FILE, lambda _: pq.ParquetFile(mapped, read_dictionary=dictionary))
        self.table = self._read(categories.read)
        self.table["page"] = self.table["page"].astype(np.int32)
        self.table["chunk_index"] = self.table["chunk_index"].astype(np.int32)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def read(
        self, rows: Sequence[int] | np.ndarray | None = None, columns: Sequence[str] = CHUNK_COLUMNS
    ) -> pd.DataFrame:
        """``columns`` of the segment's ``rows`` (all: None), in the order asked, decoding only the row groups that
        hold them."""
        apart = [c for c in columns if c in self._strings]
        tabled = [c for c in columns if c not in self._strings]
        if rows is None:
            frame = self._read(self._parquet.read, tabled)
            rows = np.arange(len(self))
        else:
            rows = np.asarray(rows, dtype=np.int64)
            frame = self._read_rows(rows, tabled) if tabled else pd.DataFrame(index=range(len(rows)))
        for column in apart:
            frame[column] = self._strings[column].take(rows)
        return frame[list(columns)]

    def strings(self, rows: np.ndarray, column: str) -> list[str]:
        """One column's values of ``rows`` (text, chunk_id: what every hit needs), without a frame around them."""
        if column in self._strings:
            return self._strings[column].take(rows)
        return [str(v) for v in self.read(rows, [column])[column]]

    def _read_rows(self, rows: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
        group_of = np.searchsorted(self._starts, rows, side="right") - 1
        groups = np.unique(group_of)
        # Row r sits at r - start(its group) + the rows of the groups read before its own.
        before = np.concatenate([[0], np.cumsum(np.diff(self._starts)[groups[:-1]])])
        at = pa.array(rows - self._starts[group_of] + before[np.searchsorted(groups, group_of)])
        # Only the rows asked for become Python objects: the rest of their groups stays in Arrow's buffers.
        return self._read(lambda names: self._parquet.read_row_groups(groups.tolist(), names).take(at), columns)

    def _read(self, read, columns: Sequence[str] = IN_MEMORY) -> pd.DataFrame:
        """``columns`` through ``read(the columns present)``, a column an older segment lacks filled in (header: "",
        the rest None)."""
        present = [c for c in columns if c in self._present]
        frame = reading(self.path, CHUNKS_FILE, lambda _: read(present).to_pandas())
        for column in columns:
            if column not in frame:
                frame[column] = "" if column == "header" else None
        return frame[list(columns)]
