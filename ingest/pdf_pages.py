"""One PDF to its pages' text with pypdf, or a reason a person can act on when it cannot be read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pypdf
from pypdf.errors import FileNotDecryptedError, LimitReachedError, PdfReadError, PyPdfError

from rag.config import PdfConfig

# pypdf itself looks for the end marker in the last kilobyte.
_EOF_WINDOW = 1024


class UnreadableDocument(Exception):
    """The file cannot be indexed; the message says why."""


@dataclass
class PdfPages:
    texts: list[str]  # index i holds page i + 1
    note: str | None = None  # how the file was read when that took something unusual
    title: str | None = None  # the info dictionary's /Title, if any


def _check_container(path: Path) -> None:
    """Reject what is not a whole PDF before pypdf guesses its way through it."""
    size = path.stat().st_size
    if size == 0:
        raise UnreadableDocument("empty file (0 bytes)")
    with path.open("rb") as f:
        head = f.read(1024)
        f.seek(max(0, size - _EOF_WINDOW))
        tail = f.read()
    if b"%PDF-" not in head:
        raise UnreadableDocument("not a PDF: no %PDF- header")
    if b"%%EOF" not in tail:
        raise UnreadableDocument("truncated PDF: no %%EOF marker at the end of the file")


def _info_title(reader: pypdf.PdfReader) -> str | None:
    try:
        title = (reader.metadata or {}).get("/Title")
    except Exception:  # a broken info dictionary costs the title, not the file
        return None
    return str(title) if title else None


def _extract(path: Path) -> tuple[list[str], str | None]:
    reader = pypdf.PdfReader(path)
    if reader.is_encrypted and not reader.decrypt(""):
        raise UnreadableDocument("encrypted PDF: a password is required")
    return [page.extract_text() or "" for page in reader.pages], _info_title(reader)


def read_pdf_pages(path: str | Path, cfg: PdfConfig) -> PdfPages:
    """Every page's text; raises UnreadableDocument for corrupt, truncated, encrypted, empty or zero-text files."""
    path = Path(path)
    _check_container(path)
    note = None
    try:
        try:
            texts, title = _extract(path)
        except LimitReachedError as err:
            if not cfg.raise_limits_on_error:
                raise UnreadableDocument(f"pypdf safety limit reached: {err}") from err
            # Large real filings exceed pypdf's default limits; raising them for this file alone is deliberate.
            with pypdf.apply_configuration(**cfg.raised_limits):
                texts, title = _extract(path)
            note = f"parsed with raised pypdf limits after: {err}"
    except UnreadableDocument:
        raise
    except FileNotDecryptedError as err:
        raise UnreadableDocument(f"encrypted PDF: {err}") from err
    except (PdfReadError, PyPdfError) as err:
        raise UnreadableDocument(f"corrupt PDF: {type(err).__name__}: {err}") from err
    except Exception as err:  # pypdf raises plain KeyError/ValueError/... on some malformed files
        raise UnreadableDocument(f"corrupt PDF: {type(err).__name__}: {err}") from err
    if not texts:
        raise UnreadableDocument("PDF has no pages")
    if sum(len(t.strip()) for t in texts) < cfg.min_chars:
        raise UnreadableDocument(
            f"no extractable text in {len(texts)} page(s): scanned or image-only PDF (OCR is not supported)"
        )
    return PdfPages(texts, note, title)
