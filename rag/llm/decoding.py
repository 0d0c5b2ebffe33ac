"""Sequences decoding together: one KV cache for all, so each step is one forward pass however many are answering.

Prompts are prefilled alone (no padding computed) and each then takes a row of the batch's cache.
Rows are right-aligned: every sequence's newest token sits in the same column, so a decode step
writes one column in place for all of them, and the attention mask hides what lies left of each
row's own tokens. Joining copies only the newcomer's cache into its row; leaving moves only the
last row into the gap. (transformers' DynamicCache copies the whole cache to append a token, and
re-padding the batch on every join and leave cost as much again: together most of a step's time
at 16 sequences of 2,000 tokens.)

The columns in use only move right while sequences keep joining, so whenever the buffers run out
of room they are reallocated to fit what is live, the span re-based to the left edge: their size
follows the longest sequence in the batch, never the time the batch has been running.

On a GPU the buffers are *fixed* instead (CUDA graphs read them by address, rag.llm.cuda_graphs): they
are sized for the batcher's most sequences at once, and when the span reaches their right edge it is
moved back to the left edge in place; they are reallocated only to hold a longer sequence.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from tokenizers.decoders import DecodeStream
from transformers.cache_utils import Cache, DynamicLayer

from rag.llm.host_memory import mapped_zeros, release_freed_memory
from rag.types import Sampling, Usage

_ALLOCATIONS = itertools.count(1)  # numbers each allocation of a batch's buffers, unique in the process
_GROW_COLUMNS = 64  # spare columns added whenever the buffers are reallocated
# Fixed buffers: spare columns beyond the longest sequence, so the live span is moved back left (a copy of the whole
# cache) at most once every 256 steps.
_FIXED_SPARE_COLUMNS = 256


@dataclass
class Decoding:
    """One answer in progress: its tokens so far, its incremental detokenizer, and text held back for stop sequences."""

    sampling: Sampling
    prompt_tokens: int
    decoder: DecodeStream  # each token's text without decoding the answer again
    tokens: list[int] = field(default_factory=list)
    held: str = ""  # decoded text that may be the start of a stop sequence
    done: bool = False
    finish_reason: str = "stop"

    def release(self, text: str) -> str:
        """What of ``text`` (newly decoded) can be sent: all but a tail that may begin a stop sequence.

        On a stop sequence the answer ends there; once the answer has ended, nothing is held back.
        """
        held = self.held + text
        for stop in self.sampling.stop:
            at = held.find(stop)
            if at >= 0:
                self.held, self.done, self.finish_reason = "", True, "stop"
                return held[:at]
        keep = (
            0
            if self.done
            else max(
                (n for stop in self.sampling.stop for n in range(len(stop) - 1, 0, -1) if held.endswith(stop[:n])),
                default=0,
            )
        )
        self.held = held[len(held) - keep :]
        return held[: len(held) - keep]

    @property
    def usage(self) -> Usage:
        return Usage(self.prompt_tokens, len(self.tokens), self.finish_reason)


@dataclass
class Prefill:
    """A prompt on its way into the model, a chunk at a time; once all of it is cached, its sequence joins a batch."""

    sequence: Decoding
    ids: list[int]
    cache: Cache | None = None
    length: int = 0  # prompt tokens cached so far
    next_id: int | None = None  # the first answer token, once the whole prompt is in

    @property
    def remaining(self) -> int:
        return len(self.ids) - self.length

    def prefilled(self) -> tuple[Cache, int]:
        """Its cache and first answer token, once the whole prompt is in."""
        if self.cache is None or self.next_id is None:
            raise ValueError("a sequence joins a batch once its whole prompt is prefilled")
        return self.cache, self.next_id


@dataclass
class LaunchedStep:
    """A decode step on its way: its sequences, its tokens on their way to the host, and the event that says so."""

    sequences: list[Decoding]
    tokens: torch.Tensor  # in pinned host memory
    ready: torch.cuda.Event | None  # None on a CPU, where the step has ended when it returns


@dataclass
class _Span:
    """The part of the buffers in use: rows [0, rows), columns [start, end)."""

    rows: int = 0
    start: int = 0
    end: int = 0
    # During a fixed-window step (rag.llm.cuda_graphs): (rows, columns, column). The first ``rows`` rows (live ones,
    # then padding) write their new token into ``column``, a one-element tensor a replayed graph reads, and attend to
    # the first ``columns`` columns. None: the step covers the span itself.
    window: tuple[int, int, torch.Tensor] | None = None


class RowLayer(DynamicLayer):
    """One layer's keys and values, a row per sequence; ``keys``/``values`` are views of the span in use."""

    def __init__(self, span: _Span, like, rows: int, columns: int):
        super().__init__()
        self.span = span
        self.dtype, self.device, self.is_initialized = like.dtype, like.device, True
        _, heads, _, dim = like.shape
        self._keys = mapped_zeros((rows, heads, columns, dim), like)
        self._values = mapped_zeros((rows, heads, columns, dim), like)
        self.refresh()

    def reallocate(self, rows: int, columns: int, shift: int) -> None:
        """New buffers of ``rows`` x ``columns``; the span's columns move by ``shift`` (negative: to the left)."""
        s = self.span
        for name in ("_keys", "_values"):
            old = getattr(self, name)
            new = mapped_zeros((rows, old.shape[1], columns, old.shape[3]), old)
            new[: s.rows, :, s.start + shift : s.end + shift] = old[: s.rows, :, s.start : s.end]
            setattr(self, name, new)

    def shift(self, shift: int) -> None:
        """The span's columns moved by ``shift`` inside the same buffers, which keep their addresses."""
        s = self.span
        for buffer in (self._keys, self._values):
            buffer[: s.rows, :, s.start + shift : s.end + shift] = buffer[: s.rows, :, s.start : s.end].clone()

    def put(self, row: int, keys, values) -> None:
        """A prefilled sequence's cache ([1, heads, length, dim]) into ``row``, ending at the span's last column."""
        length = keys.shape[2]
        self._keys[row, :, self.span.end - length : self.span.end] = keys[0]
        self._values[row, :, self.span.end - length : self.span.end] = values[0]

    def move(self, source: int, target: int) -> None:
        s = self.span
        self._keys[target, :, s.start : s.end] = self._keys[source, :, s.start : s.end]
        self._values[target, :, s.start : s.end] = self._values[source, :, s.start : s.end]

    def refresh(self) -> None:
        s = self.span
        self.keys, self.values = self._keys[: s.rows, :, s.start : s.end], self._values[: s.rows, :, s.start : s.end]

    def update(self, key_states, value_states, *args, **kwargs):
        """A decode step: the new token of every row goes into the column after the span."""
        s = self.span
        if s.window is not None:
            rows, columns, column = s.window
            self._keys[:rows].index_copy_(2, column, key_states)
            self._values[:rows].index_copy_(2, column, value_states)
            return self._keys[:rows, :, :columns], self._values[:rows, :, :columns]
        self._keys[: s.rows, :, s.end : s.end + 1] = key_states
        self._values[: s.rows, :, s.end : s.end + 1] = value_states
        return self._keys[: s.rows, :, s.start : s.end + 1], self._values[: s.rows, :, s.start : s.end + 1]


