"""What counts as a figure, read from a text (amounts, numbers, percentages, dates and years), and what only looks
like one."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

MONTHS = {
    m: i
    for i, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for m in names
}
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_DATE_WORDS = re.compile(rf"\b({_MONTH})\.?\s+(\d{{1,2}}),?\s+(\d{{4}})\b", re.I)
_DATE_ISO = re.compile(r"(?<![\d-])(\d{4})-(\d{2})-(\d{2})(?![\d-])")
_DATE_HAN = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
# A month written without its day ("August 2022", "2023年7月") stands for any of its days: its middle, give or take.
_MONTH_WORDS = re.compile(rf"\b({_MONTH})\.?\s+(\d{{4}})\b", re.I)
_MONTH_HAN = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月")
_MID_MONTH, _A_MONTH = 16, 15.5
# Spans that hold digits but no figure: a file's name, quoted (a sentence may run up to it) or of a few words (looked
# for only in a text that has ".pdf": tried at every word, it costs more than all the rest of the reading);
# citations, form and item names, identifiers joined to words.
_FILE_NAME = re.compile(r"\"[^\"\n]{1,200}?\.pdf\"|“[^”\n]{1,200}?\.pdf”|(?:[\w&-]+[ \t]){0,4}[\w&-]+\.pdf\b", re.I)
_NOT_FIGURES = re.compile(
    r"\[\d+\]"
    r"|\b(?:Item|Items|Note|Notes|Part|Rule|Section|Article|Exhibit|Form|Schedule|Level|Tier|Phase|Stage)\s+\d+[A-Z]?\b"
    r"|\b\d+-[A-Z]\b|\b(?!FY)[A-Z]+\d+\b|\bQ[1-4]\b"
    r"|^[ \t]*\d+\.(?=[ \t])",  # a numbered list's marker ("107. Reliance on ...")
    re.I | re.M,
)
SCALES = {
    "thousand": 1e3,
    "thousands": 1e3,
    "k": 1e3,
    "million": 1e6,
    "millions": 1e6,
    "mn": 1e6,
    "m": 1e6,
    "billion": 1e9,
    "billions": 1e9,
    "bn": 1e9,
    "b": 1e9,
    "trillion": 1e12,
    "万": 1e4,
    "亿": 1e8,
    "万亿": 1e12,
}
# Units of measure: a number written with one counts in it, not in a scale ("300mm", "300 mm", "7 nm", "11.4 years").
# Lengths in lower case only: "$5MM" is five million.
UNITS = r"(?:(?-i:mm|nm|cm|km|kg)|gb|tb|mw|gw|kwh|years?|months?|weeks?|days?|hours?)\b"
_FIGURE = re.compile(
    r"(?:(?<![A-Za-z0-9_.,/-])|(?<=\bFY))(?P<open>\()?(?P<sign>[-−])?\s?"  # "FY2023" is a year
    r"(?:(?P<cur>US\$|(?-i:HK\$|NT\$|[CAS]\$|GBP|JPY|CNY|HKD|CAD|AUD|CHF)|\$|€|£|¥|RMB|USD|EUR)\s?)?"
    # A number cut inside a group at the very end ("$21,2") is one too: an answer that ran out of tokens ends so.
    r"(?P<num>\d{1,3}(?:,\d{3})*,\d{0,2}(?=\s*$)|\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    # A negative amount's scale or percent sign after its parenthesis: "($46) million", a table's "(8)%".
    r"(?P<close>(?<=\d)\)(?=\s?(?:thousand|million|billion|trillion)\b|\s?%))?"
    r"(?:\s?(?P<scale>thousand|million|billion|trillion|mn|bn|[kmb])\b|\s?(?P<han>万亿|亿|万))?"
    r"(?P<pct>\s?%|％|\s?percent\b|\s?per\s?cent\b|\s?percentage\s+points?\b|(?P<bps>\s?(?:basis\s+points?|bps)\b))?"
    # Letters, not \w: a Chinese character may touch a figure. A unit of measure may ("300mm", "7nm").
    rf"(?:(?={UNITS})|(?![A-Za-z0-9_-]|[.,]\d))",
    re.I,
)
# One name for each currency's ways of being written (a code is its own); "¥" is the yen's and the yuan's sign, so it
# stays itself.
_CURRENCIES = {
    "us$": "USD",
    "$": "USD",
    "€": "EUR",
    "£": "GBP",
    "rmb": "CNY",
    "¥": "¥",
    "hk$": "HKD",
    "nt$": "TWD",
    "c$": "CAD",
    "a$": "AUD",
    "s$": "SGD",
}
# Things a table's header may give a scale of their own, apart from its amounts: "(dollars in millions and units in
# thousands)", "(in millions, shares in thousands)", "(square feet in millions)".
COUNT_NOUNS = r"(?:shares|units|rsus|psus|options|square\s+feet|feet|employees|customers|subscribers|members)\b"
_COUNTS = re.compile(rf"\s+(?:of\s+)?{COUNT_NOUNS}", re.I)
SMALLEST_COUNT = 100  # bare integers below it are list numbers and counts of things, not figures to check


@dataclass(frozen=True)
class Figure:
    text: str
    start: int
    end: int
    kind: str  # amount, number, percent, date or year
    value: float  # amounts at their scale; a date as YYYYMMDD
    tolerance: float  # half a unit of the last digit written
    raw: float = 0.0  # the digits as written, before any scale word
    scale_written: bool = False  # a scale word follows it ("million", "亿")
    currency: str = ""  # the currency written with it, if any ("USD", "EUR")
    counts: bool = False  # things of a kind a table may count in its own scale follow it ("211,884 thousand units")


def _date(year: str, month: int, day: str) -> float | None:
    y, d = int(year), int(day)
    return float(y * 10000 + month * 100 + d) if 1 <= month <= 12 and 1 <= d <= 31 else None


def _dates(text: str) -> list[tuple[int, int, float, float]]:
    """(start, end, value as YYYYMMDD, tolerance) of each date: a day, or a month written without its day."""
    found = []
    for match in _DATE_WORDS.finditer(text):
        value = _date(match[3], MONTHS[match[1].lower()], match[2])
        if value:
            found.append((match.start(), match.end(), value, 0.5))
    for pattern in (_DATE_ISO, _DATE_HAN):
        for match in pattern.finditer(text):
            value = _date(match[1], int(match[2]), match[3])
            if value:
                found.append((match.start(), match.end(), value, 0.5))
    days = [(start, end) for start, end, _, _ in found]
    for pattern, year, month in ((_MONTH_WORDS, 2, 1), (_MONTH_HAN, 1, 2)):
        for match in pattern.finditer(text):
            number = MONTHS[match[month].lower()] if month == 1 else int(match[month])
            if 1 <= number <= 12 and not any(s <= match.start() < e for s, e in days):
                found.append(
                    (match.start(), match.end(), int(match[year]) * 10000 + number * 100 + _MID_MONTH, _A_MONTH)
                )
    return found


def _masked(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """The text with ``spans`` blanked out, offsets kept."""
    chars = list(text)
    for start, end in spans:
        chars[start:end] = " " * (end - start)
    return "".join(chars)


@lru_cache(maxsize=256)
def file_names(text: str) -> tuple[tuple[int, int], ...]:
    """Where a text names files; kept, as an answer is read for its figures and again for the quarters it names."""
    return tuple(m.span() for m in _FILE_NAME.finditer(text)) if ".pdf" in text.lower() else ()


def without_file_names(text: str) -> str:
    """The text without its files' names: "(2023 Q3 MSFT.pdf)" names no quarter."""
    return _masked(text, file_names(text))


