"""An index directory of immutable versions and a pointer to the current one.

    INDEX_DIR/
      CURRENT              the current version's name; replaced whole (os.replace), never absent once written
      versions/v000007/    one version: its manifest.json, which lists its segments (rag.store.files)
      segments/s000012-*/  one immutable segment (rag.store.segments), shared by the versions that list it
      .lock                held by the one writer (an ingestion, a merge, a rollback) for as long as it writes
      .staging-*/          a segment or version being written; a writer that died left it, the next one removes it
      .jobs.json           the service's ingestion jobs of this collection (serving.journal), where it serves one

A reader resolves CURRENT once and opens that version as a whole, so it never sees a mix of two runs;
a writer adds segments, then a version listing them beside the others, and then flips CURRENT. A segment no kept
version lists is removed with the last version that did. An index written before versions existed (the four files
at the top level) is read as it is and becomes version v000000 on the next write; a version written before segments
holds its one segment's files itself, and they are linked into segments/ when a run builds on it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rag.config import IndexConfig
from rag.locks import LockBusy, exclusive
from rag.store.errors import SEGMENTS, STAGING, VERSIONS
from rag.store.files import (
    INDEX_FILES,
    LEXICAL_DIR,
    MANIFEST_FILE,
    Manifest,
    SegmentRef,
    has_manifest,
    read_manifest,
    replace_whole,
    write_json,
)
from rag.store.segments import (
    Located,
    SegmentInfo,
    adopt,
    located,
    new_segment_name,
    read_info,
    segment_dir,
    write_staged,
)

if TYPE_CHECKING:
    from rag.store.reader import IndexStore

log = logging.getLogger(__name__)

POINTER = "CURRENT"
LOCK = ".lock"
_LEGACY = "v000000"


class IndexBusy(Exception):
    """Another writer holds the index; the message says who."""


class NoIndex(FileNotFoundError):
    """The directory holds no version yet."""


@dataclass(frozen=True)
class Version:
    name: str
    path: Path
    current: bool


class IndexDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    # ---- reading ------------------------------------------------------------------------------

    def current_name(self) -> str | None:
        """The current version's name; None when there is none. An unversioned index reads as v000000."""
        try:
            return (self.root / POINTER).read_text().strip()
        except FileNotFoundError:
            return _LEGACY if has_manifest(self.root) else None

    def current(self) -> Version:
        name = self.current_name()
        if name is None:
            raise NoIndex(f"{self.root} holds no index yet: run `rag ingest DOCS --index {self.root}` first")
        path = self.root if name == _LEGACY and not (self.root / POINTER).exists() else self.root / VERSIONS / name
        return Version(name, path, True)

    def versions(self) -> list[Version]:
        """Every complete version, oldest first."""
        current = self.current_name()
        found = sorted(p for p in (self.root / VERSIONS).glob("v*") if has_manifest(p))
        versions = [Version(p.name, p, p.name == current) for p in found]
        if current == _LEGACY and not (self.root / POINTER).exists():
            versions.insert(0, Version(_LEGACY, self.root, True))
        return versions

    # ---- writing ------------------------------------------------------------------------------

    @contextmanager
    def writing(self, wait_s: float | None = 0, purpose: str = "an ingestion") -> Iterator[Writer]:
        """The index for writing, one writer at a time. ``wait_s``: how long to wait for another writer
        (None: as long as it takes); past it, IndexBusy."""
        try:
            with exclusive(self.root / LOCK, wait_s, purpose):
                writer = Writer(self)
                writer.clean_staging()
                yield writer
        except LockBusy as busy:
            raise IndexBusy(
                f"{self.root} is being written: {busy}. Wait for it to finish, or wait for it "
                "(rag ingest --wait SECONDS)"
            ) from None


