"""Page text to chunks with character offsets, shared by ingestion, the benchmark baseline and eval sweeps."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag.config import ChunkingConfig
from rag.models import resolve_model


@dataclass(frozen=True)
class Chunk:
    index: int  # position among the chunks of its page
    text: str
    char_start: int  # offsets into the page's extracted text
    char_end: int


def make_splitter(cfg: ChunkingConfig, embedding_model: str) -> RecursiveCharacterTextSplitter:
    """A recursive splitter measuring length in characters, or in the embedding model's tokens."""
    if cfg.token_aware:
        return RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
            _tokenizer(embedding_model),
            chunk_size=cfg.chunk_size,
            chunk_overlap=cfg.chunk_overlap,
            add_start_index=True,
        )
    return RecursiveCharacterTextSplitter(
        chunk_size=cfg.chunk_size, chunk_overlap=cfg.chunk_overlap, add_start_index=True
    )


@lru_cache(maxsize=4)
def _tokenizer(model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(model))


def split_text(splitter: RecursiveCharacterTextSplitter, text: str) -> list[Chunk]:
    docs = splitter.create_documents([text])
    chunks = []
    for i, doc in enumerate(docs):
        start = int(doc.metadata["start_index"])
        if start < 0:  # the splitter's own search can miss in highly repetitive text
            start = text.find(doc.page_content)
        chunks.append(Chunk(i, doc.page_content, start, start + len(doc.page_content)))
    return chunks
