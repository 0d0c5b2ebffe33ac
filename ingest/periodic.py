"""A driver thread that does something every few seconds while a pipeline runs: watching the cluster, reading
progress."""

from __future__ import annotations

import threading


class Periodic:
    """Calls ``tick()`` every ``every_s`` on a daemon thread for as long as its ``with`` block lasts; a tick that
    returns True ends it early."""

    def __init__(self, name: str, every_s: float):
        self.every_s = every_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self.every_s):
            if self.tick():
                return

    def tick(self) -> bool | None:
        raise NotImplementedError