class Writer:
    """What the holder of an index's lock may do."""

    def __init__(self, index: IndexDir):
        self.index = index
        self.root = index.root

    def clean_staging(self) -> None:
        for stale in self.root.glob(STAGING + "*"):
            shutil.rmtree(stale, ignore_errors=True)

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A directory to write a version into; removed if writing fails."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=STAGING, dir=self.root))
        try:
            yield path
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise

    def add_segment(self, chunks, vectors, cfg: IndexConfig, model: str, share: Sequence[Located] = ()) -> Located:
        """A new segment of ``chunks`` and their ``vectors`` (rag.store.segments.write_staged: an IVF index takes up
        the training of one of ``share`` where it can), complete on disk before it is named; no version lists it
        yet."""
        with self.staging() as staging:
            segment = self.take(staging / write_staged(staging, chunks, vectors, cfg, model, share))
        staging.rmdir()  # empty: its one segment was renamed out of it
        return segment

    def take(self, staged: Path) -> Located:
        """A segment written into ``staged`` (rag.store.segments.write_staged), named now; no version lists it yet."""
        return self._name(staged, read_info(staged))

    def segments_of(self, version: Version) -> list[Located]:
        """The segments of ``version``; one written before segments has its files linked in as one now."""
        manifest = read_manifest(version.path)
        if manifest.segmented:
            return located(version.path, manifest)
        if not manifest.index.vectors:
            return []
        with self.staging() as staged:
            return [self._name(staged, adopt(version.path, manifest, staged))]

    def _name(self, staged: Path, info: SegmentInfo) -> Located:
        (self.root / SEGMENTS).mkdir(exist_ok=True)
        name = new_segment_name(self.root)
        staged.rename(segment_dir(self.root, name))
        return Located(SegmentRef(name=name, rows=info.rows), segment_dir(self.root, name), info)

    def publish_manifest(self, manifest: Manifest, keep: int) -> str:
        """A version of ``manifest`` (its segments already written), made current; see ``publish``."""
        with self.staging() as staged:
            write_json(staged / MANIFEST_FILE, manifest)
            return self.publish(staged, keep)

    def publish(self, staged: Path, keep: int) -> str:
        """Make ``staged`` the next version and the current one; keep the newest ``keep`` versions (and the current)."""
        self._adopt_legacy()
        versions = self.root / VERSIONS
        versions.mkdir(exist_ok=True)
        taken = [int(p.name[1:]) for p in versions.glob("v*") if p.name[1:].isdigit()]
        name = f"v{max(taken, default=0) + 1:06d}"
        staged.rename(versions / name)
        self.point_to(name)
        self.prune(keep)
        return name

    def point_to(self, name: str) -> None:
        if not has_manifest(self.root / VERSIONS / name):
            raise FileNotFoundError(f"{self.root} has no version {name}: `rag index versions` lists them")
        replace_whole(self.root / POINTER, name + "\n")

    def prune(self, keep: int) -> None:
        """Versions past the newest ``keep`` (never the current one), then the segments no version left lists."""
        current = self.index.current_name()
        found = sorted(p for p in (self.root / VERSIONS).glob("v*") if p.is_dir())
        for old in found[:-keep] if keep else found:
            if old.name != current:
                shutil.rmtree(old, ignore_errors=True)
        listed = {ref.name for v in self.index.versions() for ref in read_manifest(v.path).segments}
        for segment in (self.root / SEGMENTS).glob("*"):
            if segment.name not in listed:
                shutil.rmtree(segment, ignore_errors=True)

    def _adopt_legacy(self) -> None:
        """An unversioned index becomes v000000: linked in, pointed to, and only then removed from the top level,
        so a reader finds one or the other at every moment."""
        if (self.root / POINTER).exists() or not has_manifest(self.root):
            return
        target = self.root / VERSIONS / _LEGACY
        names = [*INDEX_FILES, *read_manifest(self.root).stored]  # the stored ones include bm25/'s
        for name in names:
            if (self.root / name).exists() and not (target / name).exists():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                os.link(self.root / name, target / name)
        self.point_to(_LEGACY)
        for name in names:
            (self.root / name).unlink(missing_ok=True)
        shutil.rmtree(self.root / LEXICAL_DIR, ignore_errors=True)


def open_index(root: str | Path, reuse: IndexStore | None = None) -> IndexStore:
    """The current version of the index at ``root``, loaded and checked; ``reuse``: a version already open, whose
    segments the new one shares are taken from it rather than read again. A version pruned between reading the
    pointer and opening it (several versions published in that moment) is followed to the new current one."""
    from rag.store.reader import IndexStore

    index = IndexDir(root)
    while True:
        version = index.current()
        try:
            return IndexStore(version.path, version.name, reuse.segments if reuse else None)
        except Exception:
            if index.current_name() == version.name and version.path.exists():
                raise  # no race: this version itself cannot be read
            log.info("version %s of %s went while being opened; opening the current one", version.name, root)


def current_manifest(root: str | Path) -> Manifest:
    """The current version's manifest (what was indexed, how, and the run's figures)."""
    return read_manifest(IndexDir(root).current().path)
