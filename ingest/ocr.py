"""Scanned pages to text: a page with no text layer is rendered (pypdfium2) and read by Tesseract (pytesseract), in
the parse task that found it, on that task's CPU share."""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rag.config import PdfConfig
from rag.languages import HAN_CHARS, join_wrapped_lines

_INSTALL = "apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim"
_HAN_GAP = re.compile(rf"(?<=[{HAN_CHARS}，。；：、！？）]) (?=[{HAN_CHARS}，。；：、！？（])")


@dataclass
class OcrPage:
    page: int  # 1-based
    confidence: float | None = None  # Tesseract's mean word confidence, 0-100
    error: str | None = None  # why the page has no text: OCR could not read it, or OCR is unavailable


@cache
def unavailable(languages: str) -> str | None:
    """Why OCR cannot run here (Tesseract or one of ``languages`` missing), or None when it can."""
    if shutil.which("tesseract") is None:
        return f"Tesseract is not installed ({_INSTALL})"
    import pytesseract

    missing = set(languages.split("+")) - set(pytesseract.get_languages(config=""))
    if missing:
        return f"Tesseract has no {'+'.join(sorted(missing))} language data ({_INSTALL})"
    return None


def _text(data: dict) -> tuple[str, float | None]:
    """Tesseract's words back into lines and paragraphs, with the mean confidence of its words."""
    lines: dict[tuple[int, int, int], list[str]] = {}
    confidences = []
    for word, conf, block, par, line in zip(
        data["text"], data["conf"], data["block_num"], data["par_num"], data["line_num"], strict=True
    ):
        if float(conf) < 0 or not word.strip():  # -1: a layout element, not a word
            continue
        lines.setdefault((block, par, line), []).append(word)
        confidences.append(float(conf))
    paragraphs: dict[tuple[int, int], list[str]] = {}
    for (block, par, _), words in lines.items():
        paragraphs.setdefault((block, par), []).append(" ".join(words))
    text = "\n\n".join("\n".join(p) for p in paragraphs.values())
    # Tesseract spaces Chinese characters apart like words: Chinese has no spaces.
    text = _HAN_GAP.sub("", text)
    return join_wrapped_lines(text), (sum(confidences) / len(confidences) if confidences else None)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Tesseract (a subprocess) on one thread: its own would take cores the parse task did not reserve. Set around
    its run only, unless the environment sets it already: left in the process, the variable also held every OpenMP
    runtime started after it to one thread (torch's, and a Ray cluster's workers started from this process)."""
    if "OMP_THREAD_LIMIT" in os.environ:
        yield
        return
    os.environ["OMP_THREAD_LIMIT"] = "1"
    try:
        yield
    finally:
        os.environ.pop("OMP_THREAD_LIMIT", None)


def ocr_pages(source: Path | io.BytesIO, numbers: list[int], cfg: PdfConfig) -> tuple[dict[int, str], list[OcrPage]]:
    """The text Tesseract reads on pages ``numbers`` (0-based) of a PDF, and what became of each page."""
    reason = unavailable(cfg.ocr_languages)
    if reason:
        return {}, [OcrPage(n + 1, error=f"no text layer; OCR unavailable: {reason}") for n in numbers]
    import pypdfium2
    import pytesseract

    try:
        document = pypdfium2.PdfDocument(source.getvalue() if isinstance(source, io.BytesIO) else str(source))
    except Exception as err:  # pdfium is stricter than pypdf about some damaged files
        return {}, [
            OcrPage(n + 1, error=f"no text layer; rendering failed: {type(err).__name__}: {err}") for n in numbers
        ]
    texts, pages = {}, []
    try:
        for n in numbers:
            try:
                image = document[n].render(scale=cfg.ocr_dpi / 72, grayscale=True).to_pil()
                with _one_thread():
                    data = pytesseract.image_to_data(image, lang=cfg.ocr_languages, output_type=pytesseract.Output.DICT)
            except Exception as err:  # one page that cannot be rendered or read costs that page, not the file
                pages.append(OcrPage(n + 1, error=f"OCR failed: {type(err).__name__}: {err}"))
                continue
            text, confidence = _text(data)
            if not text.strip():
                pages.append(OcrPage(n + 1, confidence, "OCR found no text (a blank or image-only page)"))
            elif confidence is not None and confidence < cfg.ocr_min_confidence:
                pages.append(
                    OcrPage(
                        n + 1,
                        round(confidence, 1),
                        f"OCR confidence {confidence:.0f} is below "
                        f"pdf.ocr_min_confidence ({cfg.ocr_min_confidence:.0f}): text not indexed",
                    )
                )
            else:
                texts[n] = text
                pages.append(OcrPage(n + 1, round(confidence, 1) if confidence is not None else None))
    finally:
        document.close()
    return texts, pages
