"""pdfium's page text against pypdf's, page by page, through the project's own reader (ingest.pdf_pages).

    python -m bench.extractors [--docs DIR ...] [--limit N] [--out bench/results]

For every page of every file, each extractor's text is read by read_pdf_pages with pdf.extractor set to it (OCR off:
the text layer is what is compared), and timed. Agreement of a page is difflib's ratio over the two texts' words
(1.0: the same words in the same order); a page under 0.9 is listed with the first words where the two differ.
Writes extractors.json and extractors.png.
"""

from __future__ import annotations

import difflib
import statistics
import time
from pathlib import Path

from bench.harness import each_folder
from bench.paths import DATASETS
from rag.languages import has_han

DEFAULT_DOCS = [DATASETS / "sec-10q" / "docs", DATASETS / "filings-mixed" / "docs", DATASETS / "zh-wiki" / "docs"]
EXTRACTORS = ("pypdf", "pdfium")
LOW = 0.9


def words(text: str) -> list[str]:
    """Words, and Han characters one by one (Chinese has no spaces to split on)."""
    out: list[str] = []
    for word in text.split():
        out.extend(word if has_han(word) else [word])
    return out


def first_difference(a: list[str], b: list[str]) -> str:
    for tag, i1, _, j1, _ in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            return f"pypdf {' '.join(a[i1 : i1 + 8])!r} / pdfium {' '.join(b[j1 : j1 + 8])!r}"
    return ""


def compare_folder(folder: Path, limit: int | None) -> dict:
    from ingest.pdf_pages import UnreadableDocument, read_pdf_pages
    from rag.config import PdfConfig

    seconds = dict.fromkeys(EXTRACTORS, 0.0)
    ratios: list[float] = []
    low: list[dict] = []
    refused: dict[str, dict[str, str]] = {}
    for path in sorted(folder.glob("*.pdf"))[:limit]:
        texts = {}
        for extractor in EXTRACTORS:
            started = time.process_time()
            try:
                texts[extractor] = read_pdf_pages(path, PdfConfig(extractor=extractor), ocr=False).texts
            except UnreadableDocument as err:
                refused.setdefault(path.name, {})[extractor] = str(err)
            seconds[extractor] += time.process_time() - started
        if len(texts) < 2:
            continue
        for number, (a, b) in enumerate(zip(*(map(words, texts[e]) for e in EXTRACTORS), strict=True), start=1):
            ratio = difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() if a or b else 1.0
            ratios.append(ratio)
            if ratio < LOW:
                low.append(
                    {
                        "file": path.name,
                        "page": number,
                        "agreement": round(ratio, 3),
                        "words": [len(a), len(b)],
                        "first_difference": first_difference(a, b),
                    }
                )
    return {
        "folder": str(folder),
        "pages": len(ratios),
        "core_seconds": seconds,
        "pages_per_core_second": {e: len(ratios) / s for e, s in seconds.items() if s},
        "agreement": {
            "mean": statistics.fmean(ratios),
            "median": statistics.median(ratios),
            "min": min(ratios),
            f"share_at_least_{LOW}": sum(r >= LOW for r in ratios) / len(ratios),
        },
        "low_pages": low,
        "refused": refused,
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    names = [Path(r["folder"]).parent.name for r in results]
    width = 0.38
    for k, extractor in enumerate(EXTRACTORS):
        rates = [r["pages_per_core_second"].get(extractor, 0) for r in results]
        bars = ax.bar([i + (k - 0.5) * width for i in range(len(results))], rates, width, label=extractor)
        ax.bar_label(bars, fmt="%.0f")
    ax.set_xticks(
        range(len(results)),
        [f"{n}\n(agreement {r['agreement']['mean']:.3f})" for n, r in zip(names, results, strict=True)],
    )
    ax.set_ylabel("pages per core-second")
    ax.set_title("Page text: pdfium against pypdf (same reader, OCR off)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def line(r: dict) -> str:
    return (
        f"{r['folder']}: {r['pages']} pages; core-s {', '.join(f'{e} {s:.1f}' for e, s in r['core_seconds'].items())}; "
        f"agreement mean {r['agreement']['mean']:.4f} min {r['agreement']['min']:.3f}; "
        f"{len(r['low_pages'])} pages under {LOW}; refused {r['refused'] or 'none'}"
    )


if __name__ == "__main__":
    each_folder(__doc__, DEFAULT_DOCS, compare_folder, "extractors", plot, line)
