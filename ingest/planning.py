"""What an ingestion run has to do: the files of the folder, against the manifest of the current version (what the
next run may reuse, what it must process, what is gone)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ingest.metadata_extraction import METADATA_VERSION, SIDECAR_FILE
from rag.config import Settings
from rag.store.files import Manifest


def fingerprint(settings: Settings) -> str:
    """Changes exactly when the settings that decide chunks and vectors change: then nothing can be reused."""
    relevant = {
        "metadata": METADATA_VERSION,
        "pdf": settings.pdf.model_dump(),
        "chunking": settings.chunking.model_dump(),
        # both models: files not in Latin script are embedded by the multilingual one (ingest.languages)
        "embedding": settings.embedding.model_dump(exclude={"device", "dtype", "encode_batch_size"}),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SourceFile:
    path: str  # absolute, for the workers
    file: str  # relative to the documents folder, as stored
    doc_hash: str
    size_bytes: int
    overrides_hash: str = ""  # of its metadata.jsonl entry, "" when it has none


def overrides_hash(overrides: dict | None) -> str:
    return hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:16] if overrides else ""


def hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _visible(docs_dir: Path):
    """(name relative to the folder, path) of every entry under ``docs_dir`` outside hidden files and folders."""
    for path in sorted(docs_dir.rglob("*")):
        rel = path.relative_to(docs_dir)
        if not any(part.startswith(".") for part in rel.parts):
            yield rel.as_posix(), path


def document_paths(docs_dir: Path) -> dict[str, Path]:
    """Every regular, non-hidden file under ``docs_dir`` but the metadata sidecar, by its name relative to the folder
    (non-PDFs included: ingestion reports them as failed rather than ignoring them)."""
    return {name: path for name, path in _visible(docs_dir) if path.is_file() and name != SIDECAR_FILE}


def unusable_entries(docs_dir: Path) -> dict[str, str]:
    """Entries under ``docs_dir`` that a person would take for documents but that cannot be read as files, by name
    relative to the folder -> why: symbolic links that loop or lead nowhere, directories named like a PDF, pipes and
    other special files. They are reported with the failed files instead of being passed over without a word."""
    found = {}
    for name, path in _visible(docs_dir):
        try:
            mode = path.stat().st_mode
        except OSError as err:
            if path.is_symlink():
                found[name] = (
                    "a symbolic link that loops"
                    if err.errno == errno.ELOOP
                    else f"a symbolic link to nothing ({os.readlink(path)} does not exist)"
                )
            continue
        if stat.S_ISDIR(mode) and path.suffix.lower() == ".pdf":
            found[name] = "a directory named like a PDF, not a file (the files inside it are read on their own)"
        elif not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):
            found[name] = "not a regular file (a pipe, socket or device)"
    return found


def discover(docs_dir: Path, sidecar: dict[str, dict]) -> list[SourceFile]:
    return [
        SourceFile(str(path.resolve()), file, hash_file(path), path.stat().st_size, overrides_hash(sidecar.get(file)))
        for file, path in document_paths(docs_dir).items()
    ]


@dataclass
class Plan:
    to_process: list[SourceFile]  # new, changed, previously failed, or everything after a settings change
    unchanged: list[SourceFile]  # chunks and vectors reused from the previous index
    missing: list[str]  # indexed before, gone from the folder now, kept because --prune was not given
    pruned: list[str]  # indexed before, gone from the folder now, dropped
    reasons: dict[str, str] = field(default_factory=dict)  # file -> why it is processed
    unusable: dict[str, str] = field(
        default_factory=dict
    )  # entries that are no readable file -> why (unusable_entries)


def plan_run(sources: list[SourceFile], previous: Manifest | None, fp: str, prune: bool) -> Plan:
    old = previous.entries() if previous else {}
    if previous is not None and previous.fingerprint != fp:
        old = {}
        everything_reason = "settings that shape chunks or vectors changed"
    else:
        everything_reason = None
    plan = Plan([], [], [], [])
    for src in sources:
        entry = old.get(src.file)
        if (
            entry
            and entry.status != "failed"
            and entry.doc_hash == src.doc_hash
            and entry.overrides_hash == src.overrides_hash
        ):
            plan.unchanged.append(src)
            continue
        plan.to_process.append(src)
        if everything_reason:
            plan.reasons[src.file] = everything_reason
        elif entry is None:
            plan.reasons[src.file] = "new"
        elif entry.status == "failed":
            plan.reasons[src.file] = "failed before"
        elif entry.doc_hash == src.doc_hash:
            plan.reasons[src.file] = f"its {SIDECAR_FILE} entry changed"
        else:
            plan.reasons[src.file] = "changed"
    present = {s.file for s in sources}
    for name, entry in old.items():
        if name not in present and entry.status != "failed":
            (plan.pruned if prune else plan.missing).append(name)
    return plan
