"""How far an ingestion has come, from its first second: a counter actor the pipeline's tasks and actors report to
as they go, and a thread on the driver that passes its counts on.

The driver's own view (the blocks coming out of the pipeline) moves in blocks of about a megabyte, which on a large
folder is minutes after the first page is read; the counter sees every parsed file and every embedded batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ingest.periodic import Periodic

POLL_S = 1.0


@dataclass
class Progress:
    """What a watcher is told (the CLI's line, the service's job status)."""

    files_total: int
    stage: str = "planning"  # planning (reading the folder), starting (Ray and the pipeline), running, indexing,
    # merging (segments rewritten as one: rag.store.merging)
    files_parsed: int = 0  # files whose pages were read (or that failed)
    pages_parsed: int = 0
    chunks_embedded: int = 0
    eta_s: float | None = None  # seconds left, once the run has embedded enough to tell

    def summary(self) -> str:
        if self.stage == "planning":
            return "planning: reading the folder and the current version"
        line = (
            f"{self.stage}, {self.files_parsed}/{self.files_total} files read, {self.pages_parsed:,} pages, "
            f"{self.chunks_embedded:,} chunks embedded"
        )
        if self.eta_s:
            line += f", about {_duration(self.eta_s)} left"
        return line


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class ProgressCounter:
    """Counts reported by parse tasks and embedding actors; read by the driver. An actor: ``start_counter``."""

    def __init__(self):
        self.files = self.pages = self.chunks_made = self.chunks_embedded = 0
        self.bytes_parsed = 0
        self.first_embedded_at: float | None = None

    def page_read(self) -> None:
        self.pages += 1

    def parsed(self, size_bytes: int) -> None:
        self.files += 1
        self.bytes_parsed += size_bytes

    def chunked(self, chunks: int) -> None:
        self.chunks_made += chunks

    def embedded(self, chunks: int) -> None:
        if self.first_embedded_at is None:
            self.first_embedded_at = time.time()
        self.chunks_embedded += chunks

    def counts(self) -> dict:
        return dict(vars(self))


def start_counter():
    """A ProgressCounter beside the driver: it goes only with the driver's node, never with a worker the run
    outlives."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return ray.remote(ProgressCounter).options(num_cpus=0, scheduling_strategy=here).remote()


def page_reporter(counter) -> Callable[[int], None]:
    """An ``on_page`` for one file's reading (ingest.pdf_pages) that tells ``counter`` of each page once."""
    seen: set[int] = set()

    def read(index: int) -> None:
        if index not in seen:
            seen.add(index)
            counter.page_read.remote()

    return read


def estimate_left(counts: dict, bytes_total: int, now: float) -> float | None:
    """Seconds until every chunk is embedded: the chunks still expected (what the parsed bytes gave, scaled to all the
    bytes) at the rate embedding has gone since its first batch. None until both have something to go on."""
    started, embedded = counts["first_embedded_at"], counts["chunks_embedded"]
    if started is None or not counts["bytes_parsed"] or now - started < POLL_S or not embedded:
        return None
    expected = max(counts["chunks_made"] * bytes_total / counts["bytes_parsed"], embedded)
    return (expected - embedded) / (embedded / (now - started))


class ProgressPoller(Periodic):
    """A driver thread that reads ``counter`` every POLL_S and calls ``progress`` with what it says."""

    def __init__(self, counter, files_total: int, bytes_total: int, progress: Callable[[Progress], None]):
        super().__init__("ingest-progress", POLL_S)
        self.counter, self.files_total, self.bytes_total, self.progress = counter, files_total, bytes_total, progress

    def tick(self) -> None:
        import ray

        try:
            counts = ray.get(self.counter.counts.remote(), timeout=10)
        except Exception:  # a slow or lost counter costs an update, never the run
            return
        self.progress(
            Progress(
                self.files_total,
                "running",
                counts["files"],
                counts["pages"],
                counts["chunks_embedded"],
                estimate_left(counts, self.bytes_total, time.time()),
            )
        )
