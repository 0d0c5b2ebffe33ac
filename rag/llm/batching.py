"""Continuous batching: one decode loop per engine, which requests join between steps and leave as they finish.

A request is tokenized on the caller's side, then prefilled on the loop within a budget of
``prefill_tokens`` between two decode steps: whole prompts while they fit, a prompt longer than the
budget a budget-sized chunk at a time. A burst of arrivals thus delays the answers already
streaming by about one prompt per step, not by every newcomer's prompt at once; a lone arrival is
prefilled whole, as fast as ever. Once its prompt is in, a request decodes alongside every other
request in flight, one forward pass per step for all of them. Nothing waits for a batch to fill or
for the longest answer in it to end (which is what a fixed batch, e.g. Serve's @serve.batch, does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from rag.llm.decoding import DecodeBatch, Prefill
from rag.model_thread import ModelThread
from rag.types import DeadlineExceeded, DecodeLoopStopped, Sampling, Usage

log = logging.getLogger(__name__)

_END = object()


@dataclass
class _Request:
    ids: list[int]  # the prompt, tokenized before it reached the loop
    sampling: Sampling
    send: Callable[[object], None]  # thread-safe: hands a delta, a Usage, an exception or _END to the caller
    deadline: float  # time.monotonic() past which the request is failed
    cancelled: bool = False


@dataclass
class BatcherStats:
    waiting: int = 0
    running: int = 0
    steps: int = 0
    decoded: int = 0  # tokens from decode steps: above ``steps`` when sequences shared them
    prefills: int = 0
    prefill_tokens: int = 0
    peak_batch: int = 0
    columns: int = 0  # the KV buffers' width now: with the batch size, what the cache's memory follows
    timed_out: int = 0
    busy_s: float = 0.0  # time spent prefilling and decoding, against wall time for utilisation


class ContinuousBatcher:
    """Drives an engine that has ``encode``, ``prefill`` and ``decode`` (the transformers engine) from a thread of its
    own."""

    def __init__(
        self,
        engine,
        max_batch_size: int,
        prefill_tokens: int = 2048,
        deadline_s: float = 300.0,
        thread: ModelThread | None = None,
    ):
        """``thread``: the ModelThread the engine was loaded on, which the loop then takes over."""
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.prefill_tokens = prefill_tokens
        self.deadline_s = deadline_s
        self.stats = BatcherStats()
        self.failure: BaseException | None = None  # why the loop stopped, once it has
        self._waiting: queue.Queue[_Request] = queue.Queue()
        self._prefilling: deque[tuple[_Request, Prefill]] = deque()
        self._owners: dict[int, _Request] = {}  # id of a sequence in the batch -> the request it answers
        (thread or ModelThread("batcher")).submit(self._run)

    def check(self) -> None:
        """Raise if the decode loop has stopped (a replica's health check)."""
        if self.failure is not None:
            raise DecodeLoopStopped(f"the decode loop stopped: {self.failure!r}")

    async def stream(self, conversation: list[dict], sampling: Sampling) -> AsyncIterator[str | Usage]:
        """The answer's text deltas, then its Usage."""
        self.check()
        loop = asyncio.get_running_loop()
        # Tokenizing a long prompt takes milliseconds that the decode loop's running answers would wait for.
        ids = await loop.run_in_executor(None, self.engine.encode, conversation)
        out: asyncio.Queue = asyncio.Queue()
        request = _Request(ids, sampling, _sender(loop, out), time.monotonic() + self.deadline_s)
        self._waiting.put(request)
        self.check()  # stopped meanwhile: the loop's last act was to fail what was queued, which may predate this
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
                    if isinstance(item, Usage):
                        yield item
                if items[-1] is _END:
                    return
        finally:
            # The caller went away (or finished): its place in the batch is freed at the next step.
            request.cancelled = True

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as error:
            self.failure = error
            log.critical("the decode loop stopped; failing every request it held", exc_info=True)
            stopped = DecodeLoopStopped(f"the decode loop stopped: {error!r}")
            held = [*self._owners.values(), *(request for request, _ in self._prefilling)]
            while not self._waiting.empty():
                held.append(self._waiting.get_nowait())
            for request in held:
                request.send(stopped)
            raise

    def _loop(self) -> None:
        batch = self.engine.new_batch(self.max_batch_size)
        while True:
            self._take_arrivals(batch)
            started = time.monotonic()
            try:
                self._prefill(batch)
                if batch:
                    self._step(batch)
            except Exception as error:  # e.g. out of memory: fail the requests in flight, keep serving new ones
                log.exception("decoding failed for %d requests", len(self._owners) + len(self._prefilling))
                for request in [*self._owners.values(), *(request for request, _ in self._prefilling)]:
                    request.send(error)
                self._owners.clear()
                self._prefilling.clear()
                batch = self.engine.new_batch(self.max_batch_size)
            self.stats.busy_s += time.monotonic() - started
            self.stats.waiting, self.stats.running = self._waiting.qsize(), len(self._owners) + len(self._prefilling)
            self.stats.columns = batch.columns

    def _take_arrivals(self, batch: DecodeBatch) -> None:
        """Waiting requests into prefill, as far as the batch has room; blocks only when there is nothing else to do."""
        limit = self.max_batch_size if batch.joinable else 1
        while len(batch) + len(self._prefilling) < limit:
            try:
                request = self._waiting.get(block=not batch and not self._prefilling)
            except queue.Empty:
                return
            if not request.cancelled:
                self._prefilling.append((request, self.engine.start(request.ids, request.sampling)))

    def _prefill(self, batch: DecodeBatch) -> None:
        """Prompts into the model within the budget; a prompt that is all in joins the batch.

        A prompt is begun only where it fits whole in what is left of the budget (split across steps it
        would cost the running streams twice), unless nothing has run yet this step: then a prompt longer
        than the budget runs a budget-sized chunk. With nobody decoding, the first prompt in line runs whole.
        An engine that prefills several prompts in one pass (on a GPU) gets as many whole ones as fit,
        counted padded to the longest.
        """
        spent = 0
        while self._prefilling:
            request, prefill = self._prefilling[0]
            if request.cancelled or time.monotonic() > request.deadline:
                self._prefilling.popleft()
                self._end(request, None)
                continue
            room = self.prefill_tokens - spent if batch else max(self.prefill_tokens, prefill.remaining)
            group = self._whole_prompts(room)
            if len(group) > 1:
                spent += self._prefill_together(batch, group)
                continue
            room = self.prefill_tokens - spent if batch else prefill.remaining
            if room <= 0 or (spent and prefill.remaining > room):
                return
            try:
                used, delta = self.engine.prefill(prefill, room)
            except Exception as error:  # a prompt that cannot be run fails its own request, not the batch
                self._prefilling.popleft()
                request.send(error)
                continue
            spent += used
            self.stats.prefill_tokens += used
            if prefill.remaining:
                continue
            self._prefilling.popleft()
            self._join(batch, request, prefill, delta)

    def _whole_prompts(self, room: int) -> list[tuple[_Request, Prefill]]:
        """The prompts at the head of the line, none begun or abandoned, that one padded pass of at most ``room`` tokens
        takes (only for an engine that prefills together)."""
        if not self.engine.prefills_together:
            return []
        group: list[tuple[_Request, Prefill]] = []
        longest = 0
        for request, prefill in self._prefilling:
            longest = max(longest, prefill.remaining)
            if prefill.length or request.cancelled or (len(group) + 1) * longest > room:
                break
            group.append((request, prefill))
        return group

    def _prefill_together(self, batch: DecodeBatch, group: list[tuple[_Request, Prefill]]) -> int:
        """Prefill ``group`` in one pass and let each join; returns the tokens the pass ran, padding included."""
        for _ in group:
            self._prefilling.popleft()
        prefills = [prefill for _, prefill in group]
        try:
            deltas = self.engine.prefill_together(prefills)
        except Exception as error:  # the pass failed: its requests fail, not the batch
            for request, _ in group:
                request.send(error)
            return 0
        self.stats.prefill_tokens += sum(len(p.ids) for p in prefills)
        for (request, prefill), delta in zip(group, deltas, strict=True):
            self._join(batch, request, prefill, delta)
        return len(group) * max(len(p.ids) for p in prefills)

    def _join(self, batch: DecodeBatch, request: _Request, prefill: Prefill, delta: str) -> None:
        """A prompt that is all in: its first text out, its sequence into the batch."""
        self.stats.prefills += 1
        if delta:
            request.send(delta)
        # Registered before joining, so a failure while joining reaches this request with the rest.
        self._owners[id(prefill.sequence)] = request
        batch.add(prefill)
        self._retire(batch)

    def _step(self, batch: DecodeBatch) -> None:
        self._retire(batch)
        if not batch:
            return
        self.stats.steps += 1
        self.stats.decoded += len(batch)
        self.stats.peak_batch = max(self.stats.peak_batch, len(batch))
        for sequence, delta in self.engine.decode(batch):
            owner = self._owners.get(id(sequence))  # None: retired since its step was launched (engine.decode)
            if delta and owner:
                owner.send(delta)
        self._retire(batch)

    def _retire(self, batch: DecodeBatch) -> None:
        """End the streams of finished, abandoned or overdue requests and drop them from the batch."""
        now = time.monotonic()
        for sequence in batch.sequences:
            request = self._owners[id(sequence)]
            if sequence.done or request.cancelled or now > request.deadline:
                self._end(request, sequence.usage if sequence.done else None)
                sequence.done = True
                del self._owners[id(sequence)]
        batch.drop_finished()

    def _end(self, request: _Request, usage: Usage | None) -> None:
        """A finished request gets its usage; one past its deadline, the error that says so."""
        if usage is not None:
            request.send(usage)
        elif not request.cancelled:
            self.stats.timed_out += 1
            request.send(DeadlineExceeded(f"the answer took longer than the deadline of {self.deadline_s:g} s"))
        request.send(_END)


def _sender(loop: asyncio.AbstractEventLoop, out: asyncio.Queue) -> Callable[[object], None]:
    def send(item: object) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's event loop has closed: nobody is listening any more
            loop.call_soon_threadsafe(out.put_nowait, item)

    return send
