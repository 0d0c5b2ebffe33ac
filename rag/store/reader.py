"""One index version opened for reading: its segments searched as one, its chunks and manifest read
(rag.store.versions finds the current one)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from rag.doc_metadata import FIELDS
from rag.filters import company_keys
from rag.store.files import CHUNK_COLUMNS, read_manifest
from rag.store.lexical import Lexical
from rag.store.rows import IN_MEMORY
from rag.store.segments import Located, Segment, located
from rag.store.vectors import rows_selector, search_params

# A selection this small is searched exactly on its stored vectors (about 3 MB read, a millisecond) rather than through
# an approximate index, whose cells a selector still scans whole: faster there, and exact.
_EXACT_UP_TO = 2048


def _concat(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """The segments' in-memory columns as the version's, strings kept as categories (pd.concat would make them
    objects, a Python string a row)."""
    if len(tables) == 1:
        return tables[0].reset_index(drop=True)
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in IN_MEMORY})
    joined = {}
    for column in IN_MEMORY:
        parts = [t[column] for t in tables]
        if all(isinstance(p.dtype, pd.CategoricalDtype) for p in parts):
            joined[column] = pd.Series(union_categoricals(parts, ignore_order=True))
        else:
            joined[column] = pd.concat(parts, ignore_index=True)
    return pd.DataFrame(joined)


def _file_table(parts: list[pd.DataFrame]) -> pd.DataFrame:
    files = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["file", *FIELDS])
    files = files.astype(object).where(files.notna(), None)
    for column in ("fiscal_year", "fiscal_quarter"):  # Parquet stores a column with gaps as floats: 2018.0
        # An object column: a list of ints and Nones would be inferred as floats again, the gaps as NaN.
        files[column] = pd.Series(
            [None if v is None else int(v) for v in files[column]], index=files.index, dtype=object
        )
    files["company_keys"] = company_keys(files)
    return files


def _plain_metadata(row: dict) -> dict:
    """A file's metadata fields as plain values (lists, not arrays), without the fields it lacks."""
    return {k: list(v) if isinstance(v, np.ndarray) else v for k in FIELDS if (v := row[k]) is not None}


@dataclass
class Hit:
    row: int  # position in the version's chunks
    score: float


