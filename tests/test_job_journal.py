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
from serving.jobs import JobQueue
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


async def _queue(run, indexes) -> JobQueue:
    """A queue made on a running loop, as a replica makes it; files: one document a job."""
    return JobQueue(SETTINGS, run, lambda collection: 1, lambda: True, Journal(indexes))
