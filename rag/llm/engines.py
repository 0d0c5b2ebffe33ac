"""LLM engines behind one interface: transformers (default, CPU or GPU), vLLM (GPU extra), OpenAI-compatible remote.

Every engine streams a batch of conversations (``stream_batch``): each step yields one text delta per
conversation ("" while it has nothing new, None once it has finished). The transformers engine also
exposes its steps, ``encode`` (tokenize, from any thread), ``prefill`` (a chunk of one prompt) and
``decode`` (one token for a whole DecodeBatch), so that ``rag.llm.batching.ContinuousBatcher`` lets
requests join and leave its batch between steps. vLLM and remote servers batch on their side and
are handed Serve's fixed batches.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from rag.config import LLMConfig
from rag.devices import cap_gpu_memory, pick_device, pick_dtype
from rag.llm.cuda_graphs import DecodeGraphs
from rag.llm.decoding import DecodeBatch, Decoding, LaunchedStep, Prefill
from rag.locks import exclusive
from rag.models import quiet_model_loading, resolve_model
from rag.prompts import build_messages
from rag.types import RetrievedChunk, Sampling, Usage

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

log = logging.getLogger(__name__)

# One step of a streamed batch: a text delta per conversation, "" while it has nothing new, None once it has finished.
Deltas = list[str | None]


class Engine(ABC):
    model_name: str
    device: str = "remote"
    # True where the engine has encode(), prefill() and decode(), so requests join its batch between steps
    # (rag.llm.batching).
    continuous_batching: bool = False
    # True where it also has prefill_together(): several whole prompts in one forward pass.
    prefills_together: bool = False

    cfg: LLMConfig

    @abstractmethod
    def stream_batch(self, conversations: list[list[dict]], sampling: list[Sampling]) -> Iterator[Deltas]:
        """Per step, one text delta per conversation: "" when it has nothing new, None once it has finished."""

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs this model; engines without a local tokenizer estimate (4 characters a token)."""
        return len(text) // 4 + 1

    def prompt(
        self, question: str, chunks: Sequence[RetrievedChunk], history: Sequence[dict] = (), instructions: str = ""
    ) -> list[dict]:
        """The grounded conversation for a question, fitted to ``llm.max_prompt_tokens`` of this model's tokens."""
        return build_messages(question, chunks, history, self.count_tokens, self.cfg.max_prompt_tokens, instructions)

    def usage(self, conversation: list[dict], text: str, sampling: Sampling) -> Usage:
        """Tokens an answer cost, counted after the fact (engines that do not count as they decode)."""
        prompt = sum(self.count_tokens(m["content"]) for m in conversation)
        return _counted_usage(prompt, self.count_tokens(text), sampling)

    def _temperature(self, sampling: Sampling) -> float:
        return self.cfg.temperature if sampling.temperature is None else sampling.temperature

    def generate(self, conversation: list[dict], max_new_tokens: int) -> str:
        return "".join(step[0] or "" for step in self.stream_batch([conversation], [Sampling(max_new_tokens)]))


def _counted_usage(prompt_tokens: int, completion_tokens: int, sampling: Sampling) -> Usage:
    return Usage(prompt_tokens, completion_tokens, "length" if completion_tokens >= sampling.max_tokens else "stop")


def _row_cache(cache, row: int, length: int):
    """One sequence's cache out of a padded pass's: its row, without the padding on the left (views, not copies)."""
    from transformers.cache_utils import DynamicLayer

    mine = copy.copy(cache)
    mine.layers = []
    for layer in cache.layers:
        part = DynamicLayer()
        part.lazy_initialization(layer.keys, layer.values)
        part.keys, part.values = layer.keys[row : row + 1, :, -length:], layer.values[row : row + 1, :, -length:]
        mine.layers.append(part)
    return mine


