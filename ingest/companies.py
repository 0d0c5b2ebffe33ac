"""Who a document is about: the registrant's name, chosen from candidates found in several places, its aliases and
ticker.

No list of companies is consulted. Candidates come from where filings and releases say who they are:
the line above "(Exact name of registrant as specified in its charter)" (or the row of a cover's
registrant table), the certifications ("... this annual report on Form 10-K of Apple Inc."), the
signature block ("PG&E CORPORATION (Registrant)"), an earnings release's headline ("eBay Inc.
Reports ... Results", "Salesforce (NYSE: CRM)"), the PDF's info dictionary and names with a legal
suffix on the pages read. What cannot be a name (a Commission file number, an IRS number, a state,
an address, a caption) is rejected; the rest is scored per company (``rag.filters.company_key``) and
the best is chosen. Its aliases are every spelling found, the name without its legal suffix, the
ticker, former names ("formerly known as ...") and a close runner-up (a co-registrant).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass

from bm25s.stopwords import STOPWORDS_EN_PLUS

from rag.filters import LEGAL_SUFFIXES, company_key
from rag.languages import HAN_CHARS, has_han

# Words that open a sentence ("Although the Company ...") and so never a name.
STOPWORDS = set(STOPWORDS_EN_PLUS) | {
    "although",
    "while",
    "whether",
    "because",
    "unless",
    "since",
    "some",
    "certain",
    "such",
    "other",
    "each",
    "any",
    "all",
}

# Source weights: how sure each place is to name the registrant, the caption surest.
_CAPTION, _TABLE_ROW, _SIGNATURE, _CERTIFICATION, _HEADLINE, _LISTING, _INFO, _SUFFIXED = 6, 5, 3, 2, 4, 3, 2, 1
_COVER_CAPITALS = 5  # a cover without the caption: its first line in capitals, as sure as a registrant table's row
_HEAD_LINES = 30  # a release's headline comes below its contacts, logo text and "Exhibit 99.1"
_RUNNER_UP_SHARE = 0.5  # a second company scoring at least this share of the best is kept as an alias

_SUFFIX = (
    r"(?:Inc\.?|Incorporated(?!\s+by\b)|Corporation|Corp\.?|Company|Co\.|plc|PLC|Ltd\.?|Limited|L\.?P\.|LLC|N\.V\.|"
    r"S\.A\.|AG|SE|Holdings,?\s+Inc\.?|Limited\s+Partnership)"
)
_NAME_WORD = r"(?:[A-Z][\w&.'’-]*|&|and|of|the|de)"
# A name ending in a legal suffix: "Apple Inc.", "PG&E CORPORATION", "salesforce.com, inc." (case-insensitive suffix).
_SUFFIXED_NAME = re.compile(rf"(?<![\w&.'’-])((?:{_NAME_WORD}[ \t]+){{0,5}}{_NAME_WORD},?[ \t]+{_SUFFIX})(?![\w])")
_SUFFIXED_NAME_ANY_CASE = re.compile(rf"((?:[\w&.'’-]+[ \t]+){{0,4}}[\w&.'’-]+,?[ \t]+{_SUFFIX})(?![\w])", re.I)
# A Chinese name ends in its legal form and starts a line or follows punctuation: 苹果股份有限公司, 华为技术有限公司
_HAN_SUFFIXED_NAME = re.compile(
    rf"(?:^|(?<=[\s，。；：:、“”（）()《》]))([{HAN_CHARS}]{{2,12}}?(?:股份有限公司|有限责任公司|有限公司|集团))", re.M
)
_CAPTION_RE = re.compile(r"\(?\s*exact\s+name\s+of\s+(?:the\s+)?registrants?\b[^)\n]*\)?", re.I)
_CERTIFICATION_RE = re.compile(
    r"report\s+on\s+form\s+10-?[QK]\s+(?:\([^)]*\)\s+)?of\s+(.{3,90}?)(?=\s+for\s+the|\s*[;(“\"]|,\s+(?:a|an|the)\s|\s*$)",
    re.I | re.M,
)
_REGISTRANT_LABEL = re.compile(r"^(.{2,90}?)\s*\(\s*(?:the\s+)?registrant\s*\)", re.I)
_HEADLINE_VERBS = ("Reports", "Announces", "Posts", "Delivers", "Reported", "Releases")
# "<Company> Announces Fourth Quarter Results", in capitals too, after a dateline ("SEATTLE, March 1, 2022 --").
_HEADLINE_RE = re.compile(
    r"^\s*(?:[^\n]{0,80}?\d{4}\s*(?:--|[–—])\s*)?(.{2,60}?)\s+(?:"
    + "|".join(f"{v}|{v.upper()}" for v in _HEADLINE_VERBS)
    + r")\b",
    re.M,
)
# "Johnson & Johnson (NYSE: JNJ)"; the name is on the listing's line ("(NASDAQ: XXXX)" alone under a headline names
# only the ticker).
_LISTING_RE = re.compile(
    r"(?:(?<![\w&.'’-])([A-Za-z][\w&.'’-]*(?:[ \t]+(?:[A-Z][\w&.'’-]*|&|and|of|the)){0,5})[ \t]*)?"
    r"\(\s*(?:NYSE|NASDAQ|Nasdaq|NYSE\s+American)(?:\s*/\s*\w+)?\s*:\s*([A-Z]{1,5}(?:\.[A-Z])?)\s*\)"
)
_FORMER_RE = re.compile(r"\b(?:formerly(?:\s+known\s+as)?|f/k/a)\s+([A-Z][\w&.,'’ -]{2,60}?)(?=[)\n;]|\s+\()")
_RENAMED_RE = re.compile(
    r"changed\s+(?:its|our|the\s+company['’]s)\s+(?:legal\s+|corporate\s+)?name\s+from\s+(.{2,60}?)\s+to\s+", re.I
)
_RELEASE_LABEL = re.compile(
    r"^(?:exhibit\s+[\d.]+\s+)?(?:news\s+release|press\s+release|for\s+immediate\s+release)\s*", re.I
)
_UNMAPPED = re.compile(r"[\x00-\x08\ufffd]")
# Words that join the capitalised words of a name ("Bank of America", "PG&E and ...").
_NAME_JOINERS = {"and", "of", "the", "de", "&", "for", "du", "la"}
_FILE_NUMBER = re.compile(r"^(?:commission\s+file\s+(?:number|no\.?)\s*:?\s*)?\(?\d{1,4}-\d{3,8}\)?\s*", re.I)
_FILE_NUMBER_TAIL = re.compile(r"\s+\d{1,4}-\d{3,8}\s*$")
_IRS_NUMBER = re.compile(r"\s*\b\d{2}-?\s?\d{7}\b\s*")
_JUNK_WORDS = re.compile(
    r"\b(?:registrant|commission|exact name|jurisdiction|incorporation|organization|employer|identification|telephone|"
    r"address|zip code|area code|securities|exchange act|pursuant|report|form\s+10|form\s+8|indicate|check mark|"
    r"filer|number|page|table of contents|see|note|our|we|this|its|which|that|certify|date|event|reported|earliest|"
    r"officer|president|director|chief|stock exchange|nasdaq|nyse|file|specified|charter)\b",
    re.I,
)
# Jurisdictions that stand in the cells beside a registrant's name.
_JURISDICTIONS = {
    "alabama",
    "alaska",
    "arizona",
    "arkansas",
    "california",
    "colorado",
    "connecticut",
    "delaware",
    "florida",
    "georgia",
    "hawaii",
    "idaho",
    "illinois",
    "indiana",
    "iowa",
    "kansas",
    "kentucky",
    "louisiana",
    "maine",
    "maryland",
    "massachusetts",
    "michigan",
    "minnesota",
    "mississippi",
    "missouri",
    "montana",
    "nebraska",
    "nevada",
    "new hampshire",
    "new jersey",
    "new mexico",
    "new york",
    "north carolina",
    "north dakota",
    "ohio",
    "oklahoma",
    "oregon",
    "pennsylvania",
    "rhode island",
    "south carolina",
    "south dakota",
    "tennessee",
    "texas",
    "utah",
    "vermont",
    "virginia",
    "washington",
    "west virginia",
    "wisconsin",
    "wyoming",
    "puerto rico",
    "bermuda",
    "cayman islands",
    "ireland",
    "england and wales",
    "the netherlands",
    "netherlands",
    "united kingdom",
    "british columbia",
    "ontario",
    "canada",
    "jersey",
    "switzerland",
    "luxembourg",
}
_JURISDICTION_TAIL = re.compile(
    r"\s+(?:" + "|".join(sorted((re.escape(j) for j in _JURISDICTIONS), key=len, reverse=True)) + r")\s*$", re.I
)
# Upper-case words in a trading-symbol table that are not symbols.
_NOT_TICKERS = {
    "LLC",
    "INC",
    "NYSE",
    "NASDAQ",
    "THE",
    "ARCA",
    "CBOE",
    "N",
    "A",
    "NA",
    "LP",
    "PLC",
    "AG",
    "SA",
    "NV",
    "USD",
    "I",
    "II",
    "III",
    "NONE",
    "TO",
    "OF",
    "ON",
    "OR",
    "PAR",
    "EACH",
    "CLASS",
    "VALUE",
    "AND",
    "PER",
    "SHARE",
    "NOTES",
    "DUE",
    "CORP",
    "CO",
    "GLOBAL",
    "SELECT",
    "MARKET",
    "STOCK",
    "EXCHANGE",
    "COMMON",
    "NAME",
    "TITLE",
    "SYMBOL",
    "SYMBOLS",
    "TRADING",
    "REGISTERED",
    "WHICH",
    "NOT",
    "APPLICABLE",
    "BY",
    "IS",
    "AS",
    "AT",
    "IN",
    "BE",
    "NO",
    "YES",
}
# A filing cover's own headings in capitals, which come before or around the name.
_COVER_HEADING = re.compile(
    r"^\(?(?:UNITED STATES|WASHINGTON\b.*|MARK ONE|OR|FORM\b.*|AMENDMENT\b.*|.*\bREPORT\b.*|.*\bACT OF\b.*)\)?$"
)
_FILING_COVER = re.compile(r"securities\s+and\s+exchange\s+commission", re.I)
_CHECK_MARK = re.compile(r"indicate\s+by\s+check\s+mark", re.I)
_NAME_AREA_END = re.compile(rf"{_CHECK_MARK.pattern}|registered\s+pursuant|trading\s+symbol", re.I)
_SYMBOL_HEADER = re.compile(r"trading\s+symbol", re.I)
_SMALL_CAPITALS = re.compile(r"(?<![\w&.'’-])([A-Z]) ([A-Z]{2,}[A-Z.,&'’-]*)(?![\w])")
_TICKER = re.compile(r"(?<![\w$.])([A-Z]{1,5}(?:\.[A-Z])?)(?![\w.])")


@dataclass
class Registrant:
    name: str | None
    aliases: list[str]
    ticker: str | None


def _clean(raw: str) -> str | None:
    """A candidate as a name, or None where it cannot be one (a file number, a state, a caption, an address)."""
    if has_han(raw):  # the rules below are for Latin script; a Chinese candidate is a name with its legal form
        return raw.strip()
    # A word with a glyph the PDF did not map to a character ("Oracle Corpora\x00on") is dropped: the rest of the name
    # still says who it is.
    name = " ".join(w for w in raw.replace("\u00a0", " ").split() if not _UNMAPPED.search(w))
    name = re.sub(r"^[A-Z]\s+of\s+", "", _RELEASE_LABEL.sub("", name))  # "(Form 10-)K of Apple Inc."
    name = _CAPTION_RE.sub("", name)
    name = _FILE_NUMBER.sub("", name)
    name = _FILE_NUMBER_TAIL.sub("", _IRS_NUMBER.sub(" ", name)).strip(' ,;:-–—()"“”')
    name = _JURISDICTION_TAIL.sub("", name).strip(" ,;:")
    letters = sum(c.isalpha() for c in name)
    if letters < 2 or len(name) > 90 or len(name.split()) > 9 or sum(c.isdigit() for c in name) > 2:
        return None
    core = set(company_key(name).split())
    if name.lower() in _JURISDICTIONS or _JUNK_WORDS.search(name) or not core or core <= STOPWORDS | LEGAL_SUFFIXES:
        return None  # "If the Company", "Corporation": no name is left once sentence words and suffixes are gone
    words = [w for w in name.split() if w.lower().strip(".,") not in _NAME_JOINERS | LEGAL_SUFFIXES]
    capitalised = sum(w[0].isupper() or w[0].isdigit() or bool(re.match(r"[a-z]+\.com\b|[a-z][A-Z]", w)) for w in words)
    if capitalised < 0.6 * len(words) or not (name[0].isupper() or re.match(r"[a-z]+\.com\b|[a-z][A-Z]", name)):
        return None  # words of a sentence ("For the transition period"); lower-case names such as "eBay" still pass
    return name


def _split_joint(name: str) -> list[str]:
    """ "PG&E CORPORATION AND PACIFIC GAS AND ELECTRIC COMPANY" names two registrants: split where a legal suffix
    ends."""
    parts = re.split(r"\s+(?:and|&)\s+", name, flags=re.I)
    joined, current = [], []
    for part in parts:
        current.append(part)
        if part.split()[-1].lower().strip(".,") in LEGAL_SUFFIXES - {"the"}:
            joined.append(" and ".join(current))
            current = []
    if current:
        return [name]  # the last part has no suffix: one name with "and" in it ("Procter and Gamble")
    return joined if len(joined) > 1 and all(_clean(p) for p in joined) else [name]


def text_lines(text: str) -> list[str]:
    """A page's non-blank lines with runs of spaces (and form underscores) squeezed to one space, and words set in
    small capitals joined again."""
    stripped = (_join_small_capitals(" ".join(line.replace("_", " ").split())) for line in text.splitlines())
    return [line for line in stripped if line]


def _join_small_capitals(line: str) -> str:
    """ "M ANUFACTURING C OMPANY" -> "MANUFACTURING COMPANY": small capitals set the first letter of each word in a
    larger size, and extraction reads the size change as a space. Only a line in capitals with two such words (or
    one alone) is joined: "PART I FINANCIAL INFORMATION" keeps its "I"."""
    if any(c.islower() for c in line):
        return line
    splits = list(_SMALL_CAPITALS.finditer(line))
    if len(splits) >= 2 or (splits and splits[0].group(0) == line):
        return _SMALL_CAPITALS.sub(r"\1\2", line)
    return line


def _caption_candidates(cover: str) -> list[tuple[str, int]]:
    """The name above the caption (or before it on its line), or, where the caption heads a table, the table's rows."""
    lines, found = text_lines(cover), []
    for i, line in enumerate(lines):
        # A table's narrow header cell breaks the caption over lines ("Exact Name of" / "Registrant").
        caption = _CAPTION_RE.search(" ".join(lines[i : i + 3]))
        if not caption or caption.start() >= len(line):
            continue
        before = _clean(line[: caption.start()])
        if before:
            found.append((before, _CAPTION))
            continue
        above = [_clean(lines[j]) for j in range(max(0, i - 2), i)]
        names = [a for a in above if a]
        # Two registrants on two lines ("BOSTON PROPERTIES, INC." / "... LIMITED PARTNERSHIP") above one caption.
        found += [(n, _CAPTION if k == len(names) - 1 else _TABLE_ROW) for k, n in enumerate(names[-2:])]
        if not names:  # a table: "Commission File Number | Exact Name of Registrant | State | IRS No." then rows
            for row in lines[i + 1 : i + 24]:
                if re.search(r"address|telephone", row, re.I):
                    break
                # a row holds the name beside its file number, jurisdiction or IRS number
                if _FILE_NUMBER.match(row) or _IRS_NUMBER.search(row) or _JURISDICTION_TAIL.search(row):
                    name = _clean(row)
                    if name:
                        found.append((name, _TABLE_ROW if found else _CAPTION))
    return found


