"""One index version opened for reading: its vectors searched, its chunks and manifest read (rag.store.versions
finds the current one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from rag.doc_metadata import FIELDS, with_header
from rag.store.files import (
    check_sizes,
    read_chunks,
    read_faiss,
    read_lexical,
    read_manifest,
    read_vectors,
    search_texts,
)
from rag.store.lexical import Bm25
from rag.store.vectors import search_params


@dataclass
class Hit:
    row: int  # position in the chunk store
    score: float


class IndexStore:
    """One loaded index version (rag.store.versions.open_index finds the current one): search vectors, read chunks
    and the manifest. Its three parts are checked against each other before it serves."""

    def __init__(self, root: str | Path, version: str = ""):
        self.root = Path(root)
        self.version = version
        self.manifest = read_manifest(self.root)
        check_sizes(self.root, self.manifest)
        self.chunks = read_chunks(self.root)
        self.index = read_faiss(self.root)
        counts = {"manifest": self.manifest.index.vectors, "faiss": self.index.ntotal, "chunks": len(self.chunks)}
        if len(set(counts.values())) > 1:
            raise ValueError(f"{self.root} is inconsistent, not serving it: {counts}")
        # One row per file with its metadata: filters and question matching work on files, not chunks.
        self.files = self.chunks.drop_duplicates("file")[["file", *FIELDS]].reset_index(drop=True)
        self.files = self.files.astype(object).where(self.files.notna(), None)
        for column in ("fiscal_year", "fiscal_quarter"):  # Parquet stores a column with gaps as floats: 2018.0
            self.files[column] = [None if v is None else int(v) for v in self.files[column]]
        # Mapped now, so a version pruned from disk while it is still being served stays readable.
        self.vectors = read_vectors(self.root, mapped=True)

    def search_text(self, row: int) -> str:
        """What was embedded for a chunk: its header, then its text."""
        return with_header(str(self.chunks.at[row, "header"]), str(self.chunks.at[row, "text"]))

    def lexical(self) -> Bm25:
        """BM25 over the chunks: the one stored with the version, memory-mapped, or built now for a version stored
        without one."""
        return read_lexical(self.root, self.manifest) or Bm25.build(search_texts(self.chunks))

    @property
    def embedding_model(self) -> str:
        return self.manifest.embedding.model

    def search(self, query: np.ndarray, k: int, rows: np.ndarray | None = None) -> list[Hit]:
        """The k nearest chunks to one query vector; ``rows``: only among these chunk rows (a filter's selection).

        A selection is applied inside FAISS (an ID selector), so it still returns k hits whenever k rows
        are selected; approximate indexes (IVF, HNSW) that find fewer inside it are completed by an
        exact search over the selected rows' stored vectors.
        """
        query = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        wanted = min(k, self.index.ntotal if rows is None else len(rows))
        if wanted == 0:
            return []
        params = None if rows is None else search_params(self.index, faiss.IDSelectorBatch(rows.astype(np.int64)))
        scores, ids = self.index.search(query, wanted, params=params)
        hits = [Hit(int(r), float(s)) for r, s in zip(ids[0], scores[0], strict=True) if r >= 0]
        if rows is not None and len(hits) < wanted:
            selected = np.sort(rows)
            exact = np.asarray(self.vectors[selected], dtype=np.float32) @ query[0]
            hits = [Hit(int(selected[i]), float(exact[i])) for i in np.argsort(-exact)[:wanted]]
        return hits
