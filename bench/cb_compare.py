"""Our continuous batching (rag.llm.batching) against transformers' own (``generate_batch``, its
ContinuousBatchingManager with paged attention), on the same model, prompts and machine.

    python -m bench.cb_compare --index INDEX_DIR [--levels 1 4 16] [--repeat 3] [--max-tokens 64] [--out bench/results]

The prompts are the service's: the benchmark questions (bench/harness.py) retrieved against the index
and built to the token budget by the same code the generator replica runs. At each level c, c
prompts arrive at once and are answered greedily; the figure is generated tokens per second over
the wall time, as the median and range of --repeat runs. Both run in this process on the thread the
model was loaded on (transformers' manager then steps on a thread of its own, as it always does).
Writes cb_compare.json and cb_compare.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from bench.harness import QUESTIONS, plot_spread, spread
from bench.paths import RESULTS


def conversations(index: str, engine) -> list[list[dict]]:
    from rag.answering import LocalRetriever
    from rag.config import Settings
    from rag.search import Searcher
    from rag.types import AnswerRequest

    retriever = LocalRetriever(Searcher.from_index_dir(index, Settings()))
    found = [asyncio.run(retriever.search(AnswerRequest(question))) for question in QUESTIONS]
    return [engine.prompt(question, f.chunks) for question, f in zip(QUESTIONS, found, strict=True)]


def ours(engine, thread, max_batch_size: int):
    """Answers a batch of prompts with one ContinuousBatcher, whose decode loop then holds ``thread`` for good."""
    from rag.llm.batching import ContinuousBatcher
    from rag.types import Sampling, Usage

    batcher = ContinuousBatcher(engine, max_batch_size, thread=thread)

    def run(batch: list[list[dict]], max_tokens: int) -> int:
        return asyncio.run(answer_all(batch, max_tokens))

    async def answer(conversation: list[dict], max_tokens: int) -> int:
        items = [item async for item in batcher.stream(conversation, Sampling(max_tokens))]
        return next(i for i in items if isinstance(i, Usage)).completion_tokens

    async def answer_all(batch: list[list[dict]], max_tokens: int) -> int:
        return sum(await asyncio.gather(*(answer(c, max_tokens) for c in batch)))

    return run


def library(engine, thread, max_batch_size: int):
    """Answers a batch of prompts with transformers' generate_batch, run on ``thread``; its manager sizes its own
    batches and paged cache (``max_batch_size`` is ours to set only)."""
    from transformers import GenerationConfig

    def run(batch: list[list[dict]], max_tokens: int) -> int:
        ids = [engine.encode(conversation) for conversation in batch]
        config = GenerationConfig(
            max_new_tokens=max_tokens,
            do_sample=False,
            eos_token_id=sorted(engine.stop_ids),
            pad_token_id=engine.tokenizer.pad_token_id or engine.tokenizer.eos_token_id,
        )
        outputs = thread.submit(engine.model.generate_batch, ids, config, progress_bar=False).result()
        return sum(len(out.generated_tokens) for out in outputs.values())

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from rag.config import LLMConfig
    from rag.llm.engines import load_engine
    from rag.model_thread import ModelThread

    results: dict = {"max_tokens": args.max_tokens, "repeat": args.repeat, "levels": {}}
    for name, contender in (("ours", ours), ("transformers", library)):
        # A fresh model per contender: transformers' manager switches the model's attention to its paged kernels.
        thread = ModelThread(name)
        engine = thread.submit(load_engine, LLMConfig()).result()
        prompts = conversations(args.index, engine)
        run = contender(engine, thread, max(args.levels))
        run(prompts[:1], 4)  # warm-up
        for c in args.levels:
            batch = [prompts[i % len(prompts)] for i in range(c)]
            rates = []
            for r in range(args.repeat):
                started = time.perf_counter()
                tokens = run(batch, args.max_tokens)
                seconds = time.perf_counter() - started
                rates.append(tokens / seconds)
                print(
                    f"{name} c={c} run {r + 1}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.1f} tok/s",
                    flush=True,
                )
            results["levels"].setdefault(str(c), {})[name] = {"tokens_per_s": spread(rates), "runs": rates}
    for figures in results["levels"].values():
        figures["ours_over_transformers"] = (
            figures["ours"]["tokens_per_s"]["median"] / figures["transformers"]["tokens_per_s"]["median"]
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cb_compare.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "cb_compare.png")
    for c, figures in results["levels"].items():
        print(
            f"c={c}: ours {figures['ours']['tokens_per_s']['median']:.1f} tok/s, transformers "
            f"{figures['transformers']['tokens_per_s']['median']:.1f} tok/s: {figures['ours_over_transformers']:.2f}x"
        )


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted(results["levels"], key=int)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in ("ours", "transformers"):
        figures = [results["levels"][c][name]["tokens_per_s"] for c in levels]
        plot_spread(ax, [int(c) for c in levels], figures, name)
    ax.set_xscale("log", base=2)
    ax.set_xticks([int(c) for c in levels], levels)
    ax.set_xlabel("prompts arriving together")
    ax.set_ylabel("generated tokens / s")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Continuous batching, SmolLM2-135M on CPU, {results['max_tokens']} new tokens")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
