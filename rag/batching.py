"""Continuous batching: one decode loop per engine, which requests join between steps and leave as they finish.

A request is prefilled on its own as soon as it arrives, then decodes alongside every other
request in flight, one forward pass per step for all of them. Nothing waits for a batch to fill or
for the longest answer in it to end (which is what a fixed batch, e.g. Serve's @serve.batch, does).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from rag.decoding import DecodeBatch
from rag.models import ModelThread

log = logging.getLogger(__name__)

_END = object()


@dataclass
class _Request:
    conversation: list[dict]
    max_new_tokens: int
    send: Callable[[object], None]  # thread-safe: hands a delta, an exception or _END to the caller
    cancelled: bool = False


@dataclass
class BatcherStats:
    waiting: int = 0
    running: int = 0
    steps: int = 0
    decoded: int = 0  # tokens from decode steps: above ``steps`` when sequences shared them
    prefills: int = 0
    peak_batch: int = 0
    busy_s: float = 0.0  # time spent prefilling and decoding, against wall time for utilisation


class ContinuousBatcher:
    """Drives an engine that has ``prefill`` and ``decode`` (the transformers engine) from a thread of its own."""

    def __init__(self, engine, max_batch_size: int, thread: ModelThread | None = None):
        """``thread``: the ModelThread the engine was loaded on, which the loop then takes over."""
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.stats = BatcherStats()
        self._waiting: queue.Queue[_Request] = queue.Queue()
        (thread or ModelThread("batcher")).submit(self._loop)

    async def stream(self, conversation: list[dict], max_new_tokens: int) -> AsyncIterator[str]:
        out: asyncio.Queue = asyncio.Queue()
        request = _Request(conversation, max_new_tokens, _sender(asyncio.get_running_loop(), out))
        self._waiting.put(request)
        try:
            while True:
                items = [await out.get()]
                # A caller slower than the decode loop gets what has piled up as one delta, not one per token.
                while not out.empty():
                    items.append(out.get_nowait())
                text = "".join(item for item in items if isinstance(item, str))
                if text:
                    yield text
                for item in items:
                    if isinstance(item, BaseException):
                        raise item
                if items[-1] is _END:
                    return
        finally:
            # The caller went away (or finished): its place in the batch is freed at the next step.
            request.cancelled = True

    def _loop(self) -> None:
        batch = DecodeBatch()
        owners: dict[int, _Request] = {}  # id of a sequence in the batch -> the request it answers
        while True:
            started = None
            try:
                # Block only when idle; otherwise take whoever is waiting (and fits) and decode on.
                while len(batch) < self.max_batch_size and batch.can_add():
                    try:
                        request = self._waiting.get(block=not batch)
                    except queue.Empty:
                        break
                    started = started or time.monotonic()
                    self._admit(request, batch, owners)
                started = started or time.monotonic()
                if batch:
                    self._step(batch, owners)
            except Exception as error:  # e.g. out of memory: fail the requests in flight, keep serving new ones
                log.exception("decoding failed for %d requests", len(owners))
                for request in owners.values():
                    request.send(error)
                owners.clear()
                batch = DecodeBatch()
            self.stats.busy_s += time.monotonic() - started
            self.stats.waiting, self.stats.running = self._waiting.qsize(), len(owners)

    def _admit(self, request: _Request, batch: DecodeBatch, owners: dict[int, _Request]) -> None:
        if request.cancelled:
            return
        try:
            prefilled, delta = self.engine.prefill(request.conversation, request.max_new_tokens)
        except Exception as error:  # a prompt that cannot be run fails its own request, not the batch
            request.send(error)
            return
        self.stats.prefills += 1
        if delta:
            request.send(delta)
        # Registered before joining, so a failure while joining reaches this request with the rest.
        owners[id(prefilled.sequence)] = request
        batch.add(prefilled)
        self._retire(batch, owners)

    def _step(self, batch: DecodeBatch, owners: dict[int, _Request]) -> None:
        self._retire(batch, owners)
        if not batch:
            return
        self.stats.steps += 1
        self.stats.decoded += len(batch)
        self.stats.peak_batch = max(self.stats.peak_batch, len(batch))
        for sequence, delta in zip(batch.sequences, self.engine.decode(batch)):
            if delta:
                owners[id(sequence)].send(delta)
        self._retire(batch, owners)

    @staticmethod
    def _retire(batch: DecodeBatch, owners: dict[int, _Request]) -> None:
        """End the streams of finished or abandoned requests and drop them from the batch."""
        for sequence in batch.sequences:
            request = owners[id(sequence)]
            if request.cancelled or sequence.done:
                sequence.done = True
                request.send(_END)
                del owners[id(sequence)]
        batch.drop_finished()


def _sender(loop: asyncio.AbstractEventLoop, out: asyncio.Queue) -> Callable[[object], None]:
    def send(item: object) -> None:
        try:
            loop.call_soon_threadsafe(out.put_nowait, item)
        except RuntimeError:  # the caller's event loop has closed: nobody is listening any more
            pass

    return send
