import difflib
import os

import pypdf
import pytest

from ingest.pdf_pages import UnreadableDocument, read_pdf_pages
from ingest.planning import document_paths, unusable_entries
from rag.config import PdfConfig
from tests.pdf_factory import bad_files, not_files, text_pdf


def test_pages_of_a_real_filing(sec_docs):
    doc = read_pdf_pages(sec_docs / "2023 Q3 AAPL.pdf", PdfConfig())
    assert len(doc.texts) == 29
    assert "Apple Inc." in doc.texts[0]
    assert doc.note is None


def test_pdfium_reads_the_words_pypdf_reads_without_its_line_end_marks(sec_docs):
    path = sec_docs / "2022 Q3 AAPL.pdf"
    pdfium, plain = (read_pdf_pages(path, PdfConfig(extractor=e)).texts for e in ("pdfium", "pypdf"))
    assert len(pdfium) == len(plain) == 28
    for a, b in zip(pdfium, plain, strict=True):
        assert difflib.SequenceMatcher(None, a.split(), b.split(), autojunk=False).ratio() > 0.98
    text = "\n".join(pdfium)
    # pdfium ends lines with CR LF and marks a word hyphenated across a line end with \x02
    assert "\r" not in text and "\x02" not in text and "credit-\nfinancing" in text


@pytest.mark.slow  # parses two 70-page filings twice each: 24 s
@pytest.mark.parametrize("name", ["2023 Q1 MSFT.pdf", "2023 Q2 MSFT.pdf"])
def test_pypdf_limit_is_raised_deliberately(sec_docs, name):
    with pytest.raises(pypdf.errors.LimitReachedError):
        [p.extract_text() for p in pypdf.PdfReader(sec_docs / name).pages]
    doc = read_pdf_pages(sec_docs / name, PdfConfig())
    assert len(doc.texts) in (72, 74)
    assert "MICROSOFT CORPORATION" in doc.texts[0].upper()
    assert "raised pypdf limits" in doc.note


def test_limit_error_is_a_failure_when_raising_is_off(sec_docs):
    with pytest.raises(UnreadableDocument, match="safety limit"):
        read_pdf_pages(sec_docs / "2023 Q1 MSFT.pdf", PdfConfig(raise_limits_on_error=False))


def test_each_bad_file_gets_its_reason(tmp_path):
    good = text_pdf(tmp_path / "good.pdf", ["Quarterly revenue grew by four percent. " * 20] * 3)
    expected = bad_files(tmp_path / "bad", good)
    for name, word in expected.items():
        with pytest.raises(UnreadableDocument, match=word):
            read_pdf_pages(tmp_path / "bad" / name, PdfConfig())
    assert len(read_pdf_pages(good, PdfConfig()).texts) == 3


def test_entries_that_look_like_documents_but_are_no_file_are_named(tmp_path):
    expected = not_files(tmp_path / "docs")
    os.mkfifo(tmp_path / "docs" / "pipe.pdf")
    (tmp_path / "docs" / "folder.pdf" / "inside.pdf").write_bytes(b"%PDF-1.7\n")
    found = unusable_entries(tmp_path / "docs")
    assert set(found) == set(expected) | {"pipe.pdf"}
    for name, word in {**expected, "pipe.pdf": "not a regular file"}.items():
        assert word in found[name]
    assert list(document_paths(tmp_path / "docs")) == ["folder.pdf/inside.pdf"]  # a folder's files are still read
