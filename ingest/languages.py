"""Each file's language, and the embedding model a collection gets: the configured one while every file is in Latin
script, the multilingual one as soon as any file is not. An English-only model maps Chinese text to noise (zh-wiki
page hit@5 0.34 against 0.9 and more), so one Chinese file among English ones, or a Chinese upload to an English
collection, moves the whole collection to the multilingual model: one vector space, one query vector, and the English
files' retrieval measured against their own model in docs/languages.md."""

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


def embedding_for(settings: Settings, languages: dict[str, str | None], previous_model: str | None) -> Settings:
    """``settings`` with the embedding model this collection is indexed with: the multilingual one where any file
    is not in Latin script, or where the collection was already indexed with it (English embeds well there too;
    switching back would embed everything again)."""
    multilingual = settings.embedding.multilingual_model
    if multilingual is None or multilingual == settings.embedding.model:
        return settings
    if previous_model != multilingual:
        others = sorted(f for f, language in languages.items() if language not in (None, "en"))
        if not others:
            return settings
        named = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        if previous_model is None:
            log.info("%d files are not in Latin script (%s): embedding with %s", len(others), named, multilingual)
        else:
            log.warning(
                "%d files are not in Latin script (%s): the collection moves from %s to %s, and every one of its "
                "%d files is embedded again",
                len(others),
                named,
                previous_model,
                multilingual,
                len(languages),
            )
    return settings.model_copy(update={"embedding": settings.embedding.model_copy(update={"model": multilingual})})
