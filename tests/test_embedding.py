"""The encoder's forward passes: formed by token length, returned in the order given, the same vectors."""

import numpy as np

from ingest.pdf_pages import read_pdf_pages
from rag.chunking import make_splitter, split_text
from rag.config import ChunkingConfig, EmbeddingConfig, PdfConfig
from rag.embedding import TextEncoder


def test_passes_go_by_token_length_and_vectors_come_back_in_order(sec_docs):
    pages = read_pdf_pages(sec_docs / "2023 Q3 AAPL.pdf", PdfConfig()).texts[:15]
    splitter = make_splitter(ChunkingConfig(), EmbeddingConfig().model)
    chunks = [c.text for page in pages for c in split_text(splitter, page)]
    assert len(chunks) >= 20
    texts = chunks[:20] + ["Net sales.", "iPhone"]  # two short ones last: a pass of their own, not padded to 256
    # float32: in bfloat16 (what `auto` picks on CPUs that multiply it natively) a pass's padding moves the last
    # digits of its vectors (measured: up to 1.8e-3, cosine 0.99997), so "as if alone" holds there to 1e-2, not 1e-5.
    encoder = TextEncoder(EmbeddingConfig(encode_batch_size=8, dtype="float32"))
    passes: list[int] = []
    vectors = encoder.encode(texts, on_encoded=passes.append)

    assert passes == [8, 8, 6]
    alone = np.concatenate([encoder.encode([t]) for t in texts])
    assert np.allclose(vectors, alone, atol=1e-5)  # each text's vector as if encoded on its own
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    lengths = encoder.model.lengths(texts, query=False)
    order = np.argsort(-lengths, kind="stable")
    assert set(order[-2:]) == {20, 21}  # the passes follow token counts
    assert lengths.max() <= 256 and encoder.encode([]).shape == (0, encoder.dim)
