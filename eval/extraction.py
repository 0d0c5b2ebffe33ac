"""How right document metadata comes out: company, form and fiscal year per file against a truth table.

Reads only the pages extraction reads (``ingest.metadata_extraction.metadata_pages``), through the same reader
as ingestion, so a folder of thousands of pages is checked in a minute and ``rag ingest`` of it
gives the same metadata. A company is right when the truth's name matches the document's name or
one of its aliases the way a question naming it would (``rag.filters.company_key``).

    python -m eval.extraction --docs ../shared/datasets/filings-mixed/docs \
        --truth ../shared/datasets/filings-mixed/truth.jsonl --out bench/results/extraction.json
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ingest.metadata_extraction import extract_metadata, metadata_pages
from ingest.pdf_pages import UnreadableDocument, read_pdf_pages
from rag.config import PdfConfig
from rag.filters import company_key

SCORED = ("company", "form", "fiscal_year")


def read_metadata(path: Path) -> dict:
    """One file's extracted metadata as a dict, or ``{"error": reason}``."""
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # a line per repaired object of a damaged file says nothing here
    try:
        doc = read_pdf_pages(path, PdfConfig(), only=metadata_pages)
    except UnreadableDocument as err:
        return {"error": str(err)}
    return extract_metadata(path.name, doc.texts, doc.info).model_dump(exclude_none=True)


def judge(found: dict, truth: dict) -> dict[str, bool]:
    """Per scored field, whether the extraction agrees with the truth."""
    names = {company_key(n) for n in [found.get("company"), *(found.get("aliases") or [])] if n}
    return {
        "company": company_key(truth["company"]) in names,
        "form": found.get("form") == truth["form"],
        "fiscal_year": found.get("fiscal_year") == truth["fiscal_year"],
    }


def check(docs: Path, truth_file: Path, workers: int = 2) -> dict:
    truth = [json.loads(line) for line in truth_file.read_text().splitlines() if line.strip()]
    # Spawned, not forked: the caller may be a Ray driver (a test session, a notebook), and a fork copies its gRPC
    # and worker threads mid-state.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        found = list(pool.map(read_metadata, [docs / t["file"] for t in truth]))
    rows = []
    for t, f in zip(truth, found, strict=True):
        verdict = judge(f, t)
        rows.append({"file": t["file"], "truth": t, "found": f, "right": verdict})
    shares = {k: sum(r["right"][k] for r in rows) / len(rows) for k in SCORED}
    return {"files": len(rows), "share_right": shares, "rows": rows}


def misses_table(result: dict) -> str:
    lines = [
        "| file | wrong | truth (company, form, year) | found (company, form, year, quarter) |",
        "|---|---|---|---|",
    ]
    for r in result["rows"]:
        wrong = [k for k in SCORED if not r["right"][k]]
        if wrong:
            t, f = r["truth"], r["found"]
            got = (
                f.get("error")
                or f"{f.get('company')}, {f.get('form')}, {f.get('fiscal_year')}, Q{f.get('fiscal_quarter')}"
            )
            lines.append(
                f"| {r['file']} | {', '.join(wrong)} | {t['company']}, {t['form']}, {t['fiscal_year']} | {got} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    result = check(args.docs, args.truth, args.workers)
    print(json.dumps({"files": result["files"], "share_right": result["share_right"]}, indent=1))
    print(misses_table(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
