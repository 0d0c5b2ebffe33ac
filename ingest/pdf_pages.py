"""One PDF to its pages' text, or a reason a person can act on when it cannot be read.

pypdf opens the file (its checks give the reasons a file is refused, and its info dictionary the title); the text of
its pages comes from pdfium, a C library about twenty times faster than pypdf's pure-Python extraction, or from pypdf
where pdf.extractor says so or pdfium cannot read the file as pypdf does."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pypdf
from pypdf.errors import FileNotDecryptedError, LimitReachedError

from ingest.ocr import OcrPage, ocr_pages, unavailable
from rag.config import PdfConfig
from rag.languages import join_wrapped_lines

# pdfium ends its lines with CR LF and writes a word hyphenated across a line end as one, with \x02 for the hyphen:
# both as pypdf writes them ("credit-\nfinancing")
_PDFIUM_BREAKS = str.maketrans({"\r": None, "\x02": "-\n"})
# pypdf itself looks for the end marker in the last kilobyte.
_EOF_WINDOW = 1024
_CATALOG = re.compile(rb"(\d+)\s+(\d+)\s+obj\s*<<(?:(?!endobj).){0,400}?/Type\s*/Catalog", re.S)
_OBJECT = re.compile(rb"(\d+)\s+\d+\s+obj\b")


class UnreadableDocument(Exception):
    """The file cannot be indexed; the message says why."""


PageChoice = Callable[[int], Iterable[int]]


@dataclass
class PdfInfo:
    """What the PDF's info dictionary says of it, where it says anything."""

    title: str | None = None
    subject: str | None = None


@dataclass
class PdfPages:
    texts: list[str]  # index i holds page i + 1
    note: str | None = None  # how the file was read when that took something unusual
    info: PdfInfo = field(default_factory=PdfInfo)
    ocr: list[OcrPage] = field(default_factory=list)  # the pages that had no text layer, and what OCR made of them


def _check_container(path: Path) -> bool:
    """Reject what is not a PDF before pypdf guesses its way through it; False where its end is missing (truncated)."""
    size = path.stat().st_size
    if size == 0:
        raise UnreadableDocument("empty file (0 bytes)")
    with path.open("rb") as f:
        head = f.read(1024)
        f.seek(max(0, size - _EOF_WINDOW))
        tail = f.read()
    if b"%PDF-" not in head:
        raise UnreadableDocument("not a PDF: no %PDF- header")
    return b"%%EOF" in tail


def _info(reader: pypdf.PdfReader) -> PdfInfo:
    try:
        info = reader.metadata
        fields = [info.get(key) for key in ("/Title", "/Subject")] if info else []
    except Exception:  # a broken info dictionary costs its fields, not the file
        return PdfInfo()
    return PdfInfo(*(str(v) if v else None for v in fields))


def _rebuilt(path: Path) -> io.BytesIO:
    """A truncated file with a trailer pointing at its catalog appended: pypdf then rebuilds the cross-reference table
    from the objects that are there (a download cut short loses its end, where that table lives)."""
    data = path.read_bytes()
    catalog = _CATALOG.search(data)
    if not catalog:
        raise UnreadableDocument(
            "truncated PDF: no %%EOF marker at the end of the file, and no catalog to rebuild from"
        )
    size = max(int(n) for n in _OBJECT.findall(data)) + 1
    number, generation = catalog.groups()
    trailer = b"\ntrailer\n<< /Root %s %s R /Size %d >>\nstartxref\n0\n%%%%EOF\n" % (number, generation, size)
    return io.BytesIO(data + trailer)


def _pdfium_texts(
    source: Path | io.BytesIO, count: int, wanted: set[int], on_page: Callable[[int], None]
) -> list[str] | None:
    """pdfium's text of the wanted pages ("" for the rest); None where pdfium cannot open or read the file or counts
    other pages than pypdf (the page numbers a chunk cites must not depend on which library read it)."""
    import pypdfium2

    try:
        document = pypdfium2.PdfDocument(source.getvalue() if isinstance(source, io.BytesIO) else str(source))
    except Exception:  # pdfium refuses some damaged files pypdf reads
        return None
    try:
        if len(document) != count:
            return None
        texts = []
        for i in range(count):
            if i in wanted:
                page = document[i]
                textpage = page.get_textpage()
                texts.append(textpage.get_text_bounded().translate(_PDFIUM_BREAKS))
                textpage.close()
                page.close()
            else:
                texts.append("")
            on_page(i)
        return texts
    except Exception:  # a page pdfium cannot read: the file is read by pypdf, as one pdfium cannot open
        return None
    finally:
        document.close()


