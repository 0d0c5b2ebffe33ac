"""Each file's metadata, read from its pages and its PDF info, with a sidecar file that overrides.

Nothing here knows any company. ``ingest.forms`` reads what kind of document it is and the period it
covers, ``ingest.companies`` who it is about (the registrant, its aliases and ticker), both from the
cover and the pages after it and from the last pages (signatures, certifications). The file name is a
weak signal: it fills in a fiscal year or quarter the pages did not give ("2023 Q3 ..."). Any other
PDF gets a title from its info dictionary or first heading. ``metadata.jsonl`` beside the PDFs
supplies or corrects any field, for any corpus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Set
from pathlib import Path

from pydantic import ValidationError

from ingest.companies import find_registrant, text_lines
from ingest.forms import ANNUAL_REPORT, read_period
from ingest.pdf_pages import PdfInfo
from rag.doc_metadata import DocMetadata, validation_problems
from rag.questions.periods import YEAR, year

SIDECAR_FILE = "metadata.jsonl"
# Part of the index fingerprint: a change to what is extracted re-processes every file.
METADATA_VERSION = 3

# What extraction reads of a file: the cover and the pages after it, and the last pages.
_HEAD_PAGES = 12  # a 10-Q says when its fiscal year ends in its first notes
_TAIL_PAGES = 4
_COVER_PAGES = 2

_NAME_YEAR = re.compile(r"(?<!\d)(" + YEAR + r")(?!\d)")
_NAME_QUARTER = re.compile(r"(?<![A-Za-z0-9])Q([1-4])(?![0-9])", re.I)
_NAME_FY = re.compile(r"(?<![A-Za-z])FY\s?(" + YEAR + r"|\d{2})(?!\d)", re.I)

# Section headings: "Item 2. Management's ...", "PART I", "Note 3 - ...", or a line in capitals.
_ITEM = re.compile(r"^(?:PART\s+[IV]+\b.*|Item\s+\d+[A-Z]?\..*|Note\s+\d+\s*[-–—.:]\s*\S.*)$", re.I)
_BOILERPLATE_HEADINGS = {"TABLE OF CONTENTS", "INDEX", "UNAUDITED"}
_PARENTHETICAL = re.compile(r"\([^)]*\)")
# Column captions of financial tables ("Three Months Ended ...") read like Title Case headings.
_COLUMN_HEADER = re.compile(r"\b(?:ended|ending|as of)\b", re.I)


class SidecarError(ValueError):
    """``metadata.jsonl`` cannot be read; the message names the line and the problem."""


def read_sidecar(docs_dir: Path) -> dict[str, dict]:
    """``{file: {field: value}}`` from ``metadata.jsonl`` (one object per line, ``file`` naming the PDF), or {}."""
    path = docs_dir / SIDECAR_FILE
    if not path.is_file():
        return {}
    entries: dict[str, dict] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            file = row.pop("file")
            DocMetadata.model_validate(row)  # unknown fields and wrong types fail here, not at search time
        except ValidationError as err:
            raise SidecarError(f"{path}:{n}: {validation_problems(err)}") from err
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as err:
            raise SidecarError(f"{path}:{n}: each line must be a JSON object with 'file' and metadata fields") from err
        entries[file] = row
    return entries


def _from_file_name(file: str) -> dict:
    stem = Path(file).stem
    years = _NAME_YEAR.findall(stem) or [str(year(y)) for y in _NAME_FY.findall(stem)]
    quarters = _NAME_QUARTER.findall(stem)
    out: dict = {}
    if len(set(years)) == 1:
        out["fiscal_year"] = int(years[0])
        if len(set(quarters)) == 1:
            out["fiscal_quarter"] = int(quarters[0])
    return out


def _info_title(info_title: str | None) -> str | None:
    """The PDF's own title, unless it is an accession number, a file name or another label with no words in it."""
    if not info_title:
        return None
    title = " ".join(info_title.split())
    words = re.findall(r"[A-Za-z]{3,}", title)
    if len(words) < 2 or title.lower().endswith((".pdf", ".doc", ".docx", ".htm", ".html")):
        return None
    return title[:200]


def _first_heading(texts: list[str]) -> str | None:
    for text in texts[:2]:
        for line in text_lines(text):
            if len(re.findall(r"[A-Za-z]", line)) >= 4 and line.upper() not in _BOILERPLATE_HEADINGS:
                return line[:200]
    return None


