"""The embedded default corpus: the project's own texts rendered to PDF, so the first run needs no outside data."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from reportlab.lib.pagesizes import LETTER
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.platypus import Flowable, PageBreak, Paragraph, SimpleDocTemplate


def _flowables(markdown: str, styles) -> list:
    """Headings, paragraphs and page breaks (a line holding only ``---``) from a small subset of Markdown."""
    out: list[Flowable] = []
    for block in markdown.split("\n\n"):
        block = block.strip()
        if not block:
            continue
        if block == "---":
            out.append(PageBreak())
        elif block.startswith("#"):
            level = min(len(block) - len(block.lstrip("#")), 3)
            out.append(Paragraph(block.lstrip("#").strip(), styles[f"Heading{level}"]))
        else:
            out.append(Paragraph(" ".join(block.split()), styles["BodyText"]))
    return out


def build_demo_corpus(out_dir: str | Path) -> list[Path]:
    """Write one PDF per text in ``ingest/demo_texts`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    styles = getSampleStyleSheet()
    written = []
    for text in sorted(resources.files("ingest").joinpath("demo_texts").iterdir(), key=lambda t: t.name):
        if not text.name.endswith(".md"):
            continue
        target = out_dir / (text.name[: -len(".md")] + ".pdf")
        doc = SimpleDocTemplate(str(target), pagesize=LETTER, title=text.name, invariant=1)
        doc.build(_flowables(text.read_text(), styles))
        written.append(target)
    return written
