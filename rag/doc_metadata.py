"""What a document is: its title and, for filings, who filed what for which period; and the header that says so.

Ingestion reads these fields from each file (``ingest.metadata_extraction``) and stores them per file in the
manifest and per chunk in the chunk store. Search filters on them (``rag.filters``), questions are
matched against the values an index holds (``rag.questions.mentions``), and the contextual header built from
them is embedded and BM25-indexed with every chunk, so a chunk of one filing no longer reads like
the same chunk of another.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from pydantic import BaseModel, ConfigDict, ValidationError

# The chunk store's metadata columns, in this order; a filter can name any of them.
FIELDS = (
    "title",
    "company",
    "aliases",
    "ticker",
    "form",
    "fiscal_year",
    "fiscal_quarter",
    "period_end",
    "period_aliases",
)


# Forms a question names by their name alone ("the 10-Q", "8K"); ingest.forms reads a cover's "FORM 10-Q" itself.
QUESTION_FORMS = ("10-Q", "10-K", "8-K", "20-F", "6-K")


def form_key(name: str) -> str:
    """A form's name without case or hyphen: "10-Q", "10q" and "10Q" are one form."""
    return name.upper().replace("-", "")


class DocMetadata(BaseModel):
    """One file's metadata; every field is optional, since most PDFs are not filings."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    company: str | None = None
    # Other names the document goes by: other spellings, a co-registrant, former names, the ticker.
    aliases: list[str] | None = None
    ticker: str | None = None
    form: str | None = None  # 10-Q, 10-K, 8-K, earnings release, annual report, ...
    fiscal_year: int | None = None
    fiscal_quarter: int | None = None  # 1-4; None for annual reports and non-filings
    period_end: str | None = None  # ISO date the report covers up to
    # Other names of the period: a file name's own label ("2023 Q1") where it differs from the filer's fiscal quarter.
    period_aliases: list[str] | None = None

    def own_quarters(self) -> set[tuple[int, int]]:
        """The (year, quarter)s a reader may call this document's period by: its fiscal quarter, its period aliases (a
        file name's "2023 Q1") and the calendar quarter most of its period falls in (NVIDIA's fiscal first quarter of
        2024 ends April 30, 2023: "Q1 2023" to most readers). Empty for a document of no quarter."""
        if not (self.fiscal_year and self.fiscal_quarter):
            return set()
        out = {(self.fiscal_year, self.fiscal_quarter)}
        for alias in self.period_aliases or []:
            if m := re.fullmatch(r"(\d{4}) Q([1-4])", alias):
                out.add((int(m[1]), int(m[2])))
        if self.period_end:
            middle = date.fromisoformat(self.period_end) - timedelta(days=45)
            out.add((middle.year, (middle.month - 1) // 3 + 1))
        return out

    def period_label(self) -> str | None:
        if self.fiscal_year and self.fiscal_quarter:
            return f"Q{self.fiscal_quarter} {self.fiscal_year}"
        return str(self.fiscal_year) if self.fiscal_year else None


def chunk_header(meta: DocMetadata, file: str, section: str | None = None) -> str:
    """A one-line header for a chunk: who, what form, which period, which section; the file name where nothing else is
    known.

    Placed before the chunk text that is embedded and BM25-indexed (never in citations or prompts),
    so that "net sales" in Apple's Q3 2023 filing and in Amazon's Q1 2023 filing embed apart.
    """
    who = meta.company or meta.title or file
    if meta.ticker:
        who = f"{who} ({meta.ticker})"
    parts = [who]
    if meta.form:
        parts.append(f"Form {meta.form}")
    if label := meta.period_label():
        parts.append(label)
    if meta.period_end:
        parts.append(f"period ended {meta.period_end}")
    if section:
        parts.append(section)
    return " | ".join(parts)


def with_header(header: str, text: str) -> str:
    """The text that is embedded and BM25-indexed for a chunk: its header line, then its own text."""
    return f"{header}\n{text}" if header else text


def validation_problems(err: ValidationError) -> str:
    """A pydantic error as one line that names each field: "colour: Extra inputs are not permitted"."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
