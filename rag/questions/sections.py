"""Sections a question names ("based on the cash flow statement") and the chunks whose section heading is that section.

A long filing holds dozens of passages about the same figure; a question that names the statement
it wants says which. Each section is a pattern for how questions name it and one for the headings
filings give it ("CONDENSED CONSOLIDATED STATEMENTS OF CASH FLOWS"), matched against the section
that each chunk's contextual header ends with (``rag.doc_metadata.chunk_header``).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

# name: (how a question names it, how a heading names it)
SECTIONS: dict[str, tuple[re.Pattern, re.Pattern]] = {
    name: (re.compile(question, re.I), re.compile(heading, re.I))
    for name, question, heading in [
        ("cash flows", r"\bcash[\s-]+flows?\b", r"\bcash\s+flows?\b"),
        (
            "balance sheet",
            r"\bbalance\s+sheets?\b|\bfinancial\s+position\b",
            r"\bbalance\s+sheets?\b|\bfinancial\s+position\b",
        ),
        (
            "income statement",
            r"\bincome\s+statements?\b|\bstatements?\s+of\s+(?:operations|income|earnings)\b|"
            r"\bprofit\s+and\s+loss\b",
            r"\bstatements?\s+of\s+(?:operations|income|earnings)\b|\bincome\s+statements?\b",
        ),
        ("comprehensive income", r"\bcomprehensive\s+income\b", r"\bcomprehensive\s+income\b"),
        ("equity", r"\b(?:stock|share)holders['’]?\s+equity\b", r"\b(?:stock|share)holders['’]?\s+equity\b"),
        ("segments", r"\bsegments?\b", r"\bsegments?\b"),
        ("md&a", r"\bmd&a\b|\bmanagement['’]?s\s+discussion\b", r"\bmanagement['’]?s\s+discussion\b"),
    ]
}


def named_sections(question: str) -> list[str]:
    """The sections a question names, in the order of ``SECTIONS``."""
    return [name for name, (asked, _) in SECTIONS.items() if asked.search(question)]


def section_rows(headers: pd.Series, sections: list[str]) -> np.ndarray:
    """Rows whose header's section (its last ``|`` part) is one of ``sections``. Each distinct header is read once:
    a collection has millions of chunks and far fewer headers."""
    if not sections:
        return np.array([], dtype=np.int64)
    patterns = [SECTIONS[s][1] for s in sections]
    categorical = headers.astype("category")
    tails = (h.rsplit(" | ", 1)[-1] if isinstance(h, str) and " | " in h else "" for h in categorical.cat.categories)
    # One flag per category and one more, last, for the code -1 of a missing header.
    wanted = np.array([bool(tail) and any(p.search(tail) for p in patterns) for tail in tails] + [False])
    return np.flatnonzero(wanted[categorical.cat.codes.to_numpy()])
