"""The Collections deployment: each collection's documents, the ingestion jobs that turn them into index versions,
and which version each retriever replica serves.

One replica (it holds the job queue, serving.jobs). Documents go into the collection's folder and a job runs the
same ``ingest.job.run_ingest`` as ``rag ingest`` (the Ray Data pipeline, on the cluster), pruning what left the
folder. While a job runs, further changes wait for one more job, so a burst of uploads costs two runs at
most, never a queue of full ones. The folder is the truth: documents changed while no service ran, or whose job
failed, are picked up when this replica starts, and by ``reindex``; the jobs themselves are kept beside each index
(serving.journal), so the replica that starts in this one's place answers for them and runs again the unfinished.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from ray import serve

from ingest.job import IngestResult, run_ingest
from ingest.metadata_extraction import SIDECAR_FILE
from ingest.planning import document_paths, hash_file
from ingest.progress import Progress
from rag.config import CollectionConfig, Settings
from rag.store.files import FileEntry
from rag.store.versions import IndexDir, NoIndex, current_manifest
from rag.tuning import read_tuned
from serving.jobs import JobQueue
from serving.journal import Journal
from serving.refusals import ChangeRefused, NotFound, refusals_returned

log = logging.getLogger(__name__)

_MAX_NAME = 200


def check_document_name(name: str) -> str:
    """A new document's file name, as stored in the collection's folder: one plain name ending in .pdf."""
    if not name or len(name) > _MAX_NAME:
        raise ChangeRefused(f"a file name must have 1 to {_MAX_NAME} characters")
    if "/" in name or "\\" in name or ".." in name:
        raise ChangeRefused(f"{name!r}: a file name may not contain path separators or '..'")
    if name.startswith(".") or any(ord(c) < 32 or ord(c) == 127 for c in name) or name == SIDECAR_FILE:
        raise ChangeRefused(f"{name!r}: hidden names, control characters and {SIDECAR_FILE} are not accepted")
    if not name.lower().endswith(".pdf"):
        raise ChangeRefused(f"{name!r}: only PDF files (.pdf) are accepted", 415)
    return name


def _store(folder: Path, uploads: list[tuple[str, bytes]]) -> None:
    for filename, data in uploads:
        # Written beside its final name and renamed: a job never reads half a file (hidden names are not read).
        tmp = folder / f".upload-{uuid.uuid4().hex}"
        tmp.write_bytes(data)
        os.replace(tmp, folder / filename)


# One replica: it owns the job queue and the ledger of what the jobs hold. No CPU reserved: it mostly waits, and the
# jobs it starts reserve their own for their tasks and actors.
@serve.deployment(name="Collections", num_replicas=1, max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
class CollectionsDeployment:
    def __init__(self, settings_json: str):
        self.settings = Settings.model_validate_json(settings_json)
        self.collections: dict[str, CollectionConfig] = self.settings.serve.collections
        self._replicas: dict[str, tuple[float, dict]] = {}  # retriever replica -> (when it reported, its versions)
        self._hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> content hash
        # Imported now, not by the first job: it would add seconds (Ray Data, pypdf, the splitter) to that job's start.
        importlib.import_module("ingest.pipeline")
        journal = Journal({name: c.index for name, c in self.collections.items() if c.docs})
        self.queue = JobQueue(self.settings, self._ingest, self._count_pending, _service_placed, journal)
        for name, collection in self.collections.items():
            if collection.docs:
                Path(collection.docs).mkdir(parents=True, exist_ok=True)
                if any(d["status"] == "pending" for d in self._documents(name)):
                    self.queue.submit(name, "*")

    def _ingest(self, name: str, settings: Settings, progress: Callable[[Progress], None]) -> IngestResult:
        # The lock in run_ingest waits for a `rag ingest` of the same index from outside, rather than failing.
        return run_ingest(self._folder(name), self.collections[name].index, settings, True, None, progress)

    def _count_pending(self, name: str) -> int:
        return sum(d["status"] == "pending" for d in self._documents(name))

    # ---- what retriever replicas serve ---------------------------------------------------------
    # The public methods (those the ingress calls) are coroutines: Serve then runs them on the replica's event loop,
    # where the job queue lives, rather than on a thread of its pool; file work is handed to threads explicitly.

    async def report(self, replica: str, versions: dict[str, str | None]) -> None:
        self._replicas[replica] = (time.monotonic(), versions)

    def _serving(self, name: str) -> dict[str, str | None]:
        """The version each live retriever replica serves (one that stopped reporting has gone)."""
        fresh = 3 * self.settings.serve.reload_interval_s + 30
        now = time.monotonic()
        return {
            replica: versions.get(name)
            for replica, (seen, versions) in sorted(self._replicas.items())
            if now - seen < fresh
        }

    # ---- reading ------------------------------------------------------------------------------

    async def overview(self, names: list[str]) -> list[dict]:
        on_disk = await asyncio.to_thread(lambda: [self._on_disk(name) for name in names])
        return [
            {
                "name": name,
                **disk,
                "writable": self.collections[name].docs is not None,
                "replicas": self._serving(name),
                "jobs": [job.id for job in self.queue.of(name)],
            }
            for name, disk in zip(names, on_disk, strict=True)
        ]

    def _on_disk(self, name: str) -> dict:
        """The collection's current version as its manifest describes it."""
        index = self.collections[name].index
        try:
            manifest = current_manifest(index)
        except NoIndex:
            return {"version": None, "updated_at": None, "documents": 0, "failed": 0, "chunks": 0}
        return {
            "version": IndexDir(index).current_name(),
            "updated_at": manifest.created_at,
            "documents": manifest.indexed_files,
            "failed": len(manifest.files) - manifest.indexed_files,
            "chunks": manifest.index.vectors,
            "tuning": _tuning(index),
        }

    async def documents(self, name: str) -> list[dict]:
        return await asyncio.to_thread(self._documents, name)

    def _documents(self, name: str) -> list[dict]:
        """Each document with its status: indexed, failed (with the reason) or pending (changed since the current
        version, waiting for a job)."""
        collection = self.collections[name]
        try:
            entries = current_manifest(collection.index).entries()
        except NoIndex:
            entries = {}
        present = document_paths(Path(collection.docs)) if collection.docs else None
        rows = []
        for file, path in (present or {}).items():
            entry = entries.get(file)
            if entry and entry.doc_hash == self._hash(path):
                rows.append(self._indexed(entry))
            else:
                rows.append(
                    {
                        "file": file,
                        "status": "pending",
                        "size_bytes": path.stat().st_size,
                        "reason": self._pending_reason(name),
                    }
                )
        for file, entry in entries.items():
            if present is None:
                rows.append(self._indexed(entry))
            elif file not in present and entry.status != "failed":
                rows.append(
                    {
                        **self._indexed(entry),
                        "status": "pending",
                        "reason": self._pending_reason(name),
                        "note": "removed from the folder: its chunks leave with the next version",
                    }
                )
        return sorted(rows, key=lambda row: row["file"])

    def _pending_reason(self, name: str) -> str | None:
        """Why a pending document is not indexed yet: the job that will take it up, or the one that failed to."""
        jobs = self.queue.of(name)
        if jobs:
            return f"{jobs[0].id} is {jobs[0].state}" + (f": {jobs[0].waiting}" if jobs[0].waiting else "")
        failed = self.queue.last_failed.get(name)
        if failed is not None:
            return (
                f"{failed.id} failed: {failed.error}. The next change, a POST to /v1/collections/{name}/reindex or "
                "a restart takes it up again"
            )
        return None

    @staticmethod
    def _indexed(entry: FileEntry) -> dict:
        return {
            **entry.model_dump(
                include={"file", "reason", "pages", "chunks", "size_bytes", "metadata", "note", "language"}
            ),
            "status": "failed" if entry.status == "failed" else "indexed",
        }

    def _hash(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = hash_file(path)
        return self._hashes[key]

    @refusals_returned
    async def document_path(self, name: str, file: str) -> str:
        """Where a document of the collection lies: its documents folder, or for a read-only collection the folder
        its current version was made from. Only names the folder listing holds are answered."""
        collection = self.collections[name]
        folder = collection.docs
        if folder is None:
            try:
                folder = (await asyncio.to_thread(current_manifest, collection.index)).docs_dir
            except NoIndex:
                folder = None
        present = await asyncio.to_thread(document_paths, Path(folder)) if folder else {}
        if file not in present:
            raise NotFound(f"document {file!r} not found in collection {name!r}")
        return str(present[file])

    @refusals_returned
    async def job(self, job_id: str) -> dict:
        if job_id not in self.queue.jobs:
            raise NotFound(f"job {job_id!r} not found")
        return self.queue.jobs[job_id].record()

    # ---- changing -----------------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        docs = self.collections[name].docs
        if docs is None:
            raise ChangeRefused(f"collection {name!r} is read-only here: it has no documents folder configured", 409)
        return Path(docs)

    @refusals_returned
    async def add(self, name: str, uploads: list[tuple[str, bytes]]) -> dict:
        """Store the PDFs (all of them or, if one is refused, none) and schedule the job that indexes them."""
        folder = self._folder(name)
        if not uploads:
            raise ChangeRefused("no files in the upload: send them as multipart form fields named 'files'")
        for filename, data in uploads:
            check_document_name(filename)
            if len(data) > self.settings.serve.max_upload_bytes:
                raise ChangeRefused(
                    f"{filename!r} has {len(data) / 2**20:.1f} MB; the limit is "
                    f"{self.settings.serve.max_upload_mb:g} MB",
                    413,
                )
            if not data.startswith(b"%PDF-"):
                raise ChangeRefused(f"{filename!r} is not a PDF (it does not start with %PDF-)", 415)
        await asyncio.to_thread(_store, folder, uploads)
        job = self.queue.submit(name, *(f"+{filename}" for filename, _ in uploads))
        digests = {filename: hashlib.sha256(data).hexdigest() for filename, data in uploads}
        return {
            "job": job.record(),
            "files": [{"file": f, "status": "pending", "doc_hash": h} for f, h in digests.items()],
        }

    @refusals_returned
    async def remove(self, name: str, file: str) -> dict:
        """Take a document out of the folder and schedule the job that takes its chunks out of the index."""
        folder = self._folder(name)
        present = await asyncio.to_thread(document_paths, folder)
        if file not in present:  # only a name listed in the folder is ever removed: no path from outside is used
            raise NotFound(f"document {file!r} not found in collection {name!r}")
        await asyncio.to_thread(present[file].unlink)
        return {"job": self.queue.submit(name, f"-{file}").record(), "file": file, "status": "pending"}

    @refusals_returned
    async def reindex(self, name: str) -> dict:
        """A job over the whole folder: takes up documents whose job failed (unchanged ones are reused, not redone)."""
        self._folder(name)
        return {"job": self.queue.submit(name, "*").record()}


def _service_placed() -> bool:
    """Whether this replica's application has placed its replicas (or given up on them): their resources come before
    any job's."""
    app = serve.status().applications.get(serve.get_replica_context().app_name)
    return app is None or app.status not in ("NOT_STARTED", "DEPLOYING")


def _tuning(index: str | Path) -> dict | None:
    """The retrieval settings `rag tune` chose for the collection, and on what; None where the config's stand."""
    try:
        tuned = read_tuned(index)
    except ValueError as err:
        return {"error": str(err)}
    if tuned is None:
        return None
    chosen_by = tuned.get("chosen_by") or {}
    return {"retrieval": tuned["retrieval"], "dataset": chosen_by.get("dataset"), "at": chosen_by.get("at")}