def metadata_pages(n_pages: int) -> list[int]:
    """The pages (0-based) extraction reads: the cover and the pages after it, and the last pages, where the
    signatures and certifications name the registrant again."""
    return sorted(set(range(min(_HEAD_PAGES, n_pages))) | set(range(max(0, n_pages - _TAIL_PAGES), n_pages)))


def _title(meta: DocMetadata, file: str, texts: list[str], info_title: str | None) -> str:
    if meta.company and meta.form:
        what = f"Form {meta.form}" if meta.form[0].isdigit() else meta.form
        period = (
            f", period ended {meta.period_end}"
            if meta.period_end
            else (f", {meta.period_label()}" if meta.period_label() else "")
        )
        return f"{meta.company} {what}{period}"
    return _info_title(info_title) or _first_heading(texts) or Path(file).stem


def extract_metadata(
    file: str, texts: list[str], info: PdfInfo | None = None, overrides: dict | None = None
) -> DocMetadata:
    """Metadata for one file from its page texts (only ``metadata_pages`` are read), its PDF info dictionary and the
    sidecar's entry (which wins over everything read)."""
    info = info or PdfInfo()
    pages = [texts[i] for i in metadata_pages(len(texts))]
    head = texts[:_HEAD_PAGES]
    period = read_period(head)
    found: dict = {
        "form": period.form,
        "period_end": period.period_end,
        "fiscal_year": period.fiscal_year,
        "fiscal_quarter": period.fiscal_quarter,
    }
    if period.form:
        registrant = find_registrant(
            "\n".join(head[:_COVER_PAGES]), pages, [v for v in (info.title, info.subject) if v]
        )
        found.update(company=registrant.name, ticker=registrant.ticker, aliases=registrant.aliases or None)
    # The file name is a weak signal: it fills in a year or quarter the pages did not give, never overrides them.
    # A label that disagrees with the pages is kept as a period alias: questions written against the folder's own
    # names ("2023 Q1 MSFT") still find the file.
    label = _from_file_name(file)
    if found["fiscal_year"] is None:
        found["fiscal_year"] = label.get("fiscal_year")
    if found["fiscal_quarter"] is None and label.get("fiscal_year") == found["fiscal_year"]:
        found["fiscal_quarter"] = label.get("fiscal_quarter")
    if "fiscal_quarter" in label and (label["fiscal_year"], label["fiscal_quarter"]) != (
        found["fiscal_year"],
        found["fiscal_quarter"],
    ):
        found["period_aliases"] = [f"{label['fiscal_year']} Q{label['fiscal_quarter']}"]
    if found["form"] and (found["form"].startswith("10-K") or found["form"] == ANNUAL_REPORT):
        found["fiscal_quarter"] = None
    found = {k: v for k, v in found.items() if v is not None}
    found.update(overrides or {})
    meta = DocMetadata.model_validate(found)
    if meta.title is None:
        meta = meta.model_copy(update={"title": _title(meta, file, texts, info.title)})
    return meta


def _is_heading(line: str, ignore: Set[str]) -> bool:
    if _ITEM.match(line):
        return True
    core = _PARENTHETICAL.sub("", line).strip(" :")
    words = core.split()
    if not 2 <= len(words) <= 14 or len(core) > 100 or any(c.isdigit() for c in core):
        return False
    if core.upper() in _BOILERPLATE_HEADINGS or core.lower() in ignore or _COLUMN_HEADER.search(core):
        return False
    letters = [c for c in core if c.isalpha()]
    if len(letters) < 8:
        return False
    if sum(c.isupper() for c in letters) / len(letters) > 0.9:
        return True
    # A short line in Title Case with no sentence punctuation ("Operating Expenses").
    return (
        len(words) <= 8
        and not core.endswith((".", ",", ";"))
        and all(w[0].isupper() for w in words if len(w) > 3 and w[0].isalpha())
    )


def section_at(page_text: str, start: int, end: int, ignore: Set[str] = frozenset()) -> str | None:
    """The heading a chunk at ``[start, end)`` of the page sits under: the last one before it, else the first inside it.

    ``ignore``: lower-cased lines that are running page headers (the company's name), not sections.
    """
    before, inside, position = None, None, 0
    for raw in page_text.splitlines(keepends=True):
        if position >= end:
            break
        line = " ".join(raw.split())
        if line and _is_heading(line, ignore):
            if position <= start:
                before = line
            elif inside is None:
                inside = line
        position += len(raw)
    return before or inside
