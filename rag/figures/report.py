"""What the check says of each figure, and of the answer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Why = Literal["not_found", "other_period", "not_a_source_period", "compared_with_itself", "out_of_order", "other_row"]
# Why a figure is unsupported, in words for a reader who asks which rule said so (the page, app.js, says the same).
WHY: dict[Why, str] = {
    "not_found": "no source's line about what its sentence says holds it",
    "other_period": "its sentence's figures are in the sources under another period",
    "not_a_source_period": "no source reports on this period, or compares with it",
    "compared_with_itself": "its sentence compares this period with itself",
    "out_of_order": "told as later than the quarter named before it, but earlier",
    "other_row": "the table's row of the amount beside it gives another percentage",
}


@dataclass
class FigureCheck:
    text: str
    kind: str
    start: int  # offsets in the answer's text
    end: int
    status: str  # supported, unsupported, or cut_off (the answer ended inside it: finish_reason "length")
    source: int | None = None  # 1-based, into the sources the answer was given
    file: str | None = None
    page: int | None = None
    span: str | None = None  # the line of the source that holds it, or (held_by "period") its document's period
    held_by: str = "line"  # or "period": a period the answer names, found in its source's document's metadata
    cited: bool = False  # found in a source the answer cites
    # What it is computed from: the two of a change or a share, or a total's parts.
    derived_from: list[str] = field(default_factory=list)
    why: Why | None = None  # for an unsupported figure

    def withdraw(self, why: Why) -> None:
        """Not supported after all, by a rule that reads more than the line that held it."""
        self.status, self.source, self.file, self.page, self.span = "unsupported", None, None, None, None
        self.held_by, self.why = "line", why


def supported_values(checks: Sequence[FigureCheck], bounds: tuple[int, int]) -> list[FigureCheck]:
    """The supported values (amounts, numbers, percentages) that stand within ``bounds`` of the answer."""
    return [
        c
        for c in checks
        if bounds[0] <= c.start < bounds[1] and c.kind in ("amount", "number", "percent") and c.status == "supported"
    ]


@dataclass
class FigureReport:
    checks: list[FigureCheck]
    unknown_citations: list[int]  # [n] marks that point at no source
    refused: bool = False  # the policy withheld the answer for its unsupported figures (rag.answering)

    @property
    def summary(self) -> dict[str, int]:
        count = {status: sum(c.status == status for c in self.checks) for status in ("supported", "unsupported")}
        return {"figures": len(self.checks), **count, "cut_off": len(self.checks) - sum(count.values())}

    @property
    def all_supported(self) -> bool:
        return all(c.status == "supported" for c in self.checks)
