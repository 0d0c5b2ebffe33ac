"""A job's record outlives the replica whose queue held it (serving.jobs, serving.journal): the queue started in its
place answers for every job it was given, and runs again, under the same id, the one that was running, the lost run
kept as an attempt. Queues admit on the session's real cluster; each run is a stand-in for an ingestion (what is
tested is the queue), the first one still going when its queue is lost."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from ingest.job import IngestError
from rag.config import load_settings
from serving.jobs import Job, JobQueue
from serving.journal import JOURNAL_FILE, Journal

SETTINGS = load_settings(None, ["serve.job_retry_s=0", "serve.job_attempts=3"])


def until(loop: asyncio.AbstractEventLoop, done, what: str, timeout: float = 60) -> None:
    async def wait() -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.1)

    loop.run_until_complete(wait())


def test_a_queue_in_a_lost_one_s_place_answers_for_its_jobs_and_runs_the_lost_one_again(ray_cluster, tmp_path):
    indexes = {"a": tmp_path / "a" / "index", "b": tmp_path / "b" / "index"}
    release = threading.Event()

    def first_run(collection, granted, progress):
        if collection == "b":
            raise IngestError("the embedding model could not be loaded")  # not retryable: fails at once
        release.wait(120)  # still going when its queue is lost
        raise IngestError("released")

    lost_loop = asyncio.new_event_loop()
    lost = lost_loop.run_until_complete(_queue(first_run, indexes))
    running, failed = lost.submit("a", "+one.pdf"), lost.submit("b", "+two.pdf")
    until(lost_loop, lambda: running.state == "running" and failed.state == "failed", "a running, b failed")
    behind = lost.submit("b", "+three.pdf")  # queued: b has room, but its queue is lost before it admits again
    # The replica is lost: its loop stops mid-run, its run's thread is left behind, as a crash leaves it.
    lost_loop.close()
    try:
        runs: list[str] = []

        def second_run(collection, granted, progress):
            runs.append(collection)
            raise IngestError(f"second run of {collection}")

        loop = asyncio.new_event_loop()
        queue = loop.run_until_complete(_queue(second_run, indexes))
        assert set(queue.jobs) == {running.id, failed.id, behind.id}
        resumed = queue.jobs[running.id]
        assert resumed.state == "queued" and resumed.changes == ["+one.pdf"], resumed
        assert "Collections replica stopped" in resumed.attempts[0]["error"] and resumed.attempts[0]["finished_at"]
        assert "attempt 2 of 3" in resumed.waiting, resumed.waiting
        assert queue.jobs[failed.id].error == "the embedding model could not be loaded"
        assert queue.last_failed["b"].id == failed.id
        assert [j.id for j in queue.waiting] == [running.id, behind.id]  # the lost run was admitted first
        until(loop, lambda: all(j.state == "failed" for j in queue.jobs.values()), "both run again")
        assert sorted(runs) == ["a", "b"]
        assert len(queue.jobs[running.id].attempts) == 2 and "second run of a" in queue.jobs[running.id].error
        loop.close()
        # What a third replica would read: every job as it ended.
        kept = {r["id"]: r for r in Journal(indexes).load()}
        assert {i: r["state"] for i, r in kept.items()} == dict.fromkeys((running.id, failed.id, behind.id), "failed")
        assert json.loads((indexes["a"] / JOURNAL_FILE).read_text())[0]["attempts"][1]["error"] == "second run of a"
    finally:
        release.set()


def test_the_oldest_ended_jobs_are_forgotten_never_one_still_to_run(ray_cluster, tmp_path):
    indexes = {"a": tmp_path / "a" / "index"}
    # A journal of more jobs than a queue keeps: the oldest is still waiting (retried, say, while many others ran).
    stamps = [f"2026-01-01T00:00:{i // 1000:02d}.{i % 1000:03d}Z" for i in range(206)]
    waiting = Job("a", ["+late.pdf"], created_at=stamps[0])
    ended = [Job("a", [f"+{i}.pdf"], state="succeeded", created_at=stamps[i]) for i in range(1, 206)]
    Journal(indexes).save("a", [j.record() for j in (waiting, *ended)])
    release = threading.Event()

    def run(collection, granted, progress):
        release.wait(60)
        raise IngestError("released")

    loop = asyncio.new_event_loop()
    try:
        queue = loop.run_until_complete(_queue(run, indexes))
        assert len(queue.jobs) == 200 and waiting.id in queue.jobs
        assert [j.id for j in ended[6:]] == [i for i in queue.jobs if i != waiting.id]  # the six oldest went
        until(loop, lambda: queue.jobs[waiting.id].state == "running", "the oldest job runs")
        new = queue.submit("a", "+new.pdf")
        assert len(queue.jobs) == 200 and {waiting.id, new.id} <= set(queue.jobs) and ended[6].id not in queue.jobs
        release.set()
        until(loop, lambda: queue.jobs[waiting.id].state == "failed", "the oldest job ends")
    finally:
        release.set()
        loop.close()


async def _queue(run, indexes) -> JobQueue:
    """A queue made on a running loop, as a replica makes it; files: one document a job."""
    return JobQueue(SETTINGS, run, lambda collection: 1, lambda: True, Journal(indexes))
