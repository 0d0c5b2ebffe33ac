"""The one thread a model is loaded on and called from."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Executor, Future


class ModelThread(Executor):
    """One thread to load a model on and make every call to it from.

    torch on the CPU answers about 1.5x slower when the thread that calls a model is not the one that
    loaded it (2.5 s against 3.8 s per 64-token answer here), so a replica or server that runs a model
    off its event loop does both on this thread. A daemon thread, unlike ThreadPoolExecutor's: a
    decode loop that never returns must not keep the process from exiting.
    """

    def __init__(self, name: str):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        self._calls.put((future, fn, args, kwargs))
        return future

    def _run(self) -> None:
        while True:
            future, fn, args, kwargs = self._calls.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:  # handed to whoever waits on the future
                future.set_exception(error)