def _gguf_cache_dir(gguf_path: Path) -> Path:
    """Where the dequantized copy of a GGUF model lives: keyed by the file, so a new file gets a new copy."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    root = Path(os.environ.get("RAG_CACHE_DIR", Path.home() / ".cache" / "ray-rag"))
    return root / "dequantized" / f"{gguf_path.stem}-{key}"


def causal_lm_source(model: str) -> str:
    """What transformers loads ``model`` from: a hub id or local folder as given, a GGUF file's dequantized copy (made
    once and cached: about 25 s saved a load)."""
    path = Path(resolve_model(model))
    return str(_dequantized(path)) if path.suffix == ".gguf" else str(path)


def _load_causal_lm(model: str, device_map, dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_model_loading()
    source = causal_lm_source(model)
    return (
        AutoTokenizer.from_pretrained(source),
        AutoModelForCausalLM.from_pretrained(source, dtype=dtype, device_map=device_map),
    )


def _dequantized(path: Path) -> Path:
    """The cached plain checkpoint of a GGUF file, made by whichever process gets there first.

    Replicas start together: a file lock lets one dequantize while the others wait, then read its copy.
    """
    cache = _gguf_cache_dir(path)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(cache.with_name(cache.name + ".lock"), purpose=f"dequantizing {path.name}"):
        if not (cache / "config.json").is_file():
            _dequantize(path, cache)
    return cache


def _dequantize(path: Path, cache: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

    log.info("dequantizing %s once into %s", path.name, cache)
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    lm: PreTrainedModel = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    # The weights are plain floats now; without the GGUF marker they save as an ordinary checkpoint.
    lm.hf_quantizer = None  # type: ignore[assignment]  # torch's Module.__setattr__ is annotated for tensors only
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    tmp = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
    try:
        tokenizer.save_pretrained(tmp)
        lm.save_pretrained(tmp)
        shutil.rmtree(cache, ignore_errors=True)  # what a process killed part-way left
        tmp.rename(cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
        # Decode steps replayed as CUDA graphs (rag.llm.cuda_graphs) on one GPU; a model split over GPUs runs eagerly.
        self.graphs = DecodeGraphs(self.model) if self.device == "cuda" and cfg.cuda_graphs and not device_map else None
        # On a GPU a prefill's time is largely the CPU launching its kernels: several prompts in one pass cost the
        # launches of one. On a CPU the arithmetic dominates, and the padding would be pure loss.
        self.prefills_together = self.device == "cuda"

    def new_batch(self, rows: int) -> DecodeBatch:
        """An empty decode batch for up to ``rows`` sequences: where steps replay graphs, fixed buffers of that many
        rows and columns for the longest prompt and answer configured (a longer one reallocates them, and the graphs
        are recorded again); else buffers that follow what is live."""
        if self.graphs is None:
            return DecodeBatch()
        return DecodeBatch(rows, fixed=True, columns=self.cfg.max_prompt_tokens + self.cfg.max_new_tokens)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _extra_stop_ids(self) -> set[int]:
        ids = set()
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.add(tid)
        return ids

    def encode(self, conversation: list[dict]) -> list[int]:
        """The prompt's token ids, from any thread (callers keep it off the decode loop's). Prompts are built to the
        budget (rag.prompts); should one still run over, its start goes, never the question."""
        text = self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        return self.tokenizer.encode(text, add_special_tokens=False)[-self.cfg.max_prompt_tokens :]

    def start(self, ids: list[int], sampling: Sampling) -> Prefill:
        from tokenizers.decoders import DecodeStream

        return Prefill(Decoding(sampling, len(ids), DecodeStream(skip_special_tokens=True)), ids)

    def prefill(self, prefill: Prefill, budget: int) -> tuple[int, str]:
        """Run up to ``budget`` more prompt tokens through the model (no padding computed); once the whole prompt is in,
        pick the first token. Returns the tokens run and the first text ("" until then)."""
        import torch

        chunk = prefill.ids[prefill.length : prefill.length + budget]
        device = self.model.device
        with torch.inference_mode():
            # Logits for the last position only: the full [prompt, vocabulary] matrix was a sixth of a prefill.
            out = self.model(
                input_ids=torch.tensor([chunk], device=device),
                attention_mask=torch.ones(1, prefill.length + len(chunk), dtype=torch.long, device=device),
                past_key_values=prefill.cache,
                use_cache=True,
                logits_to_keep=1,
            )
        prefill.cache, prefill.length = out.past_key_values, prefill.length + len(chunk)
        if prefill.remaining:
            return len(chunk), ""
        prefill.next_id = int(self._pick(out.logits[:, -1, :], [prefill.sequence])[0])
        return len(chunk), self._advance([prefill.sequence], [prefill.next_id])[0]

    def prefill_together(self, prefills: list[Prefill]) -> list[str]:
        """Whole prompts, none begun, in one forward pass, left-padded to the longest; each gets its own cache (its row
        of the pass's) and first token. Returns the first texts."""
        import torch

        longest = max(len(p.ids) for p in prefills)
        ids = torch.zeros(len(prefills), longest, dtype=torch.long)
        mask = torch.zeros(len(prefills), longest, dtype=torch.long)
        for row, prefill in enumerate(prefills):
            ids[row, longest - len(prefill.ids) :] = torch.tensor(prefill.ids)
            mask[row, longest - len(prefill.ids) :] = 1
        device = self.model.device
        with torch.inference_mode():
            out = self.model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device),
                use_cache=True,
                logits_to_keep=1,
            )
            sequences = [p.sequence for p in prefills]
            firsts = self._pick(out.logits[:, -1, :], sequences).tolist()
        for row, (prefill, first) in enumerate(zip(prefills, firsts, strict=True)):
            prefill.cache = _row_cache(out.past_key_values, row, len(prefill.ids))
            prefill.length, prefill.next_id = len(prefill.ids), first
        return self._advance(sequences, firsts)

    def decode(self, batch: DecodeBatch) -> list[tuple[Decoding, str]]:
        """One token for every sequence in the batch; returns (sequence, new text) pairs, the text "" while a character
        is incomplete.

        Where steps replay graphs, a step is launched before the previous one's tokens are read: the GPU computes
        while the CPU reads, detokenizes and hands out what the step before produced (about as long as a
        step of a small model). The pairs returned are then the previous step's, and a sequence that finished
        there took part in this one for nothing."""
        import torch

        sequences = list(batch.sequences)
        with torch.inference_mode():
            next_ids = self._pick(self._step(batch), sequences)
            batch.stepped(next_ids)
            if self.graphs is None or not batch.fixed:
                return list(zip(sequences, self._advance(sequences, next_ids.tolist()), strict=True))
            # The tokens come to the host as the step ends, while this thread goes on; the event says when.
            launched = LaunchedStep(
                sequences, next_ids.to("cpu", non_blocking=True), torch.cuda.Event() if next_ids.is_cuda else None
            )
            if launched.ready is not None:
                launched.ready.record()
        previous, batch.launched = batch.launched, launched
        if previous is None:
            return []
        if previous.ready is not None:
            previous.ready.synchronize()
        return list(zip(previous.sequences, self._advance(previous.sequences, previous.tokens.tolist()), strict=True))

    def _step(self, batch: DecodeBatch):
        """One forward pass for the batch: the next-token logits of each sequence, [sequences, vocabulary]."""
        import torch

        if self.graphs is not None and batch.fixed:
            try:
                return self.graphs.step(batch)
            except torch.OutOfMemoryError:
                raise  # the batcher fails the requests in flight and goes on; the graphs stay
            except RuntimeError:  # a model whose step cannot be recorded (one that syncs with the CPU, say)
                log.warning(
                    "decode steps of %s cannot be replayed as CUDA graphs; running them eagerly",
                    self.model_name,
                    exc_info=True,
                )
                self.graphs = None
                batch.span.window = None
        return self.model(**batch.step_inputs()).logits[:, -1, :]

    def _advance(self, sequences: list[Decoding], tokens: list[int]) -> list[str]:
        deltas = []
        for seq, token in zip(sequences, tokens, strict=True):
            if seq.done:  # a step launched before its sequence was seen to finish (decode): the token is nobody's
                deltas.append("")
                continue
            text = ""
            if token in self.stop_ids:
                seq.done = True
            else:
                seq.tokens.append(token)
                if len(seq.tokens) >= seq.sampling.max_tokens:
                    seq.done, seq.finish_reason = True, "length"
                # The new token's text alone (None while it ends inside a multi-byte character): never the whole answer.
                text = seq.decoder.step(self.tokenizer.backend_tokenizer, token) or ""
            deltas.append(seq.release(text))
        return deltas

    def stream_batch(self, conversations: list[list[dict]], sampling: list[Sampling]) -> Iterator[Deltas]:
        batch, sequences = self.new_batch(len(conversations)), []
        first: Deltas = []
        for conversation, params in zip(conversations, sampling, strict=True):
            prefill = self.start(self.encode(conversation), params)
            first.append(self.prefill(prefill, prefill.remaining)[1])
            batch.add(prefill)
            sequences.append(prefill.sequence)
        yield first
        while batch.drop_finished():
            step = {id(seq): delta for seq, delta in self.decode(batch)}
            yield [step.get(id(seq), None if seq.done else "") for seq in sequences]

    def _pick(self, logits, sequences: list[Decoding]):
        """Each row's next token: greedy where its temperature is 0, sampled at its temperature elsewhere."""
        import torch

        greedy = logits.argmax(-1)
        temperatures = [self._temperature(seq.sampling) for seq in sequences]
        if not any(temperatures):
            return greedy
        t = torch.tensor(temperatures, device=logits.device)
        sampled = torch.multinomial(torch.softmax(logits.float() / t.clamp(min=1e-5)[:, None], dim=-1), 1)[:, 0]
        return torch.where(t > 0, sampled, greedy)

    def usage(self, conversation: list[dict], text: str, sampling: Sampling) -> Usage:
        return _counted_usage(len(self.encode(conversation)), self.count_tokens(text), sampling)


