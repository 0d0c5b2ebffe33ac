"""How documents and questions write dates and periods: month names, ordinals, "fiscal 2023", "Q3 FY24", and their
Chinese forms ("2023财年第三季度", "截至2023年7月1日").

One vocabulary for both sides: ingestion reads a filing's period from its pages (``ingest.forms``)
and search reads the periods a question names (``rag.questions.mentions``), so a period written one way in a
document and another way in a question still meet.
"""

from __future__ import annotations

import re
from datetime import date

MONTHS = {
    m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1)
}
# A year of a filing: 1900-2099, as a regular expression's fragment
YEAR = r"(?:19|20)\d{2}"
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4}

# "July 1, 2023", "Sept. 30 2022", "JANUARY 31, 2023"
DATE = re.compile(r"\b([A-Za-z]{3,9})\.?\s+(\d{1,2}),?\s+(" + YEAR + r")\b")
# "fiscal 2023", "fiscal year 2023", "FY2023", "FY 23", "FY'23"
FISCAL_YEAR = re.compile(r"(?<![A-Za-z])(?:fiscal\s+(?:year\s+)?|FY\s?'?)(" + YEAR + r"|\d{2})(?![\d%])", re.I)
# "third quarter of fiscal 2023", "fourth-quarter 2022", "second quarter fiscal year 2024", "Q1 FY24", "Q3 2023", "2023
# Q3"
_QUARTER_WORDS = r"(first|second|third|fourth|1st|2nd|3rd|4th)[\s-]+(?:fiscal[\s-]+)?quarter"
QUARTER_OF_YEAR = [
    re.compile(
        _QUARTER_WORDS + r"\s+(?:and\s+full[\s-]+year\s+)?(?:of\s+)?(?:(?:fiscal\s+)?(?:year\s+)?|FY\s?'?)"
        r"(" + YEAR + r")\b",
        re.I,
    ),
    # a two-digit year only behind FY or an apostrophe: "Q1 10-Q" names no year
    re.compile(
        r"\bQ([1-4])[\s-]*(?:of\s+)?(?:(?:FY\s?|fiscal\s+(?:year\s+)?)?(" + YEAR + r")|(?:FY\s?'?|')(\d{2}))\b",
        re.I,
    ),
    # the analysts' "3Q23", "3Q 2023", "3QFY24"
    re.compile(r"\b([1-4])Q(?:\s?(?:FY\s?)?(" + YEAR + r")|(?:\s?FY\s?'?|')?(\d{2}))\b", re.I),
]
# "2023 Q3", "FY2023 Q3", "FY23 Q3"
YEAR_QUARTER = re.compile(r"(?:\bFY\s?'?(" + YEAR + r"|\d{2})|\b(" + YEAR + r"))\s*Q([1-4])\b", re.I)

# Chinese: "2023年第三季度", "2023财年第3财季", "2023年Q3", "2023财年", "2023会计年度", "2023年度", "2023年7月1日"
_ZH_YEAR = r"(" + YEAR + r")\s*(?:年|财年|财政年度|会计年度)?"
ZH_QUARTER = re.compile(
    _ZH_YEAR + r"\s*(?:第\s*([一二三四1-4])\s*(?:个)?(?:季度|财季|季)|([一二三四1-4])\s*季度|Q([1-4])\b)", re.I
)
ZH_FISCAL_YEAR = re.compile(r"(" + YEAR + r")\s*(?:财年|财政年度|会计年度|年?年度)|财年\s*(" + YEAR + r")")
ZH_DATE = re.compile(r"(" + YEAR + r")\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
_ZH_NUMERALS = {"一": 1, "二": 2, "三": 3, "四": 4}


def year(text: str) -> int:
    """A four- or two-digit year as a number: "2023" and "23" are 2023."""
    return int(text) if len(text) == 4 else 2000 + int(text)


def iso_date(month: str, day: str, year_text: str) -> str | None:
    """``YYYY-MM-DD`` for a month name, day and year, or None where they are no date."""
    number = MONTHS.get(month[:3].lower())
    if number is None:
        return None
    try:
        return date(int(year_text), number, int(day)).isoformat()
    except ValueError:
        return None


def _zh_iso_date(year_text: str, month: str, day: str) -> str | None:
    try:
        return date(int(year_text), int(month), int(day)).isoformat()
    except ValueError:
        return None


def dates_in(text: str) -> list[str]:
    """Every date written out with its month's name (or in Chinese, 2023年7月1日), in order, as ISO strings."""
    found = [(m.start(), iso_date(*m.groups())) for m in DATE.finditer(text)]
    found += [(m.start(), _zh_iso_date(*m.groups())) for m in ZH_DATE.finditer(text)]
    return [d for _, d in sorted(found) if d]


def quarter_mentions(text: str) -> list[tuple[int, int, tuple[int, int]]]:
    """Every (start, end, (year, quarter)) the text names, in order of appearance."""
    found: list[tuple[int, int, tuple[int, int]]] = []
    for pattern in QUARTER_OF_YEAR:
        for m in pattern.finditer(text):
            quarter, y = m.group(1), m.group(2) or m.group(3)
            q = int(quarter) if quarter.isdigit() else ORDINALS[quarter.lower()]
            found.append((m.start(), m.end(), (year(y), q)))
    found += [(m.start(), m.end(), (year(m[1] or m[2]), int(m[3]))) for m in YEAR_QUARTER.finditer(text)]
    for m in ZH_QUARTER.finditer(text):
        quarter = next(g for g in m.groups()[1:] if g)
        found.append((m.start(), m.end(), (int(m.group(1)), _ZH_NUMERALS.get(quarter) or int(quarter))))
    # One mention once: "2023 Q3" is written the same in Chinese, and "FY2023 Q3" holds it.
    return sorted(m for m in set(found) if not any(o != m and o[0] <= m[0] and m[1] <= o[1] for o in found))


def quarters_in(text: str) -> list[tuple[int, int]]:
    """Every (year, quarter) the text names, in order of appearance."""
    return [p for _, _, p in quarter_mentions(text)]


def fiscal_years_in(text: str) -> list[int]:
    """Every year named as a fiscal year ("fiscal 2022", "FY22", "2022财年"), in order."""
    found = [(m.start(), year(m.group(1))) for m in FISCAL_YEAR.finditer(text)]
    found += [(m.start(), int(m.group(1) or m.group(2))) for m in ZH_FISCAL_YEAR.finditer(text)]
    return [y for _, y in sorted(found)]
