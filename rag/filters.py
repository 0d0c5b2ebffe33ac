"""Metadata filters: which files a search may return chunks from.

A filter names values per field; a file matches when, for every field given, its value is one of
them (fields AND, values OR). Companies match by name or any of the file's aliases, with or without
a legal suffix ("Apple" matches "Apple Inc."), tickers and forms case-insensitively, ``file_glob`` as a shell glob over
the
file's path. Search applies the resulting file set inside the vector and BM25 searches (see
``rag.search``), so a selective filter still returns k chunks whenever k exist.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from rag.doc_metadata import validation_problems
from rag.languages import HAN_CHARS

MAX_VALUES = 64  # values per field a client may send
_DETECTED = "detected"  # validation context: filters the service made (Filters.detected)
MAX_VALUE_CHARS = 256  # characters per value, and of a file glob

LEGAL_SUFFIXES = {
    "inc",
    "incorporated",
    "corp",
    "corporation",
    "co",
    "company",
    "ltd",
    "limited",
    "llc",
    "plc",
    "lp",
    "sa",
    "ag",
    "nv",
    "se",
    "holdings",
    "group",
    "the",
}


class FilterError(ValueError):
    """A filter a client sent cannot be used; the message names the field."""


# Chinese legal forms, written onto the end of the name: 苹果股份有限公司, 华为技术有限公司, 中信集团
_HAN_LEGAL_SUFFIX = re.compile(r"(?:(?:集团)?(?:股份有限公司|有限责任公司|有限公司|公司)|集团)$")
_NAME_WORD = re.compile(rf"[a-z0-9&]+|[{HAN_CHARS}]+")


def name_words(text: str) -> list[str]:
    """The words of a name, or of a question that may name one, as names are compared: lower case, no punctuation,
    no ".com" ("McDonald's" -> ["mcdonald", "s"], as "McDONALD’S CORPORATION" is read)."""
    return _NAME_WORD.findall(re.sub(r"\.com\b", "", text.lower()))


def company_key(name: str) -> str:
    """A company's name without case, punctuation or legal suffix: "AMAZON.COM, INC." -> "amazon", 苹果股份有限公司 ->
    苹果."""
    words = name_words(name)
    core = [w for w in (_HAN_LEGAL_SUFFIX.sub("", w) for w in words) if w and w not in LEGAL_SUFFIXES]
    return " ".join(core or words)


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    company: list[str] | None = None
    ticker: list[str] | None = None
    form: list[str] | None = None
    fiscal_year: list[int] | None = None
    fiscal_quarter: list[int] | None = None
    period_end: list[str] | None = Field(None, description="ISO dates, e.g. 2023-07-01")
    file: list[str] | None = Field(None, description="Exact file paths as indexed")
    file_glob: str | None = Field(None, max_length=MAX_VALUE_CHARS, description="e.g. '*AAPL*'")

    @field_validator("company", "ticker", "form", "fiscal_year", "fiscal_quarter", "period_end", "file", mode="before")
    @classmethod
    def _listed(cls, value: Any, info: ValidationInfo) -> Any:
        values = value if value is None or isinstance(value, list) else [value]
        if values is not None:
            if len(values) > MAX_VALUES and not (info.context or {}).get(_DETECTED):
                raise ValueError(f"at most {MAX_VALUES} values")
            if any(isinstance(v, str) and len(v) > MAX_VALUE_CHARS for v in values):
                raise ValueError(f"values are at most {MAX_VALUE_CHARS} characters")
        return values

    def given(self) -> dict[str, Any]:
        """The fields that constrain anything, as a plain dict (what responses report)."""
        return self.model_dump(exclude_none=True)

    def merged(self, other: Filters) -> Filters:
        """These filters, with ``other``'s fields filled in where these have none."""
        return Filters.detected({**other.given(), **self.given()})

    @classmethod
    def detected(cls, fields: dict[str, Any]) -> Filters:
        """Filters the service worked out itself (from a question and the collection's metadata): as many values as
        the collection holds, where a client's are bounded (MAX_VALUES): "Q1 2023" in a collection of thousands of
        quarterly reports names thousands of files."""
        return cls.model_validate(fields, context={_DETECTED: True})