class OpenAIEngine(Engine):
    """Any OpenAI-compatible server; batching happens there, so conversations stream one after another here."""

    def __init__(self, cfg: LLMConfig):
        from openai import OpenAI

        self.cfg = cfg
        self.model_name = cfg.model
        api_key = os.environ.get(cfg.openai_api_key_env) or "none"
        self.client = OpenAI(base_url=cfg.openai_base_url, api_key=api_key, timeout=cfg.request_timeout_s)

    def stream_batch(self, conversations: list[list[dict]], sampling: list[Sampling]) -> Iterator[Deltas]:
        n = len(conversations)
        for i, (conversation, params) in enumerate(zip(conversations, sampling, strict=True)):
            stream = self.client.chat.completions.create(
                model=self.cfg.model,
                # The conversations are built in OpenAI's message format (rag.prompts.build_messages).
                messages=cast("list[ChatCompletionMessageParam]", conversation),
                max_tokens=params.max_tokens,
                temperature=self._temperature(params),
                stop=list(params.stop) or None,
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

    def stream_batch(self, conversations: list[list[dict]], sampling: list[Sampling]) -> Iterator[Deltas]:
        params = [
            self._sampling(max_tokens=p.max_tokens, stop=list(p.stop), temperature=self._temperature(p))
            for p in sampling
        ]
        outputs = self.llm.chat(conversations, params, use_tqdm=False)
        yield [o.outputs[0].text for o in outputs]


def load_engine(cfg: LLMConfig, num_gpus: float = 0.0) -> Engine:
    if cfg.engine == "transformers":
        return TransformersEngine(cfg, num_gpus)
    if cfg.engine == "vllm":
        return VLLMEngine(cfg, num_gpus)
    return OpenAIEngine(cfg)