def figures(text: str, everything: bool = False) -> list[Figure]:
    """The figures of ``text`` in order; ``everything``: bare small integers too (a passage's, to match against)."""
    found = [Figure(text[s:e], s, e, "date", v, tolerance) for s, e, v, tolerance in _dates(text)]
    spans = [m.span() for m in _NOT_FIGURES.finditer(text)] + list(file_names(text))
    masked = _masked(text, [(f.start, f.end) for f in found] + spans)
    for m in _FIGURE.finditer(masked):
        digits = m["num"].replace(",", "")
        raw = float(digits)
        decimals = len(digits.partition(".")[2])
        scale_word = (m["scale"] or m["han"] or "").lower()
        if scale_word in ("k", "m", "b") and not m["cur"]:
            scale_word = ""  # "5 m" of distance, "3 b" of a list: only a currency makes the letter a scale
        scale = SCALES.get(scale_word, 1.0) * (0.01 if m["bps"] else 1.0)  # 50 basis points are 0.5 percentage points
        if m["pct"]:
            kind = "percent"
        elif m["cur"] or scale_word:
            kind = "amount"
        elif not decimals and "," not in m["num"] and 1900 <= raw <= 2100:
            kind = "year"
        elif decimals or "," in m["num"] or raw >= SMALLEST_COUNT or everything:
            kind = "number"
        else:
            continue
        start = m.start() if m["close"] else m.start("cur") if m["cur"] else m.start("num")
        end = m.end("pct") if m["pct"] else m.end()
        text_end = end - (1 if text[end - 1 : end] == ")" and not m["open"] else 0)
        found.append(
            Figure(
                text[start:text_end].strip(),
                start,
                text_end,
                kind,
                raw * scale,
                0.5 * 10**-decimals * scale,
                raw,
                bool(scale_word),
                _CURRENCIES.get(m["cur"].lower(), m["cur"].upper()) if m["cur"] else "",
                not m["cur"] and _COUNTS.match(text, text_end) is not None,
            )
        )
    return sorted(found, key=lambda f: f.start)


def other_currency(a: Figure, b: Figure) -> bool:
    """Whether two amounts are written in different currencies: "€1.2 billion" is not a source's "$1.2 billion" (no
    rate converts one to the other here); "¥" is the yen's sign and the yuan's."""
    if not (a.currency and b.currency) or a.currency == b.currency:
        return False
    return {a.currency, b.currency} not in ({"¥", "JPY"}, {"¥", "CNY"})


def year_of(figure: Figure) -> int:
    return int(figure.value // 10000 if figure.kind == "date" else figure.value)


def day_of(figure: Figure) -> date | None:
    """The day a date figure names; None for a year or a month."""
    if figure.kind != "date" or figure.tolerance >= 1:
        return None
    value = int(figure.value)
    return date(value // 10000, value // 100 % 100, value % 100)