class _Part:
    """A segment as one version sees it: its live rows (None: all of them) at ``offset`` in the version's rows."""

    def __init__(self, segment: Segment, where: Located, offset: int, model: str):
        self.segment, self.offset, self.model = segment, offset, model
        self.live: np.ndarray | None = None
        self._live_selector = None
        self.deleted = where.ref.deleted
        if self.deleted:
            self.live = np.flatnonzero(~segment.rows.table["file"].isin(self.deleted).to_numpy())
            # The bitmap is kept with its selector: faiss does not own it.
            self._live_selector, self._live_bitmap = rows_selector(self.live, segment.info.rows)
        self.rows = segment.info.rows if self.live is None else len(self.live)

    def local(self, rows: np.ndarray) -> np.ndarray:
        """The segment's rows among the version's ``rows`` (sorted, as a filter's selection is)."""
        start, end = np.searchsorted(rows, [self.offset, self.offset + self.rows])
        return self._local(rows[start:end])

    def holds(self, rows: np.ndarray) -> np.ndarray:
        """Which of the version's ``rows`` are this segment's."""
        return (rows >= self.offset) & (rows < self.offset + self.rows)

    def _local(self, mine: np.ndarray) -> np.ndarray:
        mine = mine - self.offset
        return mine if self.live is None else self.live[mine]

    def read(self, rows: np.ndarray, columns: Sequence[str]) -> pd.DataFrame:
        """``columns`` of the version's ``rows``, all of them this segment's, from disk."""
        return self.segment.rows.read(self._local(rows), columns)

    def strings(self, rows: np.ndarray, column: str) -> list[str]:
        return self.segment.rows.strings(self._local(rows), column)

    def table(self) -> pd.DataFrame:
        """Its live rows' in-memory columns (rag.store.rows.IN_MEMORY)."""
        table = self.segment.rows.table
        return table if self.live is None else table.iloc[self.live]

    def files(self) -> pd.DataFrame:
        """One row per live file with its metadata, read from each file's first chunk."""
        table = self.segment.rows.table
        first = np.flatnonzero(~table["file"].duplicated().to_numpy())
        files = self.segment.rows.read(first, ["file", *FIELDS])
        return files[~files["file"].isin(self.deleted)]

    def search(self, query: np.ndarray, k: int, rows: np.ndarray | None, rescore: int, nprobe: int | None) -> list[Hit]:
        """The k nearest among its live rows, or among ``rows`` of the version's rows.

        A selection is applied inside FAISS (an ID selector), so it still returns k hits whenever k rows are
        selected; approximate indexes (IVF, HNSW) that find fewer inside it are completed by an exact search over the
        selected rows' stored vectors, and a selection of at most _EXACT_UP_TO rows is searched that way alone. A
        compressed index (IVF-PQ) gives its best ``rescore`` (or k) candidates, scored again exactly with the stored
        vectors: the order and the scores are then those of whole vectors. ``nprobe``: IVF cells searched (None: the
        index's own)."""
        selected = self.local(rows) if rows is not None else self.live
        available = self.rows if selected is None else len(selected)
        wanted = min(k, available)
        if wanted == 0:
            return []
        index = self.segment.index
        if (
            selected is not None
            and rows is not None
            and available <= _EXACT_UP_TO
            and not isinstance(index, faiss.IndexFlat)
        ):
            return [Hit(self._row(r), s) for r, s in self._exact(query, np.sort(selected), wanted)]
        compressed = isinstance(index, faiss.IndexIVFPQ) and rescore > 0
        if selected is not None and rows is not None:
            selector, _bitmap = rows_selector(selected, self.segment.info.rows)
            params = search_params(index, selector, nprobe)
        else:
            params = search_params(index, self._live_selector, nprobe)
        scores, ids = index.search(query, min(max(wanted, rescore), available) if compressed else wanted, params=params)
        found = [(int(r), float(s)) for r, s in zip(ids[0], scores[0], strict=True) if r >= 0]
        if selected is not None and len(found) < wanted:
            found = self._exact(query, np.sort(selected), wanted)
        elif compressed:
            found = self._exact(query, np.sort([r for r, _ in found]), wanted)
        return [Hit(self._row(r), s) for r, s in found]

    def _exact(self, query: np.ndarray, rows: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k best of the segment's ``rows`` (sorted: the memory-mapped vectors are read in order) by their stored
        vectors."""
        exact = np.asarray(self.segment.vectors[rows], dtype=np.float32) @ query[0]
        return [(int(rows[i]), float(exact[i])) for i in np.argsort(-exact)[:k]]

    def _row(self, local: int) -> int:
        return self.offset + (local if self.live is None else int(np.searchsorted(self.live, local)))


class IndexStore:
    """One loaded index version (rag.store.versions.open_index finds the current one): search vectors, read chunks
    and the manifest. Each segment's parts are checked against each other before it serves. ``reuse``: segments
    already open (another version's ``segments``), by folder, taken as they are: a segment never changes."""

    def __init__(self, root: str | Path, version: str = "", reuse: Mapping[Path, Segment] | None = None):
        self.root = Path(root)
        self.version = version
        self.manifest = read_manifest(self.root)
        self.segments: dict[Path, Segment] = {}
        self._parts: list[_Part] = []
        offset = 0
        for where in located(self.root, self.manifest):
            segment = (reuse or {}).get(where.path) or Segment(where.path, where.info)
            self.segments[where.path] = segment
            self._parts.append(_Part(segment, where, offset, where.embedded_by(self.manifest.embedding.model)))
            offset += self._parts[-1].rows
        # One row per chunk, what search reads of every one (rag.store.rows.IN_MEMORY); the rest by read().
        self.chunks = _concat([p.table() for p in self._parts])
        if self.manifest.index.vectors != len(self.chunks):
            raise ValueError(
                f"{self.root} is inconsistent, not serving it: its manifest counts {self.manifest.index.vectors} "
                f"chunks, its segments hold {len(self.chunks)}"
            )
        # One row per file with its metadata: filters and question matching work on files, not chunks.
        self.files = _file_table([p.files() for p in self._parts])

    def read(
        self, rows: Sequence[int] | np.ndarray | None = None, columns: Sequence[str] = CHUNK_COLUMNS
    ) -> pd.DataFrame:
        """Whole chunks, text and all, of the version's ``rows`` (None: every one) in the order asked, read from the
        segments' files."""
        rows = np.arange(len(self.chunks)) if rows is None else np.asarray(rows, dtype=np.int64)
        frames, positions = [], []
        for part, mine in self._by_part(rows):
            frames.append(part.read(rows[mine], columns))
            positions.append(mine)
        if not frames:
            return pd.DataFrame(columns=list(columns))
        order = np.argsort(np.concatenate(positions), kind="stable")
        return pd.concat(frames, ignore_index=True).iloc[order].reset_index(drop=True)

    def rows_of(self, files: Sequence[str] | pd.Series) -> np.ndarray:
        """The version's rows of ``files``, sorted: the runs of rows that hold them (a segment keeps each file's
        chunks together), so the work grows with the rows selected rather than with the collection."""
        starts, ends, run_files, names = self._file_runs
        codes = names.get_indexer(pd.Index(pd.unique(pd.Series(files, dtype=object))))
        wanted = np.zeros(len(names) + 1, dtype=bool)  # the last flag: files the version lacks (code -1)
        wanted[codes] = True
        wanted[-1] = False
        chosen = np.flatnonzero(wanted[run_files])
        if not len(chosen):
            return np.zeros(0, dtype=np.int64)
        starts, lengths = starts[chosen], ends[chosen] - starts[chosen]
        # Each run's rows: its start repeated, plus the position within it.
        return np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())

    def metadata_of(self, file: str) -> dict:
        """``file``'s metadata (``_plain_metadata``): what a search result carries of its document."""
        return self._metadata.get(file, {})

    @cached_property
    def _metadata(self) -> dict[str, dict]:
        return {row["file"]: _plain_metadata(row) for row in self.files.to_dict("records")}

    @cached_property
    def _file_runs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.Index]:
        """Where each run of rows of one file starts and ends, the file of each run (its position in the last) and
        the version's file names."""
        files = self.chunks["file"].astype("category")
        codes = files.cat.codes.to_numpy()
        first = np.ones(len(codes), dtype=bool)
        first[1:] = codes[1:] != codes[:-1]
        starts = np.flatnonzero(first)
        ends = np.append(starts[1:], len(codes))[: len(starts)]
        return starts, ends, codes[starts], files.cat.categories

    def strings(self, rows: Sequence[int] | np.ndarray, column: str) -> list[str]:
        """One column's values (text, chunk_id) of the version's ``rows``, in the order asked: what each hit of a
        search reads, without the frames ``read`` builds."""
        rows = np.asarray(rows, dtype=np.int64)
        out: list[str] = [""] * len(rows)
        for part, mine in self._by_part(rows):
            for at, value in zip(mine.tolist(), part.strings(rows[mine], column), strict=True):
                out[at] = value
        return out

    def _by_part(self, rows: np.ndarray) -> Iterator[tuple[_Part, np.ndarray]]:
        """Each segment that holds some of the version's ``rows``, with their positions among them."""
        for part in self._parts:
            mine = np.flatnonzero(part.holds(rows))
            if len(mine):
                yield part, mine

    def lexical(self) -> Lexical:
        """BM25 over the version's chunks, its segments' scored as one collection (rag.store.lexical.Lexical)."""
        return Lexical([(p.segment.lexical(), p.live) for p in self._parts], [p.model for p in self._parts])

    @property
    def models(self) -> list[str]:
        """The embedding models of its vectors: one, or the Latin-script files' and the other scripts' (the
        manifest's ``embedding`` and ``multilingual``)."""
        return list(dict.fromkeys(p.model for p in self._parts)) or [self.manifest.embedding.model]

    @property
    def embedding_model(self) -> str:
        return ", ".join(self.models)

    def search(
        self,
        query: np.ndarray,
        k: int,
        rows: np.ndarray | None = None,
        rescore: int = 0,
        model: str | None = None,
        nprobe: int | None = None,
    ) -> list[Hit]:
        """The k nearest chunks to one query vector; ``rows``: only among these chunk rows, sorted (a filter's
        selection); ``rescore``: candidates a compressed segment scores again with whole vectors (_Part.search);
        ``model``: only among the vectors of this model (the one that embedded the query; None: the version has one);
        ``nprobe``: IVF cells searched in each IVF segment (None: as it was built). Each segment gives its k nearest;
        the k best of them are the version's."""
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        parts = [p for p in self._parts if model is None or p.model == model]
        hits = [hit for part in parts for hit in part.search(query, k, rows, rescore, nprobe)]
        if len(parts) > 1:
            hits.sort(key=lambda h: -h.score)
        return hits[:k]
