"""Decode steps replayed from CUDA graphs.

An eager decode step is about a thousand kernel launches, which the CPU issues one at a time: on the H200
machines measured, 49-56 ms a step for SmolLM2-135M and an 8B model alike, of which the GPU worked a few
(../shared/gpu). A CUDA graph records the launches once and replays them all with one call.

A graph replays fixed shapes at fixed addresses, so a step runs over a fixed window of a DecodeBatch's fixed
buffers (rag.llm.decoding): its first ``rows`` rows (the live sequences, then padding rows whose results are
dropped) and its first ``columns`` columns. Rows and columns are rounded up to buckets, and each pair of
buckets gets its graph the first time a step needs it; all graphs share one memory pool. Prefill stays
eager: its launches are few against its arithmetic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from rag.llm.decoding import DecodeBatch

if TYPE_CHECKING:
    from torch.cuda import _POOL_HANDLE

log = logging.getLogger(__name__)

ROW_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
# Attention reads at most this many columns more than the longest live sequence needs (under a tenth of a 2,000-token
# prompt); finer buckets mean more graphs to record.
COLUMN_BUCKET = 256


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    logits: torch.Tensor  # the replay writes here: [rows, 1, vocabulary]


def window(batch: DecodeBatch) -> tuple[int, int]:
    """The (rows, columns) bucket a step of ``batch`` runs over: its live rows and columns, rounded up, within its
    buffers."""
    have_rows, have_columns = batch.capacity
    rows = min(next((b for b in ROW_BUCKETS if b >= len(batch)), have_rows), have_rows)
    columns = min(-(-(batch.span.end + 1) // COLUMN_BUCKET) * COLUMN_BUCKET, have_columns)
    return rows, columns


class DecodeGraphs:
    """One model's decode steps over fixed windows: replayed from CUDA graphs, or run eagerly (``record=False``, as on a
    CPU, where the same window path is tested)."""

    def __init__(self, model, record: bool = True):
        self.model = model
        self.record = record
        self._graphs: dict[tuple[int, int], _Graph] = {}
        self._generation = -1  # of the buffers the graphs read
        self._pool: _POOL_HANDLE | None = None  # the memory pool the graphs share

    def __len__(self) -> int:
        return len(self._graphs)

    def step(self, batch: DecodeBatch) -> torch.Tensor:
        """One decode step of ``batch`` (fixed buffers); the next-token logits of its live rows, [rows, vocabulary]."""
        batch.reserve_step()
        if batch.generation != self._generation:  # other buffers: the graphs read memory that is gone
            # A fresh pool too: capturing into a pool whose graphs were all freed trips an assertion in torch's
            # allocator (seen on torch 2.11), and leaves its random generators mid-capture.
            self._graphs.clear()
            self._pool = None
            self._generation = batch.generation
        key = window(batch)
        inputs = batch.window_inputs(*key)
        if self.record:
            graph = self._graphs.get(key) or self._capture(key, inputs)
            graph.graph.replay()
            logits = graph.logits
        else:
            logits = self.model(**inputs).logits
        return logits[: len(batch), -1]

    def _capture(self, key: tuple[int, int], inputs: dict) -> _Graph:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        # Attention by the memory-efficient kernel (a masked step cannot use flash attention), the one most recorded
        # into graphs elsewhere, rather than cuDNN's, whose plans are built per call.
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
            # A first run outside the capture, on a side stream as torch asks: cuBLAS chooses its kernels and allocates
            # its workspace there. It computes the step itself, so the replay rewrites the same cache column.
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.model(**inputs)
            torch.cuda.current_stream().wait_stream(side)
            # thread_local: other threads of the replica (tokenizing, serving HTTP) may use CUDA meanwhile.
            with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                logits = self.model(**inputs).logits
        self._graphs[key] = recorded = _Graph(graph, logits)
        log.debug("recorded a decode graph for %d rows x %d columns (%d graphs)", *key, len(self._graphs))
        return recorded