def _kv(layer: object) -> tuple[torch.Tensor, torch.Tensor]:
    """A cache layer's keys and values ([1, heads, length, dim]); layers that keep a state instead (linear attention)
    have none."""
    keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
    if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor):
        raise NotImplementedError(f"a {type(layer).__name__} cache layer holds no keys and values to decode over")
    return keys, values


class DecodeBatch:
    """Sequences decoding together: their cache rows, attention mask, cached lengths (= next position ids) and next
    tokens.

    Every method that touches its tensors runs in inference mode: the model's outputs are inference
    tensors, and so are buffers grown during a step; all are written in place afterwards.
    """

    def __init__(self, rows: int = 1, fixed: bool = False, columns: int = 0):
        """``rows``: the rows the buffers hold at first (they double when more sequences join); ``columns``: the longest
        sequence, prompt and answer, they hold at first besides their spare columns. ``fixed``: the buffers keep their
        addresses while they have room (see the module's docstring); ``generation`` names their allocation, unique in
        the process."""
        self.sequences: list[Decoding] = []
        self.span = _Span()
        self.cache: Cache | None = None
        self.row_layers: list[RowLayer] = []  # the cache's layers where it is joinable, else none
        self.mask = torch.zeros(0, 0, dtype=torch.bool)  # [row capacity, column capacity]
        self.lengths = torch.zeros(0, dtype=torch.long)  # [row capacity]
        self.next_ids = torch.zeros(0, dtype=torch.long)  # [row capacity]
        self.column = torch.zeros(1, dtype=torch.long)  # fixed: the column the next step writes (rag.llm.cuda_graphs)
        self.launched: LaunchedStep | None = None  # a step whose tokens are not read yet (TransformersEngine.decode)
        self.first_rows, self.first_columns, self.fixed, self.generation = max(1, rows), columns, fixed, 0
        # A cache that is not plain full attention (sliding-window layers) is kept as the model made it: one sequence.
        self.joinable = True

    def __len__(self) -> int:
        return len(self.sequences)

    def can_add(self) -> bool:
        return not self.sequences or self.joinable

    @torch.inference_mode()
    def add(self, prefilled: Prefill) -> None:
        if not self.can_add():
            raise NotImplementedError("this model's KV cache is not plain full attention: one sequence at a time")
        cache, next_id = prefilled.prefilled()
        layers = list(cache.layers)  # the prompt's own: a first sequence's cache object becomes the batch's below
        if not self.sequences:
            self._start(prefilled)
        s, row, length = self.span, len(self.sequences), prefilled.length
        self._reserve(row + 1, length)
        if self.joinable:
            for layer, source in zip(self.row_layers, layers, strict=True):
                layer.put(row, *_kv(source))
        self.mask[row] = False
        self.mask[row, s.end - length : s.end] = True
        self.lengths[row], self.next_ids[row] = length, next_id
        s.start = min(s.start, s.end - length) if self.sequences else s.end - length
        s.rows = row + 1
        self.sequences.append(prefilled.sequence)
        self._refresh()

    def _start(self, prefilled: Prefill) -> None:
        cache, length = prefilled.prefilled()[0], prefilled.length
        room = max(self.first_columns, length + prefilled.sequence.sampling.max_tokens) + self._spare_columns
        if self.fixed and self.joinable and room <= self.mask.shape[1]:
            # The batch ran empty: fixed buffers stay where they are (graphs read them), the span starts over.
            self.span.rows, self.span.start, self.span.end = 0, length, length
            return
        self.generation = next(_ALLOCATIONS)
        device = _kv(cache.layers[0])[0].device
        self.joinable = all(type(layer) is DynamicLayer for layer in cache.layers)
        rows = self.first_rows if self.joinable else 1
        self.mask = torch.zeros(rows, room, dtype=torch.bool, device=device)
        self.lengths = torch.zeros(rows, dtype=torch.long, device=device)
        self.next_ids = torch.zeros(rows, dtype=torch.long, device=device)
        self.column = torch.zeros(1, dtype=torch.long, device=device)
        self.span = _Span(rows=0, start=length, end=length)
        # The first prefill's cache object carries the model's cache settings. A plain one's layers become row
        # layers; any other is kept as the model made it and grows itself.
        self.cache = cache
        self.row_layers = (
            [RowLayer(self.span, _kv(layer)[0], rows, room) for layer in cache.layers] if self.joinable else []
        )
        if self.joinable:
            cache.layers = list(self.row_layers)

    @property
    def _spare_columns(self) -> int:
        return _FIXED_SPARE_COLUMNS if self.fixed else _GROW_COLUMNS

    @property
    def capacity(self) -> tuple[int, int]:
        """Rows and columns the buffers hold."""
        rows, columns = self.mask.shape
        return rows, columns

    @property
    def columns(self) -> int:
        """Columns the buffers hold (live ones and room to grow): what the batch's memory scales with."""
        return self.capacity[1]

    def _reserve(self, rows: int, length: int = 0) -> None:
        """Room for ``rows`` rows, a sequence of ``length`` tokens ending at the span's end, and the next step's column.

        When that does not fit, the span is moved to start at the left edge (the columns left of it hold
        nothing anyone still needs): in place where fixed buffers have room to spare, else into new buffers
        of the live width plus spare columns.
        """
        s = self.span
        have_rows, have_columns = self.mask.shape
        width = max(s.end - s.start if s.rows else 0, length)
        if rows <= have_rows and s.end >= width and s.end + 1 <= have_columns:
            return
        shift = width - s.end  # the span's new end is ``width``: its start lands on column 0 (or right of it)
        if self.fixed and rows <= have_rows and width + self._spare_columns <= have_columns:
            self._shift(shift)
        else:
            self._reallocate(rows, width, shift)
        s.start, s.end = s.start + shift, s.end + shift

    def _shift(self, shift: int) -> None:
        s = self.span
        for layer in self.row_layers:
            layer.shift(shift)
        live = self.mask[: s.rows, s.start : s.end].clone()
        self.mask[: s.rows] = False
        self.mask[: s.rows, s.start + shift : s.end + shift] = live

    def _reallocate(self, rows: int, width: int, shift: int) -> None:
        s = self.span
        have_rows = self.mask.shape[0]
        rows = max(rows, have_rows * 2 if rows > have_rows else have_rows)
        columns = width + 1 + self._spare_columns
        for layer in self.row_layers:
            layer.reallocate(rows, columns, shift)
        mask = self.mask.new_zeros(rows, columns)
        mask[: s.rows, s.start + shift : s.end + shift] = self.mask[: s.rows, s.start : s.end]
        self.mask = mask
        self.lengths = torch.cat([self.lengths, self.lengths.new_zeros(rows - len(self.lengths))])
        self.next_ids = torch.cat([self.next_ids, self.next_ids.new_zeros(rows - len(self.next_ids))])
        self.generation = next(_ALLOCATIONS)
        release_freed_memory(self.mask.device.type)  # the old buffers' memory, which the allocator would keep

    @torch.inference_mode()
    def step_inputs(self) -> dict:
        """The model's arguments for one decode step (the step's column is reserved and unmasked)."""
        s = self.span
        self._reserve(s.rows)
        self._refresh()
        self.mask[: s.rows, s.end] = True
        return {
            "input_ids": self.next_ids[: s.rows, None],
            "attention_mask": self.mask[: s.rows, s.start : s.end + 1],
            "position_ids": self.lengths[: s.rows, None],
            "past_key_values": self.cache,
            "use_cache": True,
        }

    @torch.inference_mode()
    def reserve_step(self) -> None:
        """Room for the next step's column (which may move the span), before a window is chosen for it."""
        self._reserve(self.span.rows)

    @torch.inference_mode()
    def window_inputs(self, rows: int, columns: int) -> dict:
        """The model's arguments for one decode step over the first ``rows`` rows and ``columns`` columns, which hold
        the live ones (call ``reserve_step`` first). Every tensor is a view of the batch's buffers: the same addresses
        from step to step until ``generation`` changes, so a CUDA graph captured over them replays any later step.

        Rows past the live ones are padding, whose results are dropped. Each attends at least to its own column:
        a row that attended to nothing would compute NaN, and a NaN left in the cache poisons whichever
        sequence takes the row later (a masked column weighs 0, and 0 x NaN is NaN)."""
        s = self.span
        self.mask[:rows, s.end] = True
        self.column.fill_(s.end)
        s.window = (rows, columns, self.column)
        return {
            "input_ids": self.next_ids[:rows, None],
            "attention_mask": self.mask[:rows, None, None, :columns],
            "position_ids": self.lengths[:rows, None],
            "past_key_values": self.cache,
            "use_cache": True,
        }

    @torch.inference_mode()
    def stepped(self, next_ids) -> None:
        s = self.span
        s.end += 1
        self.lengths[: s.rows] += 1
        self.next_ids[: s.rows] = next_ids
        s.window = None  # the row layers' views of the span are refreshed by the next step that reads them

    @torch.inference_mode()
    def drop_finished(self) -> int:
        """Remove finished sequences (the last row moves into each gap); returns how many are left."""
        s = self.span
        if not any(seq.done for seq in self.sequences):  # most steps: nothing to move, nothing to wait for
            return s.rows
        for row in reversed(range(s.rows)):
            if not self.sequences[row].done:
                continue
            last = s.rows - 1
            if row != last:
                for layer in self.row_layers:
                    layer.move(last, row)
                self.mask[row], self.lengths[row], self.next_ids[row] = (
                    self.mask[last],
                    self.lengths[last],
                    self.next_ids[last],
                )
                self.sequences[row] = self.sequences[last]
            self.sequences.pop()
            s.rows = last
        if s.rows:
            # Columns left of the longest remaining sequence are padding for all: out of every later step.
            s.start = s.end - int(self.lengths[: s.rows].max())
        self._refresh()
        return s.rows

    def _refresh(self) -> None:
        for layer in self.row_layers:
            layer.refresh()
