"""Small PDFs made on the spot: good ones with known text, and every kind of bad input a user meets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pypdf
from reportlab.lib.pagesizes import LETTER
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen import canvas


def text_pdf(path: Path, pages: list[str]) -> Path:
    """One page per string; long strings wrap at 90 characters a line."""
    c = canvas.Canvas(str(path), pagesize=LETTER, invariant=1)
    for text in pages:
        y = 740
        words, line = text.split(), ""
        for word in words:
            if len(line) + len(word) > 90:
                c.drawString(40, y, line)
                y, line = y - 14, ""
            line = f"{line} {word}".strip()
        c.drawString(40, y, line)
        c.showPage()
    c.save()
    return path


def cover_pdf(path: Path, lines: list[str], small_caps: str | None = None) -> Path:
    """A one-page cover, a line of text each; the line ``small_caps`` is set in small capitals as designers set
    names: each word's first letter larger, a little apart from the rest (extraction reads the gap as a space)."""
    c = canvas.Canvas(str(path), pagesize=LETTER, invariant=1)
    y = 750
    for line in lines:
        if line == small_caps:
            x = 40.0
            for word in line.split():
                first, rest = word[0], word[1:].upper()
                c.setFont("Helvetica", 14)
                c.drawString(x, y, first)
                x += stringWidth(first, "Helvetica", 14) + 3
                c.setFont("Helvetica", 10)
                c.drawString(x, y, rest)
                x += stringWidth(f"{rest} ", "Helvetica", 10)
        else:
            c.setFont("Helvetica", 10)
            c.drawString(40, y, line)
        y -= 16
    c.showPage()
    c.save()
    return path


def bad_files(folder: Path, good_pdf: Path) -> dict[str, str]:
    """Write one file per failure kind into ``folder``; returns file name -> a word its reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.pdf").write_bytes(b"")
    (folder / "notes.txt").write_text("plain text, not a PDF\n")
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n")
    data = good_pdf.read_bytes()
    (folder / "truncated.pdf").write_bytes(data[: len(data) // 2])

    writer = pypdf.PdfWriter(clone_from=good_pdf)
    writer.encrypt(user_password="secret", owner_password="owner")
    with (folder / "encrypted.pdf").open("wb") as f:
        writer.write(f)

    blank = pypdf.PdfWriter()
    for _ in range(2):
        blank.add_blank_page(width=612, height=792)
    with (folder / "scanned.pdf").open("wb") as f:
        blank.write(f)
    return {
        "empty.pdf": "empty",
        "notes.txt": "not a PDF",
        "corrupt.pdf": "corrupt",
        "truncated.pdf": "truncated",
        "encrypted.pdf": "encrypted",
        "scanned.pdf": "no extractable text",
    }


def not_files(folder: Path) -> dict[str, str]:
    """Entries that look like documents but are no readable file; returns name -> a word its reason must contain.
    (Copy a folder holding them with ``shutil.copytree(..., symlinks=True)``.)"""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "loop.pdf").symlink_to("loop.pdf")
    (folder / "gone.pdf").symlink_to("nowhere/gone.pdf")
    (folder / "folder.pdf").mkdir()
    return {"loop.pdf": "loops", "gone.pdf": "to nothing", "folder.pdf": "a directory"}


def copy_docs(names: list[str], source: Path, target: Path, pages: int | None = None) -> Path:
    """The named files of ``source`` into ``target``; with ``pages``, only their first pages (a real filing's cover,
    contents and statements: what a test about something else needs of it, in a fraction of the embedding time)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if pages is None:
            shutil.copy(source / name, target / name)
        else:
            first_pages(source / name, target / name, pages)
    return target


def first_pages(source: Path, target: Path, pages: int) -> Path:
    writer = pypdf.PdfWriter()
    for page in pypdf.PdfReader(source).pages[:pages]:
        writer.add_page(page)
    writer.write(target)
    return target


def chinese_pdf(path: Path, pages: list[str], per_line: int = 38) -> Path:
    """One page per string in a CID font (STSong-Light, named, not embedded, as many Chinese PDFs do), lines broken
    every ``per_line`` characters wherever that falls, as a layout breaks them; a "\\n" starts a new line."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    c = canvas.Canvas(str(path), pagesize=LETTER, invariant=1)
    for text in pages:
        c.setFont("STSong-Light", 12)
        y = 740
        for paragraph in text.split("\n"):
            for start in range(0, max(len(paragraph), 1), per_line):
                c.drawString(40, y, paragraph[start : start + per_line])
                y -= 16
        c.showPage()
    c.save()
    return path


def scanned_pdf(path: Path, source: Path, pages: list[int], dpi: int = 200) -> Path:
    """Pages of ``source`` (0-based) as a scanner saves them: grey images, one a page, with no text layer."""
    import pypdfium2

    document = pypdfium2.PdfDocument(str(source))
    images = [document[i].render(scale=dpi / 72, grayscale=True).to_pil().convert("L") for i in pages]
    document.close()
    images[0].save(path, save_all=True, append_images=images[1:], resolution=dpi)
    return path


def blank_scan(path: Path, dpi: int = 200) -> Path:
    """An image-only page with nothing on it to read: a blank sheet through a scanner."""
    from PIL import Image

    Image.new("L", (int(8.5 * dpi), 11 * dpi), 250).save(path, resolution=dpi)
    return path
