"""Filters from what a question names: companies, tickers, forms and periods that the index actually holds.

Nothing is matched against a fixed list: the candidates are the metadata values of the indexed
files. A confident match (a company or ticker by name, a quarter with its year, a period-end date,
"the latest" report) becomes a filter; a year on its own is uncertain (fiscal or calendar? the year
compared against?) and only boosts the chunks of that year. The question speaks first; a follow-up
that names no company or period takes them from the most recent earlier user turn that does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from rag.filters import Filters, company_key, matching_files

_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4}
_YEAR = r"(?:FY\s?|fiscal\s+(?:year\s+)?)?'?((?:19|20)\d{2}|\d{2})"
_QUARTER_YEAR = [
    re.compile(r"\bQ([1-4])\s*(?:of\s+)?(?:FY\s?|fiscal\s+(?:year\s+)?)?'?((?:19|20)\d{2})\b", re.I),
    re.compile(r"\b((?:19|20)\d{2})\s*Q([1-4])\b", re.I),
    re.compile(r"\bQ([1-4])\s*(?:FY|')\s?(\d{2})\b", re.I),
    re.compile(r"\b(first|second|third|fourth|1st|2nd|3rd|4th)\s+(?:fiscal\s+)?quarter\s+(?:of\s+)?" + _YEAR + r"\b", re.I),
]
_YEAR_ALONE = re.compile(r"(?<![\d$,.])((?:19|20)\d{2})(?![\d,%])")
_DATE = re.compile(r"\b([A-Z][a-z]{2,8})\.?\s+(\d{1,2}),?\s+((?:19|20)\d{2})\b")
_LATEST = re.compile(r"\b(latest|most recent|last|newest|current)\s+(?:\w+\s+){0,2}?(10-[QK]|report|filing|quarter|quarterly)", re.I)
_FORM = re.compile(r"\b(10-?Q|10-?K|8-?K|20-?F|6-?K)\b", re.I)
_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)}


@dataclass
class Detected:
    filters: Filters  # confident: applied as filters
    boosts: Filters  # uncertain: chunks matching them rank higher
    matched: list[str] = field(default_factory=list)  # the words that matched, for the response


def _year(text: str) -> int:
    return int(text) if len(text) == 4 else 2000 + int(text)


def _quarter_years(text: str) -> set[tuple[int, int]]:
    found = set()
    for i, pattern in enumerate(_QUARTER_YEAR):
        for m in pattern.finditer(text):
            a, b = m.group(1), m.group(2)
            if i == 1:
                found.add((_year(a), int(b)))
            elif i == 3:
                found.add((_year(b), _ORDINALS[a.lower()]))
            else:
                found.add((_year(b), int(a)))
    return found


def _dates(text: str) -> set[str]:
    out = set()
    for month, day, year in _DATE.findall(text):
        number = _MONTHS.get(month[:3].lower())
        if number and 1 <= int(day) <= 31:
            out.add(f"{year}-{number:02d}-{int(day):02d}")
    return out


class MentionMatcher:
    """Matches questions against one index's per-file metadata (``files``: ``file`` plus the metadata columns)."""

    def __init__(self, files: pd.DataFrame):
        self.files = files
        companies = sorted({c for c in files["company"].dropna()})
        # Longest names first, so "Meta Platforms" is tried before "Meta".
        self._companies = sorted({(company_key(c), c) for c in companies if company_key(c)}, key=lambda kc: -len(kc[0]))
        self._tickers = sorted({t for t in files["ticker"].dropna()})
        self._forms = {f.upper().replace("-", ""): f for f in files["form"].dropna()}
        self._periods = {(int(y), int(q)) for y, q in zip(files["fiscal_year"], files["fiscal_quarter"])
                         if pd.notna(y) and pd.notna(q)}
        self._years = {int(y) for y in files["fiscal_year"].dropna()}
        self._period_ends = set(files["period_end"].dropna())

    def _companies_in(self, text: str) -> tuple[list[str], list[str]]:
        lowered, names, words = text.lower(), [], []
        for key, name in self._companies:
            if re.search(rf"(?<![\w]){re.escape(key)}(?![\w])", lowered):
                names.append(name)
                words.append(key)
                lowered = lowered.replace(key, " ")
        for ticker in self._tickers:
            if re.search(rf"(?<![\w$]){re.escape(ticker)}(?![\w])", text):
                words.append(ticker)
                names.extend(self.files.loc[self.files["ticker"] == ticker, "company"].dropna())
        return sorted(set(names)), words

    def _periods_in(self, text: str) -> tuple[dict, dict, list[str]]:
        """(filter fields, boost fields, matched words) for the periods ``text`` names."""
        quarters = {p for p in _quarter_years(text) if p in self._periods}
        dates = _dates(text) & self._period_ends
        if dates:
            return {"period_end": sorted(dates)}, {}, sorted(dates)
        if quarters:
            years, qs = {y for y, _ in quarters}, {q for _, q in quarters}
            if len(quarters) == len(years) * len(qs):  # a grid ("Q1 and Q2 2023") is exact as two fields
                return {"fiscal_year": sorted(years), "fiscal_quarter": sorted(qs)}, {}, [f"Q{q} {y}" for y, q in sorted(quarters)]
            return {}, {"fiscal_year": sorted(years)}, [f"Q{q} {y}" for y, q in sorted(quarters)]
        years = sorted({int(y) for y in _YEAR_ALONE.findall(text)} & self._years)
        if years:
            return {}, {"fiscal_year": years}, [str(y) for y in years]
        return {}, {}, []

    def _latest_files(self, companies: list[str]) -> list[str]:
        files = self.files.dropna(subset=["period_end"])
        if companies:
            keys = {company_key(c) for c in companies}
            files = files[files["company"].map(lambda c: c is not None and company_key(c) in keys)]
        groups = files.groupby(files["company"].map(company_key)) if len(files) else []
        return sorted(group.loc[group["period_end"].idxmax(), "file"] for _, group in groups)

    def detect(self, question: str, history: Sequence[dict] = ()) -> Detected:
        earlier = [m.get("content", "") for m in history if m.get("role") == "user"][::-1]
        companies, words = self._companies_in(question)
        for turn in earlier:
            if companies:
                break
            companies, words = self._companies_in(turn)
        periods, boosts, period_words = self._periods_in(question)
        latest = bool(_LATEST.search(question))
        for turn in earlier:
            if periods or boosts or latest:
                break
            periods, boosts, period_words = self._periods_in(turn)
            latest = bool(_LATEST.search(turn))
        chosen: dict = {}
        if companies:
            chosen["company"] = companies
        forms = {self._forms[f.upper().replace("-", "")] for f in _FORM.findall(question) if f.upper().replace("-", "") in self._forms}
        if forms and len(self._forms) > 1:
            chosen["form"] = sorted(forms)
        if latest and not periods:
            periods = {"file": self._latest_files(companies)}
            period_words = ["latest"]
        # A confident period that no file of the named companies has is a misreading: keep the companies alone.
        with_period = Filters.model_validate({**chosen, **periods})
        if periods and matching_files(self.files, with_period).any():
            chosen.update(periods)
            words += period_words
        elif period_words and not boosts:
            period_words = []
        if boosts:
            words += period_words
        filters = Filters.model_validate(chosen)
        if not matching_files(self.files, filters).any():
            filters = Filters()
        return Detected(filters, Filters.model_validate(boosts), words)
