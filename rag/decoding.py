"""Sequences decoding together: one KV cache for all, so each step is one forward pass however many are answering.

Prompts are prefilled alone (no padding computed) and each then takes a row of the batch's cache.
Rows are right-aligned: every sequence's newest token sits in the same column, so a decode step
writes one column in place for all of them, and the attention mask hides what lies left of each
row's own tokens. Joining copies only the newcomer's cache into its row; leaving moves only the
last row into the gap. (transformers' DynamicCache copies the whole cache to append a token, and
re-padding the batch on every join and leave cost as much again: together most of a step's time
at 16 sequences of 2,000 tokens.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers.cache_utils import DynamicLayer

_GROW_COLUMNS = 64  # spare columns added whenever the buffers are reallocated


@dataclass
class Decoding:
    """One answer in progress: its tokens so far and the text already streamed."""

    max_new_tokens: int
    tokens: list[int] = field(default_factory=list)
    emitted: str = ""
    done: bool = False


@dataclass
class Prefilled:
    """A prompt run alone: its sequence, the model's KV cache for it, the token to feed next and the cached length."""

    sequence: Decoding
    cache: object
    next_id: int
    length: int


@dataclass
class _Span:
    """The part of the buffers in use: rows [0, rows), columns [start, end)."""

    rows: int = 0
    start: int = 0
    end: int = 0


class RowLayer(DynamicLayer):
    """One layer's keys and values, a row per sequence; ``keys``/``values`` are views of the span in use."""

    def __init__(self, span: _Span, like, rows: int, columns: int):
        super().__init__()
        self.span = span
        self.dtype, self.device, self.is_initialized = like.dtype, like.device, True
        _, heads, _, dim = like.shape
        self._keys = like.new_zeros(rows, heads, columns, dim)
        self._values = like.new_zeros(rows, heads, columns, dim)
        self.refresh()

    def reallocate(self, rows: int, columns: int, shift: int) -> None:
        """Bigger buffers; the span's columns move ``shift`` to the right."""
        s = self.span
        for name in ("_keys", "_values"):
            old = getattr(self, name)
            new = old.new_zeros(rows, old.shape[1], columns, old.shape[3])
            new[: s.rows, :, s.start + shift : s.end + shift] = old[: s.rows, :, s.start : s.end]
            setattr(self, name, new)

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
        self._keys[: s.rows, :, s.end : s.end + 1] = key_states
        self._values[: s.rows, :, s.end : s.end + 1] = value_states
        return self._keys[: s.rows, :, s.start : s.end + 1], self._values[: s.rows, :, s.start : s.end + 1]


