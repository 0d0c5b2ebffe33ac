"""Filters from what a question names: companies, tickers, forms and periods that the index actually holds.

Nothing is matched against a fixed list: the candidates are the metadata values of the indexed
files, a company's aliases included. What is named with confidence filters: a company by one of its
names or its ticker, a quarter with its year (by the filer's fiscal calendar, or by the label a file
name gives it), a period-end date, "the latest" report, and fiscal years ("FY2022", "fiscal 2022",
"in 2022", every year of "from FY2015 to FY2016") when the index holds that company's documents for
those years. What is uncertain only boosts: a company named by an initialism ("JnJ") or by the first
word of a longer name, a year with no company to anchor it. A period the index holds, but not for the
company named, widens the filter to the company's files and the period's (a label may be wrong). The question speaks
first; a follow-up
that names no company or period takes them from the most recent earlier user turn that does.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
from bm25s.stopwords import STOPWORDS_EN_PLUS

from rag.doc_metadata import QUESTION_FORMS, form_key
from rag.filters import Filters, company_key, matching_files, name_words, names_of
from rag.languages import has_han
from rag.questions.periods import DATE, YEAR, dates_in, fiscal_years_in, quarters_in

_YEAR_ALONE = re.compile(r"(?<![\d$,.])(" + YEAR + r")(?![\d,%])")
_LATEST = re.compile(
    r"\b(latest|most recent|last|newest|current)\s+(?:\w+\s+){0,2}?(10-[QK]|report|filing|quarter|quarterly)", re.I
)
_FORM = re.compile(r"\b(" + "|".join(f.replace("-", "-?") for f in QUESTION_FORMS) + r")\b", re.I)
_MIN_KEY_CHARS = 3  # a name shorter than this ("HP" aside, which its ticker covers) matches too many words
_MIN_HAN_KEY_CHARS = 2
_MIN_FIRST_WORD_CHARS = 4
_JOINERS = {"and", "&", "of", "the"}
_PICKED_KEPT = 64  # sets of files (a question's companies) whose rows are kept


@dataclass
class Detected:
    filters: Filters  # confident: applied as filters
    boosts: Filters  # uncertain: chunks matching them rank higher
    matched: list[str] = field(default_factory=list)  # the words that matched, for the response


def _initialisms(key: str) -> set[str]:
    """ "johnson & johnson" -> {"j&j", "jnj"}; "pacific gas and electric" -> {"pg&e", "pgne", "pge"}."""
    words = key.split()
    if len(words) < 2:
        return set()
    letters = [("&" if w in ("and", "&") else w[0]) for w in words if w not in ("of", "the")]
    plain = "".join(letters)
    found = {plain, plain.replace("&", "n"), plain.replace("&", "")}
    return {f for f in found if len(f) >= _MIN_KEY_CHARS and f not in STOPWORDS_EN_PLUS}  # "all" is no initialism


def _has(text: str, word: str) -> bool:
    """``word`` stands in ``text`` as a word of its own; a Chinese name anywhere (Chinese has no spaces around
    words)."""
    if has_han(word):
        return word in text
    return re.search(rf"(?<![\w&]){re.escape(word)}(?![\w&])", text) is not None


def _long_enough(key: str) -> bool:
    """A name key that is not too short to match safely: two Han characters say as much as three letters."""
    return len(key) >= (_MIN_HAN_KEY_CHARS if has_han(key) else _MIN_KEY_CHARS)


class MentionMatcher:
    """Matches questions against one index's per-file metadata (``files``: ``file`` plus the metadata columns)."""

    def __init__(self, files: pd.DataFrame):
        self.files = files
        self._sure: dict[str, set[str]] = defaultdict(set)  # name key -> files
        self._unsure: dict[str, set[str]] = defaultdict(set)  # initialism or first word -> files
        self._tickers: dict[str, set[str]] = defaultdict(set)
        aliases = files["aliases"] if "aliases" in files else [None] * len(files)
        for file, company, names, ticker in zip(files["file"], files["company"], aliases, files["ticker"], strict=True):
            if isinstance(ticker, str) and ticker:
                self._tickers[ticker].add(file)
            for name in names_of(company, names):
                key = company_key(name)
                if name == ticker or not _long_enough(key):
                    continue
                self._sure[key].add(file)
                for short in _initialisms(key):
                    self._unsure[short].add(file)
                first = key.split()[0]
                if len(key.split()) > 1 and len(first) >= _MIN_FIRST_WORD_CHARS and first not in _JOINERS:
                    self._unsure[first].add(file)
        for key in self._sure:  # a name that is some company's own name is never only a guess
            self._unsure.pop(key, None)
        self._forms = {form_key(f): f for f in files["form"].dropna()}
        self._company_keys = pd.Series(
            [company_key(c) if isinstance(c, str) else None for c in files["company"]], index=files.index
        )
        labels = Counter(self._company_keys)
        self._lone_labels = {
            f for f, key in zip(files["file"], self._company_keys, strict=True) if key is None or labels[key] == 1
        }
        self._period_ends = set(files["period_end"].dropna())
        # Each quarter's files, by the labels their names give them and by their filers' calendars: worked out once,
        # as sets, so that the quarters a question names meet its scope by set operations, not a walk over its files.
        period_labels = files["period_aliases"] if "period_aliases" in files else [None] * len(files)
        self._relabelled: set[str] = set()
        self._by_label: dict[tuple[int, ...], set[str]] = defaultdict(set)
        for f, named in zip(files["file"], period_labels, strict=True):
            for label in {tuple(map(int, re.findall(r"\d+", a))) for a in names_of(None, named)}:
                self._by_label[label].add(f)
                self._relabelled.add(f)
        self._by_fiscal: dict[tuple[int, int], set[str]] = defaultdict(set)
        for f, y, q in zip(files["file"], files["fiscal_year"], files["fiscal_quarter"], strict=True):
            if pd.notna(y) and pd.notna(q):
                self._by_fiscal[(int(y), int(q))].add(f)
        # Each file's row, for the hundreds of files a company's name picks out of thousands
        self._position = {f: i for i, f in enumerate(files["file"])}
        self._every = set(self._position)
        self._picked: dict[frozenset[str], pd.DataFrame] = {}
        self._years = {int(y) for y in files["fiscal_year"].dropna()}

    # ---- companies ------------------------------------------------------------------------------

    def _companies_in(self, text: str) -> tuple[set[str], set[str], list[str]]:
        """(files of companies named with confidence, files of companies perhaps meant, words that matched)."""
        # The question's words as names are keyed, so that "McDonald's" meets the key "mcdonald s"
        lowered, sure, words = " ".join(name_words(text)), set(), []
        for key in sorted(self._sure, key=len, reverse=True):  # "meta platforms" before "meta"
            if _has(lowered, key):
                sure |= self._sure[key]
                words.append(key)
                lowered = lowered.replace(key, " ")
        for ticker, files in self._tickers.items():
            if len(ticker) >= 2 and _has(text, ticker):
                sure |= files
                words.append(ticker)
        unsure = set()
        for short, files in self._unsure.items():
            if _has(lowered, short):
                unsure |= files - sure
                words.append(short)
        return sure, unsure, words

    # ---- periods --------------------------------------------------------------------------------

    def _rows(self, files: set[str] | None) -> pd.DataFrame:
        """The rows of ``files`` (None: all), kept for the next questions: a question's companies come back."""
        if files is None:
            return self.files
        key = frozenset(files)
        if key not in self._picked:
            if len(self._picked) >= _PICKED_KEPT:
                self._picked.pop(next(iter(self._picked)))
            self._picked[key] = self.files.take(sorted(self._position[f] for f in files))
        return self._picked[key]

    def _quarter_filter(self, quarters: set[tuple[int, int]], scope: set[str] | None) -> dict:
        """The filter for the quarters named, {} where no file of ``scope`` has them. Where the folder labels its files
        ("2023 Q1 MSFT.pdf") and a label differs from the filer's fiscal quarter, the label is what people ask by."""
        files = self._every if scope is None else scope
        relabelled = self._relabelled & files
        by_label = set().union(*(self._by_label.get(q, set()) for q in quarters)) & relabelled
        by_fiscal = set().union(*(self._by_fiscal.get(q, set()) for q in quarters)) & files
        if by_label:
            return {"file": sorted(by_label | (by_fiscal - relabelled))}
        if not by_fiscal:
            return {}
        years, qs = {y for y, _ in quarters}, {q for _, q in quarters}
        if len(quarters) == len(years) * len(qs) and not relabelled:  # a grid ("Q1 and Q2 2023") is exact as two fields
            return {"fiscal_year": sorted(years), "fiscal_quarter": sorted(qs)}
        return {"file": sorted(by_fiscal)}

    def _years_in(self, text: str) -> list[int]:
        """Fiscal years the text names: "FY2022", "fiscal 2022", and bare years outside dates."""
        years = fiscal_years_in(text)
        bare = _YEAR_ALONE.findall(DATE.sub(" ", text))
        return sorted(set(years) | {int(y) for y in bare})

    def _periods_in(self, text: str, scope: set[str] | None) -> tuple[dict, dict, list[str]]:
        """(filter fields, boost fields, matched words) for the periods ``text`` names; ``scope``: the files of the
        companies named with confidence (None: no company)."""
        dates = set(dates_in(text)) & self._period_ends
        if dates:
            return {"period_end": sorted(dates)}, {}, sorted(dates)
        quarters = set(quarters_in(text))
        if quarters:
            words = [f"Q{q} {y}" for y, q in sorted(quarters)]
            chosen = self._quarter_filter(quarters, scope)
            return (chosen, {}, words) if chosen else ({}, {"fiscal_year": sorted({y for y, _ in quarters})}, words)
        years = self._years_in(text)
        held = {int(y) for y in self._rows(scope)["fiscal_year"].dropna()}
        if not years or not set(years) & self._years:
            return {}, {}, []
        # A company's documents of the years named: filter (a comparison keeps every year it names). No company, or
        # none of its documents of those years: the year only boosts.
        if scope is not None and set(years) & held:
            return {"fiscal_year": years}, {}, [str(y) for y in years]
        return {}, {"fiscal_year": years}, [str(y) for y in years]

    def _missing_period_files(self, text: str, sure: set[str]) -> set[str]:
        """Files of the periods ``text`` names that no file of the named company has (a date, a quarter, an explicit
        fiscal year): where a label is wrong (the filing's company read as its file number), the filing sought is
        among them."""
        own = self._rows(sure)
        dates = set(dates_in(text)) & self._period_ends
        if dates:
            return set(self.files["file"][self.files["period_end"].isin(dates - set(own["period_end"].dropna()))])
        quarters = set(quarters_in(text))
        if quarters:
            missing = {q for q in quarters if not self._quarter_filter({q}, sure)}
            found = self._quarter_filter(missing, None) if missing else {}
            return set(self.files["file"][matching_files(self.files, Filters.detected(found))]) if found else set()
        years = set(fiscal_years_in(text)) - {int(y) for y in own["fiscal_year"].dropna()}
        return set(self.files["file"][self.files["fiscal_year"].isin(years)]) if years else set()

    def _latest_files(self, scope: set[str] | None) -> list[str]:
        files = self._rows(scope).dropna(subset=["period_end"])
        groups = files.groupby(self._company_keys[files.index]) if len(files) else []
        return sorted(group.loc[group["period_end"].idxmax(), "file"] for _, group in groups)

    # ---- the question ---------------------------------------------------------------------------

    def detect(self, question: str, history: Sequence[dict] = ()) -> Detected:
        earlier = [m.get("content", "") for m in history if m.get("role") == "user"][::-1]
        sure, unsure, words = self._companies_in(question)
        for turn in earlier:
            if sure or unsure:
                break
            sure, unsure, words = self._companies_in(turn)
        scope = sure or None
        periods, boosts, period_words = self._periods_in(question, scope)
        latest, period_text = bool(_LATEST.search(question)), question
        for turn in earlier:
            if periods or boosts or latest:
                break
            periods, boosts, period_words = self._periods_in(turn, scope)
            latest, period_text = bool(_LATEST.search(turn)), turn
        chosen: dict = {"company": sorted(set(self._rows(sure)["company"].dropna()))} if sure else {}
        forms = {self._forms[form_key(f)] for f in _FORM.findall(question) if form_key(f) in self._forms}
        if forms and len(self._forms) > 1:
            chosen["form"] = sorted(forms)
        if latest and not periods:
            periods = {"file": self._latest_files(scope)}
            period_words = ["latest"]
        with_period = Filters.detected({**chosen, **periods})
        if periods and matching_files(self.files, with_period).any():
            chosen.update(periods)
            words += period_words
        elif boosts:
            # A confident period that no file of the named companies has is a misreading: keep the companies alone.
            words += period_words
        # The index has a period named, but not for the company named: either a label is wrong (the filing's company
        # read as its file number) or the company has no such filing. The search keeps to what the filters chose and
        # the period's files whose company label no other file shares (a misreading is one of a kind), and those are
        # boosted (chosen on the SEC dev split with labels corrupted on
        # purpose: docs/retrieval.md).
        elsewhere = self._missing_period_files(period_text, sure) & self._lone_labels if sure and not latest else set()
        if elsewhere:
            kept = set(self.files["file"][matching_files(self.files, Filters.detected(chosen))])
            chosen = {"file": sorted(kept | elsewhere)}
            unsure |= elsewhere
            words += [w for w in period_words if w not in words]
        if unsure:
            boosts = {**boosts, "file": sorted(unsure)}
        filters = Filters.detected(chosen)
        if not matching_files(self.files, filters).any():
            filters = Filters()
        return Detected(filters, Filters.detected(boosts), words)