def _extract(
    source: Path | io.BytesIO, only: PageChoice | None, cfg: PdfConfig, on_page: Callable[[int], None]
) -> tuple[list[str], PdfInfo, set[int]]:
    """Every wanted page's text ("" for the rest), the info dictionary, and which pages were wanted."""
    reader = pypdf.PdfReader(source)
    if reader.is_encrypted and not reader.decrypt(""):
        raise UnreadableDocument("encrypted PDF: a password is required")
    count = len(reader.pages)
    wanted = set(only(count)) if only else set(range(count))
    texts = _pdfium_texts(source, count, wanted, on_page) if cfg.extractor == "pdfium" else None
    if texts is None:
        texts = []
        for i, page in enumerate(reader.pages):
            texts.append((page.extract_text() or "") if i in wanted else "")
            on_page(i)
    return [join_wrapped_lines(t) for t in texts], _info(reader), wanted


def _read_scans(source: Path | io.BytesIO, texts: list[str], wanted: set[int], cfg: PdfConfig) -> list[OcrPage]:
    """OCR into ``texts`` the wanted pages whose text layer is (nearly) empty; what became of each such page."""
    scanned = sorted(i for i in wanted if len(texts[i].strip()) < cfg.ocr_below_chars)
    if not scanned:
        return []
    found, pages = ocr_pages(source, scanned, cfg)
    for i, text in found.items():
        texts[i] = text
    return pages


def _why_no_text(cfg: PdfConfig, ocr: bool, scans: list[OcrPage]) -> str:
    if cfg.ocr == "never" or not ocr:
        return "OCR is off (pdf.ocr: never)"
    missing = unavailable(cfg.ocr_languages)
    if missing:
        return f"OCR unavailable: {missing}"
    return f"OCR read none of them: {scans[0].error}"


def read_pdf_pages(
    path: str | Path,
    cfg: PdfConfig,
    only: PageChoice | None = None,
    ocr: bool = True,
    on_page: Callable[[int], None] = lambda _: None,
) -> PdfPages:
    """Every page's text, OCR'd where a page has no text layer (``ocr`` and pdf.ocr allowing); raises
    UnreadableDocument for corrupt, encrypted, empty or zero-text files and for truncated ones with nothing readable.
    ``only``: which pages (0-based, given the page count) to extract; the rest are "". ``on_page(i)``: called as each
    page is read (again for a file read a second time with raised limits)."""
    path = Path(path)
    whole = _check_container(path)
    note = None if whole else "truncated PDF (no %%EOF marker): read from the objects that are there"
    source = path if whole else _rebuilt(path)
    try:
        try:
            texts, info, wanted = _extract(source, only, cfg, on_page)
        except LimitReachedError as err:
            if not cfg.raise_limits_on_error:
                raise UnreadableDocument(f"pypdf safety limit reached: {err}") from err
            # Large real filings exceed pypdf's default limits; raising them for this file alone is deliberate.
            source = path if whole else _rebuilt(path)
            with pypdf.apply_configuration(None, **cfg.raised_limits):
                texts, info, wanted = _extract(source, only, cfg, on_page)
            note = "; ".join(filter(None, [note, f"parsed with raised pypdf limits after: {err}"]))
    except UnreadableDocument:
        raise
    except FileNotDecryptedError as err:
        raise UnreadableDocument(f"encrypted PDF: {err}") from err
    except Exception as err:  # pypdf raises its own errors, and plain KeyError/ValueError/... on malformed files
        kind = "corrupt PDF" if whole else "truncated PDF (no %%EOF marker)"
        raise UnreadableDocument(f"{kind}: {type(err).__name__}: {err}") from err
    if not texts:
        raise UnreadableDocument("PDF has no pages")
    scans = _read_scans(source, texts, wanted, cfg) if cfg.ocr == "auto" and ocr else []
    if sum(len(t.strip()) for t in texts) < cfg.min_chars:
        if not whole:
            raise UnreadableDocument("truncated PDF (no %%EOF marker): no text in what is there")
        raise UnreadableDocument(
            f"no extractable text in {len(texts)} page(s): scanned or image-only PDF; {_why_no_text(cfg, ocr, scans)}"
        )
    return PdfPages(texts, note, info, scans)
