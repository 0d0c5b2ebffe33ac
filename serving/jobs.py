"""Ingestion jobs of every collection, admitted one cluster's worth at a time and retried when their cause can pass.

Two pipelines started together on a cluster that holds one can each take half of what the other needs and stall
both (parse tasks on every free CPU, no embedding actor placed). So no job starts on its own: the queue starts the
oldest waiting job only when the CPUs (and GPUs) its pool needs are free beside the service's replicas and the jobs
already running, fits its pool to them, and caps the pipeline to what it was given (``ingest.max_cpus``, which Ray
Data keeps to); the rest wait as ``queued`` with the reason. A job that fails for a cause that can pass (a stall, a
lost node or actor, the replica running it) runs again after a backoff, up to ``serve.job_attempts`` runs, each
run's reason kept. Every job's record is kept on disk (serving.journal), so that a replica started in place of this
one answers for its jobs and runs again those it finds queued or running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ingest.cluster import PoolDoesNotFit, admit, cpus_needed, fit_pool, gpus_needed, min_cpus
from ingest.job import IngestError, IngestResult
from ingest.progress import Progress
from rag.clock import utc_now
from rag.config import Settings
from serving.journal import Journal

log = logging.getLogger(__name__)

ADMIT_EVERY_S = 2.0
# Resources a finished job's actors held come back to Ray's view within a second or two; measured sooner, they
# would count as the service's own.
SETTLE_S = 3.0
_JOBS_KEPT = 200


def _stamp() -> str:
    # Milliseconds: a job's attempts are told apart, and put in order, by when they ran.
    return utc_now("milliseconds")


@dataclass
class Job:
    collection: str
    changes: list[str]  # "+name" added or replaced, "-name" removed, "*" picked up at start or asked for again
    id: str = field(default_factory=lambda: f"job-{uuid.uuid4().hex[:12]}")
    state: str = "queued"  # queued, running, succeeded, failed
    waiting: str | None = None  # why a queued job has not started
    created_at: str = field(default_factory=_stamp)
    started_at: str | None = None
    finished_at: str | None = None
    progress: dict = field(default_factory=dict)  # ingest.progress.Progress, from the first second of a run
    attempts: list[dict] = field(default_factory=list)  # each run: started_at, finished_at, cpus, actors, error
    version: str | None = None  # published by this job
    result: dict | None = None  # files indexed and failed, chunks, seconds
    error: str | None = None
    not_before: float = field(default=0.0, repr=False)  # monotonic time before which a retry does not start

    def record(self) -> dict:
        record = asdict(self)
        del record["not_before"]
        return record

    @classmethod
    def from_record(cls, record: dict) -> Job | None:
        """The job a record describes; None for one this code cannot read (written by another version of it)."""
        try:
            return cls(**record)
        except TypeError:
            log.warning("job record not understood, left out: %s", record.get("id"))
            return None


def replica_lost() -> IngestError:
    """A run whose replica stopped under it (a crash, a lost node, the service killed): the run is gone, the
    documents are not, and another run can take them up."""
    return IngestError("the service's Collections replica stopped during this run", retryable=True)


def retryable(err: Exception) -> bool:
    """A failure that another run can get past: a stall or a cluster that shrank, or Ray losing a task's worker."""
    from ray.exceptions import RayError

    return isinstance(err, RayError) or (isinstance(err, IngestError) and err.retryable)


class Ledger:
    """What the cluster has free for another job: its resources less what the service's replicas and everything else
    that is not a job use, less what the running jobs were granted (which their pipelines may not hold yet)."""

    def __init__(self):
        self.granted: dict[str, dict[str, float]] = {}  # job id -> CPU, GPU
        self._others: dict[str, float] = {}

    def free(self) -> tuple[dict[str, float], dict[str, float]]:
        """(free for a job now, the cluster's total)."""
        import ray

        total, available = ray.cluster_resources(), ray.available_resources()
        free = {}
        for kind in ("CPU", "GPU"):
            used = total.get(kind, 0) - available.get(kind, 0)
            granted = sum(g[kind] for g in self.granted.values())
            # With no job running all that is used is someone else's; with jobs running, at least what they cannot hold.
            others = used if not self.granted else max(self._others.get(kind, 0), used - granted)
            if not self.granted:
                self._others[kind] = used
            free[kind] = max(0.0, total.get(kind, 0) - others - granted)
        return free, total


