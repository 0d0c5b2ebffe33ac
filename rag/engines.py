"""LLM engines behind one interface: transformers (default, CPU or GPU), vLLM (GPU extra), OpenAI-compatible remote.

Every engine streams a batch of conversations (``stream_batch``): each step yields one text delta per
conversation ("" while it has nothing new, None once it has finished). The transformers engine also
exposes its steps, ``prefill`` (one prompt) and ``decode`` (one token for a whole DecodeBatch), so
that ``rag.batching.ContinuousBatcher`` lets requests join and leave its batch between steps. vLLM
and remote servers batch on their side and are handed Serve's fixed batches.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path

from rag.config import LLMConfig
from rag.decoding import DecodeBatch, Decoding, Prefilled
from rag.models import cap_gpu_memory, pick_device, pick_dtype, resolve_model
from rag.prompts import build_messages
from rag.search import RetrievedChunk

log = logging.getLogger(__name__)


class Engine(ABC):
    model_name: str
    device: str = "remote"
    # True where the engine has prefill() and decode(), so requests can join its batch between steps (rag.batching).
    continuous_batching: bool = False

    cfg: LLMConfig

    @abstractmethod
    def stream_batch(self, conversations: list[list[dict]], max_new_tokens: list[int]) -> Iterator[list[str]]:
        """Per step, one text delta per conversation: "" when it has nothing new, None once it has finished."""

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs this model; engines without a local tokenizer estimate (4 characters a token)."""
        return len(text) // 4 + 1

    def prompt(self, question: str, chunks: Sequence[RetrievedChunk], history: Sequence[dict] = ()) -> list[dict]:
        """The grounded conversation for a question, fitted to ``llm.max_prompt_tokens`` of this model's tokens."""
        return build_messages(question, chunks, history, self.count_tokens, self.cfg.max_prompt_tokens)

    def generate(self, conversation: list[dict], max_new_tokens: int) -> str:
        return "".join(step[0] or "" for step in self.stream_batch([conversation], [max_new_tokens]))


def _gguf_cache_dir(gguf_path: Path) -> Path:
    """Where the dequantized copy of a GGUF model lives: keyed by the file, so a new file gets a new copy."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    root = Path(os.environ.get("RAG_CACHE_DIR", Path.home() / ".cache" / "ray-rag"))
    return root / "dequantized" / f"{gguf_path.stem}-{key}"


_cache_lock = threading.Lock()


def _load_causal_lm(model: str, device_map, dtype):
    """A hub id, a local folder, or a GGUF file; a GGUF file is dequantized once and cached (about 25 s saved)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(resolve_model(model))
    if path.suffix != ".gguf":
        return (
            AutoTokenizer.from_pretrained(str(path)),
            AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, device_map=device_map),
        )
    cache = _gguf_cache_dir(path)
    with _cache_lock:
        if not (cache / "config.json").is_file():
            log.info("dequantizing %s once into %s", path.name, cache)
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
            lm = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
            # The weights are plain floats now; without the GGUF marker they save as an ordinary checkpoint.
            lm.hf_quantizer = None
            if hasattr(lm.config, "quantization_config"):
                del lm.config.quantization_config
            tmp = cache.with_name(cache.name + f".tmp-{os.getpid()}")
            tokenizer.save_pretrained(tmp)
            lm.save_pretrained(tmp)
            tmp.rename(cache)
    return (
        AutoTokenizer.from_pretrained(str(cache)),
        AutoModelForCausalLM.from_pretrained(str(cache), dtype=dtype, device_map=device_map),
    )


