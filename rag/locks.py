"""A lock file shared across processes (and, on a shared POSIX file system, machines).

``flock`` is released by the kernel when its holder exits, however it exits: a killed ingestion
never leaves a lock behind that someone has to delete by hand.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.clock import utc_now


class LockBusy(Exception):
    """Someone else holds the lock; the message names them."""


@contextmanager
def exclusive(path: Path, wait_s: float | None = None, purpose: str = "") -> Iterator[None]:
    """Hold ``path`` exclusively. ``wait_s``: None waits as long as it takes, else give up after that long (LockBusy).

    The holder writes who it is (host, pid, since, purpose) into the file, for the message another one gets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = None if wait_s is None else time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                break
            except BlockingIOError:  # only raised where a deadline made the lock non-blocking
                if deadline is None or time.monotonic() >= deadline:
                    handle.seek(0)
                    raise LockBusy(_holder(handle.read())) from None
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "purpose": purpose, "since": utc_now()})
        )
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder(text: str) -> str:
    try:
        who = json.loads(text)
    except ValueError:
        return "held by another process"
    return f"held by {who['purpose'] or 'a process'} (pid {who['pid']} on {who['host']}, since {who['since']})"