def _cover_capitals_candidate(cover: str) -> str | None:
    """The first line in capitals on a cover that is not one of a filing cover's headings: where a cover has no
    caption, the registrant's name stands in capitals at its top or among the file number and jurisdiction. Only a
    filing's cover: a glossy report's first capitals are a slogan."""
    if not _FILING_COVER.search(cover):
        return None
    for line in text_lines(cover):
        if _NAME_AREA_END.search(line):
            break  # the securities table or the questions to the filer have begun; the name came before them
        if any(c.islower() for c in line) or _COVER_HEADING.match(line):
            continue
        name = _clean(line)
        # a lone word is a heading broken one word a line ("SECURITIES" / "AND" / "EXCHANGE"), not a name
        if name and len(name.split()) >= 2:
            return name
    return None


def _signature_candidates(text: str) -> list[str]:
    lines = text_lines(text)
    found = []
    for i, line in enumerate(lines):
        label = _REGISTRANT_LABEL.match(line)
        if label:
            found.append(label.group(1))
        elif re.fullmatch(r"\(\s*registrant\s*\)", line, re.I) and i > 0:
            found.append(lines[i - 1])
    return found


def _ticker_from_table(cover: str) -> str | None:
    """The symbol most rows of the cover's trading-symbol table list (the common stock's; notes repeat it or have
    none)."""
    header = _SYMBOL_HEADER.search(cover)
    if not header:
        return None
    end = _CHECK_MARK.search(cover, header.end())
    table = cover[header.end() : end.start() if end else header.end() + 1500]
    first_row = table.split("\n", 2)[1:2]
    counts: Counter[str] = Counter()
    for line in table.splitlines():
        for symbol in _TICKER.findall(line):
            if symbol not in _NOT_TICKERS:
                counts[symbol] += 1
    if not counts:
        return None
    best = max(counts.values())
    tied = [s for s, c in counts.items() if c == best]
    return next((s for s in tied if first_row and s in first_row[0]), tied[0])


