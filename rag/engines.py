"""LLM engines behind one interface: transformers (default, CPU or GPU), vLLM (GPU extra), OpenAI-compatible remote.

Each engine streams a batch of conversations: every step yields one text delta per conversation
("" while it has nothing new, None once it has finished), so a Serve replica can batch requests into one forward pass and still
stream each answer back as it is produced.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from rag.config import LLMConfig
from rag.models import cap_gpu_memory, pick_device, pick_dtype, resolve_model

log = logging.getLogger(__name__)


class Engine(ABC):
    model_name: str
    device: str = "remote"

    @abstractmethod
    def stream_batch(self, conversations: list[list[dict]], max_new_tokens: list[int]) -> Iterator[list[str]]:
        """Per step, one text delta per conversation: "" when it has nothing new, None once it has finished."""

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
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.stop_ids = {self.tokenizer.eos_token_id, *self._extra_stop_ids()}

    def _extra_stop_ids(self) -> set[int]:
        ids = set()
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.add(tid)
        return ids

    def _encode(self, conversations: list[list[dict]]):
        texts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
        enc = self.tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.cfg.max_prompt_tokens,
            add_special_tokens=False,
        )
        return enc["input_ids"].to(self.model.device), enc["attention_mask"].to(self.model.device)

    def stream_batch(self, conversations: list[list[dict]], max_new_tokens: list[int]) -> Iterator[list[str]]:
        import torch

        input_ids, attention = self._encode(conversations)
        n = len(conversations)
        generated: list[list[int]] = [[] for _ in range(n)]
        emitted = [""] * n
        done = [False] * n
        past = None
        # Left padding: positions count real tokens only, or padded prompts would be shifted.
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        step_input, step_positions = input_ids, positions
        with torch.inference_mode():
            for step in range(max(max_new_tokens)):
                out = self.model(
                    input_ids=step_input,
                    attention_mask=attention,
                    position_ids=step_positions,
                    past_key_values=past,
                    use_cache=True,
                )
                past = out.past_key_values
                next_ids = self._pick(out.logits[:, -1, :])
                deltas: list[str | None] = [None if done[i] else "" for i in range(n)]
                for i in range(n):
                    if done[i]:
                        continue
                    token = int(next_ids[i])
                    if token in self.stop_ids:
                        done[i] = True
                        continue
                    generated[i].append(token)
                    text = self.tokenizer.decode(generated[i], skip_special_tokens=True)
                    # Hold back an incomplete multi-byte character until the next token completes it.
                    if not text.endswith("\ufffd"):
                        deltas[i], emitted[i] = text[len(emitted[i]) :], text
                    if len(generated[i]) >= max_new_tokens[i]:
                        done[i] = True
                yield deltas
                if all(done):
                    return
                finished = torch.tensor(done, device=next_ids.device)
                next_ids = torch.where(finished, torch.full_like(next_ids, self.tokenizer.pad_token_id), next_ids)
                step_input = next_ids[:, None]
                attention = torch.cat([attention, (~finished).long()[:, None]], dim=1)
                step_positions = step_positions[:, -1:] + 1

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
