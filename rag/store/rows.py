"""A segment's chunk table kept on disk and read by row: what search needs of every chunk (its file, page, place and
section header) is held in memory, dictionary-encoded (a few bytes a chunk); the text and everything else is read
from the row groups of chunks.parquet that hold the rows asked for.

The file is memory-mapped, so reads share the page cache with other processes and a segment removed from disk while
it is served stays readable."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rag.store.files import CHUNK_COLUMNS, CHUNKS_FILE, reading

IN_MEMORY = ["file", "page", "chunk_index", "header"]
_DICTIONARY = ["file", "header"]  # repeated strings, held as categories


class ChunkRows:
    """The chunks of one segment: ``table`` in memory (the IN_MEMORY columns), the rest by ``read``."""

    def __init__(self, path: Path):
        self.path = path
        mapped = reading(path, CHUNKS_FILE, lambda f: pa.memory_map(str(f)))
        self._parquet = reading(path, CHUNKS_FILE, lambda _: pq.ParquetFile(mapped))
        meta = self._parquet.metadata
        self._starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        self._present = set(self._parquet.schema_arrow.names)
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
        if rows is None:
            return self._read(self._parquet.read, columns)
        rows = np.asarray(rows, dtype=np.int64)
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