class JobQueue:
    """Every collection's jobs: one waiting job per collection takes up all its changes, one runs at a time per
    collection, and across collections jobs start in order as the cluster has room."""

    def __init__(
        self,
        settings: Settings,
        run: Callable[[str, Settings, Callable[[Progress], None]], IngestResult],
        files: Callable[[str], int],
        placed: Callable[[], bool],
        journal: Journal,
    ):
        """``run(collection, settings, progress)`` runs one ingestion; ``files(collection)`` counts the documents it
        has to take up (a job's pool and parsing tasks are sized for them); ``placed()`` is true once the service's
        own replicas are placed (jobs wait for that); ``journal`` keeps the jobs' records, and gives back those an
        earlier replica kept."""
        self.settings, self._run, self._files, self._placed = settings, run, files, placed
        self._journal = journal
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.waiting: list[Job] = []
        self.running: dict[str, Job] = {}
        self.last_failed: dict[str, Job] = {}  # collection -> its latest job, where that failed
        self._ledger = Ledger()
        self._wake = asyncio.Event()
        self._settled_at = 0.0
        self._service_placed = False
        self._tasks: set[asyncio.Task] = set()
        self._resume()
        self._spawn(self._admit_forever())

    def _resume(self) -> None:
        """The jobs an earlier replica kept: the queued wait again, in order; a run that was going is an attempt
        lost with its replica, and its job is retried like any run that failed for a cause that can pass (so a job
        that takes its replica down each time ends after ``serve.job_attempts`` runs)."""
        lost = []
        for job in filter(None, map(Job.from_record, self._journal.load())):
            self.jobs[job.id] = job
            if job.state == "queued":
                self.waiting.append(job)
            elif job.state == "running":
                lost.append(job)
            else:
                self._remember_end(job)
        for job in reversed(lost):  # _failed puts each at the front: they were admitted before the queued ones
            self._failed(job, replica_lost())
        self._forget_oldest_ended()

    def submit(self, collection: str, *changes: str) -> Job:
        """The job that will take up ``changes``: the collection's waiting one, else a new one at the back."""
        job = next((j for j in self.waiting if j.collection == collection), None)
        if job is not None:
            job.changes.extend(changes)
            self._save(collection)
            return job
        job = Job(collection, list(changes))
        self.jobs[job.id] = job
        self._forget_oldest_ended()
        self.waiting.append(job)
        self._save(collection)
        self._wake.set()
        return job

    def _forget_oldest_ended(self) -> None:
        """The oldest jobs that ended, while more than ``_JOBS_KEPT`` are known. A job still queued or running is never
        forgotten, however old: its client would be told of no such job while it still runs."""
        ended = [j.id for j in self.jobs.values() if j.state in ("succeeded", "failed")]
        for job_id in ended[: max(0, len(self.jobs) - _JOBS_KEPT)]:
            del self.jobs[job_id]

    def of(self, collection: str) -> list[Job]:
        """The collection's running and waiting jobs."""
        return [
            j for j in (self.running.get(collection), *self.waiting) if j is not None and j.collection == collection
        ]

    # ---- admission ----------------------------------------------------------------------------

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _admit_forever(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), ADMIT_EVERY_S)
            self._wake.clear()
            try:
                await self._admit()
            except Exception:  # one bad look at the cluster must not end admission for good
                log.exception("job admission failed; trying again in %g s", ADMIT_EVERY_S)

    async def _admit(self) -> None:
        if not self.waiting:
            return
        if not self._service_placed:
            self._service_placed = await asyncio.to_thread(self._placed)
            if not self._service_placed:
                for job in self.waiting:
                    job.waiting = "waiting for the service's replicas to be placed first"
                return
        if time.monotonic() < self._settled_at:
            return
        for job in list(self.waiting):
            if job.collection in self.running:
                job.waiting = f"waiting for {self.running[job.collection].id}, the collection's running job"
                continue
            if time.monotonic() < job.not_before:
                continue  # its waiting line says when it runs again
            free, total = await asyncio.to_thread(self._ledger.free)
            try:
                fit_pool(self.settings, total)
            except PoolDoesNotFit as err:  # would never start: a setting to change, not a wait
                self.waiting.remove(job)
                self._finish(job, "failed", error=str(err))
                continue
            files = await asyncio.to_thread(self._files, job.collection)
            try:
                granted = admit(self.settings, free, files)
            except PoolDoesNotFit:
                job.waiting = (
                    f"waiting for resources: {free['CPU']:g} CPUs free beside the service and the running "
                    f"jobs, a job needs at least {min_cpus(self.settings):g}"
                )
                break  # in order: the jobs behind it wait too
            self.waiting.remove(job)
            self._start(job, granted, files)

    def _start(self, job: Job, granted: Settings, files: int) -> None:
        self.running[job.collection] = job
        pool = granted.ingest.embed
        cpus = granted.ingest.max_cpus or cpus_needed(granted)  # admit() sets it
        self._ledger.granted[job.id] = {"CPU": cpus, "GPU": gpus_needed(granted)}
        job.state, job.waiting, job.started_at = "running", None, job.started_at or _stamp()
        job.progress = asdict(Progress(files))  # what it has to do, from its first second
        job.attempts.append(
            {
                "started_at": _stamp(),
                "finished_at": None,
                "cpus": granted.ingest.max_cpus,
                "embed_actors": pool.actors,
                "error": None,
            }
        )
        log.info(
            "job %s for collection %s started (attempt %d): %g CPUs, %d embedding actors",
            job.id,
            job.collection,
            len(job.attempts),
            granted.ingest.max_cpus,
            pool.actors,
        )
        self._save(job.collection)
        self._spawn(self._execute(job, granted))

    async def _execute(self, job: Job, granted: Settings) -> None:
        def progress(done: Progress) -> None:
            if done.stage != "planning":  # the run's own report while it plans knows no count yet; admission's does
                job.progress = asdict(done)

        try:
            result = await asyncio.to_thread(self._run, job.collection, granted, progress)
        except Exception as err:
            self._failed(job, err)
        else:
            files = result.manifest.files
            job.version = result.version
            job.result = {
                "indexed": sum(e.status != "failed" for e in files),
                "failed": {e.file: e.reason for e in files if e.status == "failed"},
                "chunks": result.chunks_total,
                "seconds": result.manifest.run.seconds,
            }
            job.attempts[-1]["finished_at"] = _stamp()
            self._finish(job, "succeeded")
        finally:
            del self.running[job.collection]
            del self._ledger.granted[job.id]
            self._settled_at = time.monotonic() + SETTLE_S
            self._wake.set()

    def _failed(self, job: Job, err: Exception) -> None:
        reason = str(err) or type(err).__name__
        attempt = job.attempts[-1]
        attempt["finished_at"], attempt["error"] = _stamp(), reason
        runs, limit = len(job.attempts), self.settings.serve.job_attempts
        log.warning(
            "job %s for collection %s: attempt %d of %d failed: %s", job.id, job.collection, runs, limit, reason
        )
        behind = next((j for j in self.waiting if j.collection == job.collection), None)
        if not retryable(err) or runs >= limit:
            self._finish(job, "failed", error=reason if runs == 1 else f"{runs} attempts failed; the last: {reason}")
        elif behind is not None:  # a run of the folder is queued anyway: it takes up this job's documents
            self._finish(job, "failed", error=f"{reason}; {behind.id}, queued since, takes up its documents")
        else:
            delay = self.settings.serve.job_retry_s * 2 ** (runs - 1)
            job.state, job.not_before = "queued", time.monotonic() + delay
            job.waiting = f"attempt {runs} failed ({reason}); attempt {runs + 1} of {limit} starts in {delay:g} s"
            job.progress = {}
            self.waiting.insert(0, job)  # it was admitted before everything still waiting
            self._save(job.collection)

    def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        job.state, job.error, job.waiting, job.finished_at = state, error, None, _stamp()
        self._remember_end(job)
        self._save(job.collection)

    def _remember_end(self, job: Job) -> None:
        """A job that ended is its collection's last failure, or clears it."""
        if job.state == "failed":
            self.last_failed[job.collection] = job
        else:
            self.last_failed.pop(job.collection, None)

    def _save(self, collection: str) -> None:
        self._journal.save(collection, [j.record() for j in self.jobs.values() if j.collection == collection])
