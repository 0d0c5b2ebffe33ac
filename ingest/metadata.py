"""Each file's metadata, read from its cover page, its file name and its PDF info, with a sidecar file that overrides.

Nothing here knows any company: a 10-Q, 10-K or 8-K cover page says who filed it ("(Exact name of
registrant as specified in its charter)"), which form it is, the period it covers ("For the
quarterly period ended ...") and its trading symbols. Fiscal year and quarter come from the file
name where it carries them ("2023 Q3 ...", the label people file and ask by), else from the text
("third quarter of fiscal 2023"). Any other PDF gets a title from its info dictionary or first
heading. ``metadata.jsonl`` beside the PDFs supplies or corrects any field, for any corpus.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from rag.metadata import DocMetadata, validation_problems

SIDECAR_FILE = "metadata.jsonl"
# Part of the index fingerprint: a change to what is extracted re-processes every file.
METADATA_VERSION = 1

# How much of a filing to read for its cover facts: the cover is page 1, the fiscal-quarter wording is in the first pages.
_COVER_PAGES = 2
_TEXT_PAGES = 6

_FORM = re.compile(r"\bFORM\s+(10-QT?|10-KT?|8-K|6-K|20-F|40-F|S-[14]|F-[14]|DEF 14A)\b", re.I)
_DATE = r"([A-Z][a-z]+\.?\s+\d{1,2},?\s+\d{4})"
_PERIOD = re.compile(
    r"for the\s+(?:quarterly period|fiscal year|fiscal quarter|period|year)\s+ended:?\s+" + _DATE, re.I
)
_REPORT_DATE = re.compile(r"date of report[^:]*:\s*" + _DATE, re.I)
_REGISTRANT = re.compile(r"\(\s*exact name of registrant", re.I)
_FILE_NUMBER = re.compile(r"commission file (?:number|no\.?)", re.I)
_SYMBOL_HEADER = re.compile(r"trading\s+symbol", re.I)
_SYMBOL_END = re.compile(r"indicate by check mark", re.I)
_TICKER = re.compile(r"(?<![\w$.])([A-Z]{1,5}(?:\.[A-Z])?)(?![\w.])")
# Upper-case words of a trading-symbol table that are not symbols.
_NOT_TICKERS = {"LLC", "INC", "NYSE", "NASDAQ", "THE", "ARCA", "CBOE", "N", "A", "NA", "LP", "PLC", "AG", "SA", "NV", "USD", "I", "II"}
_ORDINAL = {"first": 1, "second": 2, "third": 3, "fourth": 4}
_FISCAL_QUARTER = re.compile(r"\b(first|second|third|fourth)\s+quarter\s+of\s+(?:fiscal\s+)?(?:year\s+)?((?:19|20)\d{2})\b", re.I)
_NAME_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?!\d)")
_NAME_QUARTER = re.compile(r"(?<![A-Za-z0-9])Q([1-4])(?![0-9])", re.I)
_NAME_FY = re.compile(r"(?<![A-Za-z])FY\s?((?:19|20)?\d{2})(?!\d)", re.I)

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


def _parse_date(text: str) -> str | None:
    text = re.sub(r"\s+", " ", text.replace(".", "")).replace(" ,", ",")
    for fmt in ("%B %d, %Y", "%B %d %Y", "%b %d, %Y", "%b %d %Y"):
        try:
            return datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def _lines(text: str) -> list[str]:
    stripped = (" ".join(line.replace("_", " ").split()) for line in text.splitlines())
    return [line for line in stripped if line]


def _registrant(cover: str) -> str | None:
    """The registrant's exact name: the line above the "(Exact name of registrant ...)" caption, else the line after the file number."""
    lines = _lines(cover)
    for i, line in enumerate(lines):
        if _REGISTRANT.search(line) and i > 0:
            return lines[i - 1]
    for i, line in enumerate(lines[:-1]):
        if _FILE_NUMBER.search(line):
            return lines[i + 1]
    return None


def _ticker(cover: str) -> str | None:
    """The symbol most rows of the cover's trading-symbol table list (the common stock's, notes repeat it or have none)."""
    header = _SYMBOL_HEADER.search(cover)
    if not header:
        return None
    end = _SYMBOL_END.search(cover, header.end())
    table = cover[header.end() : end.start() if end else header.end() + 1500]
    first_row = table.split("\n", 2)[1:2]  # the line after the header names the exchanges' columns, not symbols
    counts: Counter[str] = Counter()
    for line in table.splitlines():
        for symbol in _TICKER.findall(line):
            if symbol not in _NOT_TICKERS:
                counts[symbol] += 1
    if not counts:
        return None
    # The common stock's row comes first: among the most frequent symbols prefer one on that row.
    best = max(counts.values())
    tied = [s for s, c in counts.items() if c == best]
    return next((s for s in tied if first_row and s in first_row[0]), tied[0])


def _from_file_name(file: str) -> dict:
    stem = Path(file).stem
    years = _NAME_YEAR.findall(stem) or [("20" + y if len(y) == 2 else y) for y in _NAME_FY.findall(stem)]
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
        for line in _lines(text):
            if len(re.findall(r"[A-Za-z]", line)) >= 4 and line.upper() not in _BOILERPLATE_HEADINGS:
                return line[:200]
    return None


def extract_metadata(file: str, texts: list[str], info_title: str | None = None, overrides: dict | None = None) -> DocMetadata:
    """Metadata for one file from its page texts (the first few suffice), its PDF info title and the sidecar's entry."""
    cover = "\n".join(texts[:_COVER_PAGES])
    found: dict = {}
    form = _FORM.search(cover)
    if form:
        found["form"] = form.group(1).upper()
        period = _PERIOD.search(cover) or _REPORT_DATE.search(cover)
        found["period_end"] = period and _parse_date(period.group(1))
        found["company"] = _registrant(cover)
        found["ticker"] = _ticker(cover)
        fiscal = _FISCAL_QUARTER.search("\n".join(texts[:_TEXT_PAGES]))
        if fiscal:
            found["fiscal_quarter"], found["fiscal_year"] = _ORDINAL[fiscal.group(1).lower()], int(fiscal.group(2))
        elif found["period_end"]:
            found["fiscal_year"] = int(found["period_end"][:4])
        # The file name's own label wins over the text: it is what the people who filed it ask by.
        found.update(_from_file_name(file))
        if found["form"].startswith("10-K"):
            found.pop("fiscal_quarter", None)
    found = {k: v for k, v in found.items() if v is not None}
    found.update(overrides or {})
    meta = DocMetadata.model_validate(found)
    if meta.title is None:
        if meta.company and meta.form:
            period = f", period ended {meta.period_end}" if meta.period_end else ""
            title = f"{meta.company} Form {meta.form}{period}"
        else:
            title = _info_title(info_title) or _first_heading(texts) or Path(file).stem
        meta = meta.model_copy(update={"title": title})
    return meta


def _is_heading(line: str, ignore: set[str]) -> bool:
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
    return len(words) <= 8 and not core.endswith((".", ",", ";")) and all(
        w[0].isupper() for w in words if len(w) > 3 and w[0].isalpha()
    )


def section_at(page_text: str, start: int, end: int, ignore: set[str] = frozenset()) -> str | None:
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
