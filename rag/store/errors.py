"""What can go wrong with the index's files, each said in one sentence that names the file and the way out. Light to
import: the CLI catches these before it has loaded anything else."""

from __future__ import annotations

import shutil
from pathlib import Path

VERSIONS = "versions"  # an index directory keeps its versions in this folder (rag.store.versions)
SEGMENTS = "segments"  # and the segments they are made of in this one (rag.store.segments)
STAGING = ".staging-"  # and what is being written in folders named so (rag.store.versions)


class StoreError(Exception):
    """The index's files cannot be written or read; the message is one sentence naming the file and the way out."""


class DamagedVersion(StoreError):
    """A version's file (or one of its segments') is missing, cut short or unreadable: the version is not opened."""

    def __init__(self, version: Path, name: str, what: str):
        """``version``: the folder of the version or of one of its segments; ``name``: the file, relative to it."""
        kept = version.parent.name in (VERSIONS, SEGMENTS)  # else an index written before versions: the folder itself
        root = version.parent.parent if kept else version
        label = {
            VERSIONS: f"version {version.name}",
            SEGMENTS: f"segment {version.name} (with each version using it)",
        }.get(version.parent.name)
        label = label or "the index"
        super().__init__(
            f"{version / name} {what}, so {label} is damaged and is not opened: `rag index rollback --index {root}` "
            f"makes the version before it current, `rag index verify --index {root}` checks every version"
        )


class DiskFull(StoreError):
    """No space left where a version is written; the current version is untouched."""

    def __init__(self, path: Path, needed_bytes: int):
        """``path``: what was being written; named by the index directory that holds it."""
        while any(part.startswith(STAGING) for part in path.parts):
            path = path.parent
        free = shutil.disk_usage(path if path.exists() else path.parent).free
        super().__init__(
            f"no space left on the device holding {path}: the new version needs about {_mb(needed_bytes)} and "
            f"{_mb(free)} are free. The current version is untouched: free some space there (or give the index "
            "another place) and run again"
        )


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"