class DecodeBatch:
    """Sequences decoding together: their cache rows, attention mask, cached lengths (= next position ids) and next tokens.

    Every method that touches its tensors runs in inference mode: the model's outputs are inference
    tensors, and so are buffers grown during a step; all are written in place afterwards.
    """

    def __init__(self):
        self.sequences: list[Decoding] = []
        self.span = _Span()
        self.cache = None
        self.mask = self.lengths = self.next_ids = None  # [row capacity, column capacity], [row capacity] x2
        # A cache that is not plain full attention (sliding-window layers) is kept as the model made it: one sequence.
        self.joinable = True

    def __len__(self) -> int:
        return len(self.sequences)

    def can_add(self) -> bool:
        return not self.sequences or self.joinable

    @torch.inference_mode()
    def add(self, prefilled: Prefilled) -> None:
        if not self.can_add():
            raise NotImplementedError("this model's KV cache is not plain full attention: one sequence at a time")
        layers = prefilled.cache.layers
        if not self.sequences:
            self._start(prefilled)
        s, row, length = self.span, len(self.sequences), prefilled.length
        self._reserve(row + 1, shift=max(0, length - s.end), columns=s.end + 1)
        if self.joinable:
            for layer, source in zip(self.cache.layers, layers):
                layer.put(row, source.keys, source.values)
        self.mask[row] = 0
        self.mask[row, s.end - length : s.end] = 1
        self.lengths[row], self.next_ids[row] = length, prefilled.next_id
        s.start = min(s.start, s.end - length) if self.sequences else s.end - length
        s.rows = row + 1
        self.sequences.append(prefilled.sequence)
        self._refresh()

    def _start(self, prefilled: Prefilled) -> None:
        cache, length = prefilled.cache, prefilled.length
        room = length + prefilled.sequence.max_new_tokens + _GROW_COLUMNS
        self.mask = torch.zeros(1, room, dtype=torch.long, device=cache.layers[0].keys.device)
        self.lengths = torch.zeros(1, dtype=torch.long, device=self.mask.device)
        self.next_ids = torch.zeros(1, dtype=torch.long, device=self.mask.device)
        self.joinable = all(type(layer) is DynamicLayer for layer in cache.layers)
        self.span = _Span(rows=0, start=length, end=length)
        # The first prefill's cache object carries the model's cache settings. A plain one's layers become row
        # layers; any other is kept as the model made it and grows itself.
        self.cache = cache
        if self.joinable:
            cache.layers = [RowLayer(self.span, layer.keys, 1, room) for layer in cache.layers]

    def _reserve(self, rows: int, shift: int, columns: int) -> None:
        """Make room for ``rows`` rows and ``columns`` columns, moving the span ``shift`` columns right first."""
        have_rows, have_columns = self.mask.shape
        columns += shift
        if rows <= have_rows and columns <= have_columns and not shift:
            return
        rows = max(rows, have_rows * 2 if rows > have_rows else have_rows)
        columns = max(columns + _GROW_COLUMNS, have_columns)
        if self.joinable:
            for layer in self.cache.layers:
                layer.reallocate(rows, columns, shift)
        s = self.span
        mask = self.mask.new_zeros(rows, columns)
        mask[: s.rows, s.start + shift : s.end + shift] = self.mask[: s.rows, s.start : s.end]
        self.mask = mask
        self.lengths = torch.cat([self.lengths, self.lengths.new_zeros(rows - len(self.lengths))])
        self.next_ids = torch.cat([self.next_ids, self.next_ids.new_zeros(rows - len(self.next_ids))])
        s.start, s.end = s.start + shift, s.end + shift

    @torch.inference_mode()
    def step_inputs(self) -> dict:
        """The model's arguments for one decode step (the step's column is reserved and unmasked)."""
        s = self.span
        self._reserve(s.rows, shift=0, columns=s.end + 1)
        self.mask[: s.rows, s.end] = 1
        return {
            "input_ids": self.next_ids[: s.rows, None],
            "attention_mask": self.mask[: s.rows, s.start : s.end + 1],
            "position_ids": self.lengths[: s.rows, None],
            "past_key_values": self.cache,
            "use_cache": True,
        }

    @torch.inference_mode()
    def stepped(self, next_ids) -> None:
        s = self.span
        s.end += 1
        self.lengths[: s.rows] += 1
        self.next_ids[: s.rows] = next_ids
        self._refresh()

    @torch.inference_mode()
    def drop_finished(self) -> int:
        """Remove finished sequences (the last row moves into each gap); returns how many are left."""
        s = self.span
        for row in reversed(range(s.rows)):
            if not self.sequences[row].done:
                continue
            last = s.rows - 1
            if row != last:
                if self.joinable:
                    for layer in self.cache.layers:
                        layer.move(last, row)
                self.mask[row], self.lengths[row], self.next_ids[row] = self.mask[last], self.lengths[last], self.next_ids[last]
                self.sequences[row] = self.sequences[last]
            self.sequences.pop()
            s.rows = last
        if s.rows:
            # Columns left of the longest remaining sequence are padding for all: out of every later step.
            s.start = s.end - int(self.lengths[: s.rows].max())
        self._refresh()
        return s.rows

    def _refresh(self) -> None:
        if self.joinable:
            for layer in self.cache.layers:
                layer.refresh()