def find_registrant(cover: str, pages: list[str], info: list[str]) -> Registrant:
    """The registrant of a document: ``cover`` is its first pages, ``pages`` every page read, ``info`` the PDF's
    title, subject and author."""
    scored: list[tuple[str, int]] = list(_caption_candidates(cover))
    capitals = None if scored else _cover_capitals_candidate(cover)
    if capitals:
        scored.append((capitals, _COVER_CAPITALS))
    text = "\n".join(pages)
    scored += [(n, _CERTIFICATION) for n in (_clean(m.group(1)) for m in _CERTIFICATION_RE.finditer(text)) if n]
    scored += [(n, _SIGNATURE) for n in map(_clean, _signature_candidates(text)) if n]
    head = "\n".join(text_lines(cover)[:_HEAD_LINES])
    scored += [(n, _HEADLINE) for n in (_clean(m.group(1)) for m in _HEADLINE_RE.finditer(head)) if n]
    listings = [(_clean(m.group(1) or ""), m.group(2)) for m in _LISTING_RE.finditer(cover)]
    scored += [(n, _LISTING) for n, _ in listings if n]
    for field in info:
        scored += [(n, _INFO) for n in (_clean(m.group(1)) for m in _SUFFIXED_NAME_ANY_CASE.finditer(field)) if n]
    found = [*_SUFFIXED_NAME.finditer(text), *_HAN_SUFFIXED_NAME.finditer(text)]
    suffixed = Counter(n for n in (_clean(m.group(1)) for m in found) if n)
    scored += [(n, _SUFFIXED * min(c, 4)) for n, c in suffixed.items()]

    totals: dict[str, int] = defaultdict(int)
    spellings: dict[str, Counter[str]] = defaultdict(Counter)
    for raw, weight in scored:
        for name in _split_joint(raw):
            key = company_key(name)
            totals[key] += weight
            spellings[key][name] += weight
    # Only a name the document states as a registrant's (not one merely mentioned with a suffix) can be a runner-up.
    stated = {
        company_key(n)
        for raw, w in scored
        if w > _SUFFIXED * 4 or w in (_CERTIFICATION, _SIGNATURE)
        for n in _split_joint(raw)
    }
    ticker = _ticker_from_table(cover) or next((t for n, t in listings if t not in _NOT_TICKERS), None)
    if not totals:
        return Registrant(None, [ticker] if ticker else [], ticker)
    ranked = sorted(totals, key=lambda k: -totals[k])
    best = ranked[0]
    # The spelling most sources use, a mixed-case one before one in capitals ("Intel Corporation", not "INTEL ...").
    name = max(spellings[best].items(), key=lambda kv: (not _shouted(kv[0]), kv[1]))[0]
    aliases = [name, *spellings[best]]
    aliases += [
        s for k in ranked[1:] if k in stated and totals[k] >= _RUNNER_UP_SHARE * totals[best] for s in spellings[k]
    ]
    # Former names: where the cover says so, or the notes tell of a change of name.
    aliases += [n for n in (_clean(m.group(1)) for m in _FORMER_RE.finditer(cover)) if n]
    aliases += [n for n in (_clean(m.group(1)) for m in _RENAMED_RE.finditer(" ".join(text.split()))) if n]
    if ticker:
        aliases.append(ticker)
    return Registrant(name, _unique(aliases), ticker)


def _shouted(name: str) -> bool:
    """Set mostly in capitals ("INTEL CORPORATION", "McDONALD'S"): a heading's spelling, not the name's."""
    letters = [c for c in name if c.isalpha()]
    return sum(c.isupper() for c in letters) > 0.5 * len(letters)


def _unique(values: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for v in values:
        if v and v.lower() not in seen:
            seen.add(v.lower())
            out.append(v)
    return out
