"""Continuous batching with the real default LLM: joined sequences decode exactly as they would alone.

float32 here, so batched and single decoding must agree token for token (bfloat16 can flip near-ties).
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from rag.batching import ContinuousBatcher
from rag.config import LLMConfig
from rag.engines import load_engine

QUESTIONS = [
    "What is the capital of France?",
    "Write a short poem about the sea and the wind.",
    "List three prime numbers.",
]


def chat(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="module")
def engine():
    return load_engine(LLMConfig(dtype="float32"))


@pytest.fixture(scope="module")
def alone(engine) -> list[str]:
    return [engine.generate(chat(q), 24) for q in QUESTIONS]


def test_prompts_of_different_lengths_decode_together_as_alone(engine, alone):
    limits = [24, 12, 24]
    steps = list(engine.stream_batch([chat(q) for q in QUESTIONS], limits))
    together = ["".join(step[i] or "" for step in steps) for i in range(len(QUESTIONS))]
    assert together[0] == alone[0] and together[2] == alone[2]
    # Twelve tokens are a prefix of the same greedy answer's 24.
    assert together[1] and alone[1].startswith(together[1])
    # A sequence that has finished reads None from then on, while the others go on.
    assert steps[-1][1] is None


def test_a_sequence_outgrowing_the_room_first_reserved_decodes_as_alone(engine):
    # The batch reserves columns for its first sequence (one token here); the second's 80 make it grow mid-decode.
    long_answer = chat("Tell me a long story about a lighthouse keeper and a storm.")
    alone = engine.generate(long_answer, 80)
    steps = list(engine.stream_batch([chat("Hi"), long_answer], [1, 80]))
    assert "".join(step[1] or "" for step in steps) == alone
    assert len(steps) > 70


async def _collect(batcher: ContinuousBatcher, conversation: list[dict], delay: float = 0, keep: int = 0) -> str:
    """The streamed answer, or its first ``keep`` deltas when the caller walks away after them."""
    await asyncio.sleep(delay)
    parts = []
    async with contextlib.aclosing(batcher.stream(conversation, 24)) as deltas:
        async for delta in deltas:
            parts.append(delta)
            if len(parts) == keep:
                break
    return "".join(parts)


def test_requests_join_a_running_batch_and_each_streams_its_own_answer(engine, alone):
    batcher = ContinuousBatcher(engine, max_batch_size=8)

    async def run():
        return await asyncio.gather(*(_collect(batcher, chat(q), 0.4 * i) for i, q in enumerate(QUESTIONS)))

    assert asyncio.run(run()) == alone
    assert batcher.stats.prefills == 3
    # Later arrivals joined while earlier answers were decoding: fewer steps than answering one by one.
    assert batcher.stats.peak_batch >= 2
    assert batcher.stats.steps < sum(len(engine.tokenizer(a)["input_ids"]) for a in alone)


def test_an_abandoned_request_frees_its_place_and_a_bad_one_fails_alone(engine, alone):
    batcher = ContinuousBatcher(engine, max_batch_size=1)
    broken = [{"role": "user"}]  # no content: the chat template cannot render it

    async def run():
        return await asyncio.gather(
            _collect(batcher, chat(QUESTIONS[1]), keep=2),
            _collect(batcher, broken, 0.05),
            _collect(batcher, chat(QUESTIONS[0]), 0.1),
            return_exceptions=True,
        )

    abandoned, failed, answered = asyncio.run(run())
    assert abandoned and alone[1].startswith(abandoned)
    assert isinstance(failed, Exception), failed
    assert answered == alone[0]
    # One place in the batch: the last request could only start once the abandoned one had left it.
    assert batcher.stats.steps <= len(engine.tokenizer(alone[0])["input_ids"]) + 4