FILTER_FIELDS = tuple(Filters.model_fields)


def parse_filters(raw: dict | None) -> Filters:
    """A client's filter object, with unknown fields and bad values named in the error."""
    if raw is None:
        return Filters()
    if not isinstance(raw, dict):
        raise FilterError("filters must be an object of field: value or [values]")
    unknown = sorted(set(raw) - set(Filters.model_fields))
    if unknown:
        raise FilterError(f"unknown filter field(s) {unknown}; known fields: {sorted(Filters.model_fields)}")
    try:
        return Filters.model_validate(raw)
    except ValidationError as err:
        raise FilterError(f"bad filter value(s): {validation_problems(err)}") from err


def _isin(column: pd.Series, values: list, key=lambda v: v) -> np.ndarray:
    """Rows whose value, through ``key``, is one of ``values``'; ``key`` runs once per distinct value (a collection
    has many files and few companies, forms and periods)."""
    wanted = {key(v) for v in values}
    matching = [v for v in column.dropna().unique() if key(v) in wanted]
    return column.isin(matching).to_numpy(dtype=bool)


def names_of(company: Any, aliases: Any) -> list[str]:
    """A file's company and its aliases (a list, an array as Parquet returns it, or None), as one list."""
    listed = (
        []
        if aliases is None or (not isinstance(aliases, (list, tuple, np.ndarray)) and pd.isna(aliases))
        else list(aliases)
    )
    return [n for n in [company, *listed] if isinstance(n, str) and n]


def company_keys(files: pd.DataFrame) -> pd.Categorical:
    """Each file's company and aliases by ``company_key``: what a company filter compares, worked out once per files
    table (rag.store.reader keeps it as the column ``company_keys``), as categories: many files, few companies."""
    aliases = files["aliases"] if "aliases" in files else [None] * len(files)
    keys = [frozenset(map(company_key, names_of(c, a))) for c, a in zip(files["company"], aliases, strict=True)]
    return pd.Categorical(keys)


def _company_mask(files: pd.DataFrame, companies: list[str]) -> np.ndarray:
    """Files whose company or any alias is one of ``companies`` by ``company_key``: each distinct set of keys is
    compared once."""
    wanted = {company_key(c) for c in companies}
    keys = pd.Series(files["company_keys"] if "company_keys" in files else company_keys(files))
    if not isinstance(keys.dtype, pd.CategoricalDtype):
        keys = keys.astype("category")
    meets = np.array([not wanted.isdisjoint(k) for k in keys.cat.categories] + [False], dtype=bool)
    return meets[keys.cat.codes.to_numpy()]  # code -1 (no key set) reads the last, False


def matching_files(files: pd.DataFrame, filters: Filters) -> np.ndarray:
    """Boolean mask over ``files`` (one row per file: ``file`` and the metadata columns) of the files that match."""
    mask = np.ones(len(files), dtype=bool)
    if filters.company:
        mask &= _company_mask(files, filters.company)
    if filters.ticker:
        mask &= _isin(files["ticker"], filters.ticker, lambda v: str(v).upper())
    if filters.form:
        mask &= _isin(files["form"], filters.form, lambda v: str(v).upper())
    if filters.fiscal_year:
        mask &= _isin(files["fiscal_year"], filters.fiscal_year, int)
    if filters.fiscal_quarter:
        mask &= _isin(files["fiscal_quarter"], filters.fiscal_quarter, int)
    if filters.period_end:
        mask &= _isin(files["period_end"], filters.period_end, str)
    if filters.file:
        mask &= files["file"].isin(filters.file).to_numpy()
    if filters.file_glob:
        mask &= np.array([fnmatch.fnmatchcase(f, filters.file_glob) for f in files["file"]], dtype=bool)
    return mask
