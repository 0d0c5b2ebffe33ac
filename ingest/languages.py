"""Each file's language, and the embedding model that reads it: the configured one for a file in Latin script, the
multilingual one for any other (an English-only model maps Chinese text to noise: zh-wiki page hit@5 0.34 against 0.9
and more, while multilingual-e5 puts the right SEC page in the top 5 less often than MiniLM, 0.45 against 0.60 on the
dev split: docs/languages.md). A collection of both kinds holds a vector space per model; a question is embedded by
the model of its own language (rag.search)."""

from __future__ import annotations

import logging

from ingest.pdf_pages import UnreadableDocument, read_pdf_pages
from ingest.planning import SourceFile
from rag.config import PdfConfig, Settings
from rag.languages import Language, language_of
from rag.ray_runtime import ensure_ray
from rag.store.files import Manifest

log = logging.getLogger(__name__)

SAMPLE_PAGES = 2  # a file's first pages tell its script; without OCR, which would cost seconds a page
PARALLEL_FROM = 32  # files to read: from this many, Ray tasks read them across the cluster (60-90 ms a file here)
_BATCH = 16  # files a task reads


def file_language(src: SourceFile, pdf: PdfConfig) -> Language | None:
    """``rag.languages.language_of`` of the file's first pages; None where they have no text or cannot be read."""
    try:
        pages = read_pdf_pages(src.path, pdf, only=lambda n: range(min(n, SAMPLE_PAGES)), ocr=False)
    except UnreadableDocument:  # reported by the pipeline; here it only has no language
        return None
    return language_of("".join(pages.texts))


def _batch_languages(sources: list[SourceFile], pdf: PdfConfig) -> dict[str, Language | None]:
    return {src.file: file_language(src, pdf) for src in sources}


def languages_of(
    sources: list[SourceFile], settings: Settings, previous: Manifest | None, parallel_from: int = PARALLEL_FROM
) -> dict[str, str | None]:
    """Each file's language: the previous version's where the file is unchanged, read from its first pages
    otherwise (by Ray tasks where there are ``parallel_from`` files or more to read)."""
    known = previous.entries() if previous else {}
    # files gone from the folder stay in the collection until a run with --prune
    languages: dict[str, str | None] = {f: e.language for f, e in known.items() if e.status != "failed"}
    unread = []
    for src in sources:
        entry = known.get(src.file)
        if entry is not None and entry.doc_hash == src.doc_hash and entry.language is not None:
            languages[src.file] = entry.language
        else:
            unread.append(src)
    if len(unread) < parallel_from:
        return languages | _batch_languages(unread, settings.pdf)
    import ray

    ensure_ray(settings.ray)
    log.info("reading the first pages of %d files for their language", len(unread))
    read = ray.remote(num_cpus=0.5)(_batch_languages)
    for found in ray.get([read.remote(unread[i : i + _BATCH], settings.pdf) for i in range(0, len(unread), _BATCH)]):
        languages |= found
    return languages


def models_for(settings: Settings, languages: dict[str, str | None]) -> dict[str, str]:
    """The embedding model of each file: ``embedding.multilingual_model`` for a file not in Latin script, the
    configured model for one in Latin script, and for a file whose first pages have no text (a scan, read by OCR
    later) the model most of the others have (the configured one where as many have each)."""
    latin = settings.embedding.model
    multilingual = settings.embedding.multilingual_model or latin
    known = [language for language in languages.values() if language is not None]
    beyond = sum(language != "en" for language in known)
    unknown = multilingual if beyond > len(known) - beyond else latin
    return {
        file: unknown if language is None else latin if language == "en" else multilingual
        for file, language in languages.items()
    }