class TransformersEngine(Engine):
    """Batched greedy or sampled decoding with a KV cache, on a GPU share, several GPUs, or the CPU."""

    continuous_batching = True

    def __init__(self, cfg: LLMConfig, num_gpus: float = 0.0):
        import torch

        self.cfg = cfg
        self.model_name = cfg.model
        self.device = "cpu" if num_gpus == 0 else pick_device("auto")
        cap_gpu_memory(self.device, num_gpus)
        # A whole-number GPU slot above one splits the model over the replica's GPUs.
        device_map = "auto" if self.device == "cuda" and num_gpus >= 2 else None
        self.dtype = pick_dtype(cfg.dtype, self.device)
        self.tokenizer, self.model = _load_causal_lm(cfg.model, device_map, getattr(torch, self.dtype))
        if device_map is None:
            self.model.to(self.device)
        self.model.eval()
        self.stop_ids = {self.tokenizer.eos_token_id, *self._extra_stop_ids()}
        # Prompts are built to the budget (rag.prompts); should one still run over, its start goes, never the question.
        self.tokenizer.truncation_side = "left"

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _extra_stop_ids(self) -> set[int]:
        ids = set()
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.add(tid)
        return ids

    def _encode(self, conversation: list[dict]):
        text = self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        enc = self.tokenizer(
            text, return_tensors="pt", truncation=True, max_length=self.cfg.max_prompt_tokens, add_special_tokens=False
        )
        return enc["input_ids"].to(self.model.device), enc["attention_mask"].to(self.model.device)

    def prefill(self, conversation: list[dict], max_new_tokens: int) -> tuple[Prefilled, str]:
        """Run one prompt alone (no padding to waste compute on) and pick its first token."""
        import torch

        input_ids, attention = self._encode(conversation)
        with torch.inference_mode():
            # Logits for the last position only: the full [prompt, vocabulary] matrix was a sixth of a prefill.
            out = self.model(input_ids=input_ids, attention_mask=attention, use_cache=True, logits_to_keep=1)
        sequence, token = Decoding(max_new_tokens), int(self._pick(out.logits[:, -1, :])[0])
        delta = self._advance([sequence], [token])[0]
        return Prefilled(sequence, out.past_key_values, token, input_ids.shape[1]), delta

    def decode(self, batch: DecodeBatch) -> list[str]:
        """One token for every sequence in the batch; returns each one's new text ("" while a character is incomplete)."""
        import torch

        with torch.inference_mode():
            out = self.model(**batch.step_inputs())
        next_ids = self._pick(out.logits[:, -1, :])
        batch.stepped(next_ids)
        return self._advance(batch.sequences, next_ids.tolist())

    def _advance(self, sequences: list[Decoding], tokens: list[int]) -> list[str]:
        deltas = []
        for seq, token in zip(sequences, tokens):
            deltas.append("")
            if token in self.stop_ids:
                seq.done = True
                continue
            seq.tokens.append(token)
            seq.done = len(seq.tokens) >= seq.max_new_tokens
            text = self.tokenizer.decode(seq.tokens, skip_special_tokens=True)
            # Hold back an incomplete multi-byte character until the next token completes it.
            if not text.endswith("\ufffd"):
                deltas[-1], seq.emitted = text[len(seq.emitted) :], text
        return deltas

    def stream_batch(self, conversations: list[list[dict]], max_new_tokens: list[int]) -> Iterator[list[str]]:
        batch, sequences, first = DecodeBatch(), [], []
        for conversation, limit in zip(conversations, max_new_tokens):
            prefilled, delta = self.prefill(conversation, limit)
            batch.add(prefilled)
            sequences.append(prefilled.sequence)
            first.append(delta)
        yield first
        while batch.drop_finished():
            step = dict(zip(map(id, batch.sequences), self.decode(batch)))
            yield [step.get(id(seq)) for seq in sequences]

    def _pick(self, logits):
        import torch

        if self.cfg.temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits.float() / self.cfg.temperature, dim=-1)
        return torch.multinomial(probs, 1)[:, 0]


class OpenAIEngine(Engine):
    """Any OpenAI-compatible server; batching happens there, so conversations stream one after another here."""

    def __init__(self, cfg: LLMConfig):
        from openai import OpenAI

        self.cfg = cfg
        self.model_name = cfg.model
        api_key = os.environ.get(cfg.openai_api_key_env) or "none"
        self.client = OpenAI(base_url=cfg.openai_base_url, api_key=api_key, timeout=cfg.request_timeout_s)

    def stream_batch(self, conversations: list[list[dict]], max_new_tokens: list[int]) -> Iterator[list[str]]:
        n = len(conversations)
        for i, (conversation, limit) in enumerate(zip(conversations, max_new_tokens)):
            stream = self.client.chat.completions.create(
                model=self.cfg.model,
                messages=conversation,
                max_tokens=limit,
                temperature=self.cfg.temperature,
                stream=True,
            )
            for event in stream:
                delta = event.choices[0].delta.content if event.choices else None
                if delta:
                    yield [delta if j == i else (None if j < i else "") for j in range(n)]


class VLLMEngine(Engine):
    """vLLM on the replica's GPUs: a fraction sets its memory share, a whole number its tensor-parallel size."""

    def __init__(self, cfg: LLMConfig, num_gpus: float):
        from vllm import LLM, SamplingParams  # optional extra, GPU only

        self.cfg = cfg
        self.model_name = cfg.model
        self.device = "cuda"
        self._sampling = SamplingParams
        self.llm = LLM(
            model=resolve_model(cfg.model),
            gpu_memory_utilization=cfg.vllm_memory_headroom * (num_gpus if num_gpus < 1 else 1.0),
            tensor_parallel_size=max(1, int(num_gpus)),
            max_model_len=cfg.max_prompt_tokens + cfg.max_new_tokens,
        )
        self._tokenizer = self.llm.get_tokenizer()

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    def stream_batch(self, conversations: list[list[dict]], max_new_tokens: list[int]) -> Iterator[list[str]]:
        params = [self._sampling(max_tokens=m, temperature=self.cfg.temperature) for m in max_new_tokens]
        outputs = self.llm.chat(conversations, params, use_tqdm=False)
        yield [o.outputs[0].text for o in outputs]


def load_engine(cfg: LLMConfig, num_gpus: float = 0.0) -> Engine:
    if cfg.engine == "transformers":
        return TransformersEngine(cfg, num_gpus)
    if cfg.engine == "vllm":
        return VLLMEngine(cfg, num_gpus)
    return OpenAIEngine(cfg)
