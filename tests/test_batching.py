"""Continuous batching with the real default LLM: joined sequences decode exactly as they would alone.

float32 here, so batched and single decoding must agree token for token (bfloat16 can flip near-ties).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import pytest
import torch

from rag.config import LLMConfig
from rag.llm import decoding
from rag.llm.batching import ContinuousBatcher
from rag.llm.cuda_graphs import DecodeGraphs
from rag.llm.decoding import DecodeBatch
from rag.llm.engines import load_engine
from rag.types import DeadlineExceeded, DecodeLoopStopped, Sampling, Usage

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
    limits = [Sampling(24), Sampling(12), Sampling(24)]
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
    steps = list(engine.stream_batch([chat("Hi"), long_answer], [Sampling(1), Sampling(80)]))
    assert "".join(step[1] or "" for step in steps) == alone
    assert len(steps) > 70


async def _collect(
    batcher: ContinuousBatcher,
    conversation: list[dict],
    delay: float = 0,
    keep: int = 0,
    tokens: int = 24,
    arrivals: list | None = None,
) -> str:
    """The streamed answer, or its first ``keep`` deltas when the caller walks away after them; ``arrivals`` gets the
    time each delta came."""
    await asyncio.sleep(delay)
    parts = []
    async with contextlib.aclosing(batcher.stream(conversation, Sampling(tokens))) as deltas:
        async for delta in deltas:
            if isinstance(delta, Usage):
                continue
            parts.append(delta)
            if arrivals is not None:
                arrivals.append(time.monotonic())
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


def test_buffers_stay_the_size_of_what_is_live_while_requests_keep_joining(engine):
    """Sequences join and leave without the batch ever running empty: the columns in use only move right, and the
    buffers must follow the live width, not the total number of steps run."""
    batch, steps, widest = DecodeBatch(), 0, 0
    prompts = [engine.encode(chat(q)) for q in QUESTIONS]
    for i in range(40):
        while len(batch) < 2:  # a newcomer whenever one has finished
            prefill = engine.start(prompts[i % len(prompts)], Sampling(6))
            engine.prefill(prefill, prefill.remaining)
            batch.add(prefill)
        engine.decode(batch)
        steps += 1
        batch.drop_finished()
        widest = max(widest, batch.columns)
    # Some 120 steps ran; the buffers never held much more than two prompts and their answers, plus the spare room.
    longest = max(map(len, prompts)) + 6
    assert steps >= 40 and widest <= 2 * longest + 64 + 1, (steps, widest)


def test_fixed_windows_and_prompts_prefilled_together_answer_as_alone(engine, alone, monkeypatch):
    """The GPU's path, run eagerly: steps over fixed windows of fixed buffers (what CUDA graphs replay, padding rows
    included) and whole prompts prefilled in one padded pass. A burst, then a latecomer into the emptied batch."""
    monkeypatch.setattr(engine, "graphs", DecodeGraphs(engine.model, record=False))
    monkeypatch.setattr(engine, "prefills_together", True)
    batcher = ContinuousBatcher(engine, max_batch_size=5, prefill_tokens=4096)

    async def run(delays):
        return await asyncio.gather(
            *(_collect(batcher, chat(q), delay) for q, delay in zip(QUESTIONS, delays, strict=True))
        )

    assert asyncio.run(run([0, 0, 0])) == alone
    # All three joined in one pass before the first step: no more steps than the longest answer's tokens.
    assert batcher.stats.steps <= max(len(engine.tokenizer(a)["input_ids"]) for a in alone) + 1
    assert asyncio.run(run([0, 0.3, 0.6])) == alone  # the emptied batch starts over in the same buffers


def decode_alone(engine, ids: list[int], tokens: int) -> str:
    prefill = engine.start(ids, Sampling(tokens))
    text = engine.prefill(prefill, prefill.remaining)[1]
    batch = DecodeBatch()
    batch.add(prefill)
    while batch.drop_finished():
        text += "".join(delta for _, delta in engine.decode(batch))
    return text


def test_fixed_buffers_move_the_span_back_in_place_and_keep_their_addresses(engine, monkeypatch):
    """Sequences keep joining a fixed batch: when the span reaches the buffers' edge it moves back left in place, so
    graphs recorded over them stay valid; every answer is still the one given alone."""
    monkeypatch.setattr(decoding, "_FIXED_SPARE_COLUMNS", 8)  # the shift comes after a few dozen steps, not 256
    # Bare short prompts, no chat template: narrow buffers, soon full.
    prompts = [engine.tokenizer.encode(text) for text in ("The sea is", "Prime numbers are", "Once upon a time")]
    alone = [decode_alone(engine, ids, 6) for ids in prompts]
    windows = DecodeGraphs(engine.model, record=False)
    batch, texts, done, steps = DecodeBatch(4, fixed=True, columns=max(map(len, prompts)) + 6), {}, [], 0
    while len(done) < 16:
        while len(batch) < 2:  # a newcomer whenever one has finished
            i = (len(done) + len(batch)) % len(prompts)
            prefill = engine.start(prompts[i], Sampling(6))
            texts[id(prefill.sequence)] = [i, engine.prefill(prefill, prefill.remaining)[1]]
            batch.add(prefill)
        if steps == 0:
            addresses = batch.cache.layers[0]._keys.data_ptr(), batch.mask.data_ptr()
            first_allocation = batch.generation
        with torch.inference_mode():
            next_ids = windows.step(batch).argmax(-1)
            batch.stepped(next_ids)
        for sequence, delta in zip(batch.sequences, engine._advance(batch.sequences, next_ids.tolist()), strict=True):
            texts[id(sequence)][1] += delta
        done += [texts.pop(id(s)) for s in batch.sequences if s.done]
        batch.drop_finished()
        steps += 1
    # More steps than the buffers have columns: the span went back left, and the buffers were allocated once.
    assert steps > batch.capacity[1] and batch.generation == first_allocation
    assert (batch.cache.layers[0]._keys.data_ptr(), batch.mask.data_ptr()) == addresses
    assert all(text == alone[i] for i, text in done), done


def test_a_burst_of_long_prompts_does_not_stall_a_running_answer(engine, alone):
    """With a prefill budget of 16 tokens a step, the running answer keeps streaming while a 300-token prompt goes
    in."""
    batcher = ContinuousBatcher(engine, max_batch_size=4, prefill_tokens=16)
    long_question = "Summarise this: " + "The harbour master logs every ship that enters the bay. " * 25
    running, newcomer = [], []

    async def run():
        return await asyncio.gather(
            _collect(batcher, chat(QUESTIONS[1]), tokens=60, arrivals=running),
            _collect(batcher, chat(long_question), delay=0.3, keep=1, arrivals=newcomer),
        )

    answer, _ = asyncio.run(run())
    assert len(engine.encode(chat(long_question))) > 300
    assert answer.startswith(alone[1])  # chunked prefill of the newcomer changes nothing for the running answer
    newcomer_joined = newcomer[0]
    during = [t for t in running if t < newcomer_joined and t > running[0] + 0.3]
    assert len(during) >= 5, (len(during), batcher.stats)


def test_chunked_prefill_answers_as_a_whole_prefill(engine, alone):
    batcher = ContinuousBatcher(engine, max_batch_size=4, prefill_tokens=5)

    async def run():
        return await asyncio.gather(*(_collect(batcher, chat(q), 0.2 * i) for i, q in enumerate(QUESTIONS)))

    assert asyncio.run(run()) == alone
    assert batcher.stats.prefill_tokens == sum(len(engine.encode(chat(q))) for q in QUESTIONS)


def test_streamed_text_is_the_tokens_decoded_at_once_multibyte_included(engine):
    """Each step decodes only its new token; the concatenation must equal decoding the whole answer."""
    text = "Prix: 5 € — naïve café, 价格 上涨 🚀🌊 and ☃ done."
    tokens = engine.tokenizer.encode(text, add_special_tokens=False)
    sequence = engine.start([], Sampling(len(tokens) + 1)).sequence
    streamed = "".join(engine._advance([sequence], [token])[0] for token in tokens)
    assert streamed.encode() == engine.tokenizer.decode(tokens, skip_special_tokens=True).encode() == text.encode()


def test_stop_sequences_end_the_answer_before_them(engine, alone):
    # A stop that spans tokens: the text before it goes out, the stop itself never does.
    cut = len(alone[1]) // 3
    stop = alone[1][cut : cut + 6]
    steps = list(engine.stream_batch([chat(QUESTIONS[1])], [Sampling(24, stop=(stop, "never appears"))]))
    assert "".join(step[0] or "" for step in steps) == alone[1][: alone[1].index(stop)]

    batcher = ContinuousBatcher(engine, max_batch_size=2)

    async def usage(sampling: Sampling) -> Usage:
        items = [item async for item in batcher.stream(chat(QUESTIONS[1]), sampling)]
        return items[-1]

    stopped, capped = asyncio.run(usage(Sampling(24, stop=(stop,)))), asyncio.run(usage(Sampling(5)))
    assert stopped.finish_reason == "stop" and 0 < stopped.completion_tokens < 24
    assert capped == Usage(len(engine.encode(chat(QUESTIONS[1]))), 5, "length")


def test_a_request_past_its_deadline_fails_and_leaves_the_batch(engine, alone):
    batcher = ContinuousBatcher(engine, max_batch_size=2, deadline_s=0.5)
    with pytest.raises(DeadlineExceeded, match=r"deadline of 0\.5 s"):
        asyncio.run(_collect(batcher, chat("Tell me a long story about a lighthouse keeper and a storm."), tokens=400))
    assert batcher.stats.timed_out == 1
    batcher.deadline_s = 60
    assert asyncio.run(_collect(batcher, chat(QUESTIONS[0]))) == alone[0]
    deadline = time.monotonic() + 10  # the loop counts what it holds after the step that sent the answer's end
    while batcher.stats.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert batcher.stats.running == 0


def test_a_dead_decode_loop_fails_what_it_held_and_says_so(engine, monkeypatch):
    batcher = ContinuousBatcher(engine, max_batch_size=2)
    batcher.check()  # alive

    def die(batch):  # anything the loop does not survive: it is not an Exception, so nothing catches it per request
        raise SystemExit("decode thread killed")

    monkeypatch.setattr(engine, "decode", die)
    started = time.monotonic()
    with pytest.raises(DecodeLoopStopped, match="decode thread killed"):
        asyncio.run(_collect(batcher, chat(QUESTIONS[0])))
    assert time.monotonic() - started < 10
    with pytest.raises(DecodeLoopStopped):
        batcher.check()  # what the Serve replica's check_health calls: Serve replaces the replica
    with pytest.raises(DecodeLoopStopped):
        asyncio.run(_collect(batcher, chat(QUESTIONS[0])))


def test_kv_buffers_live_in_mappings_that_leave_with_them():
    """On the CPU each buffer is a mapping of its own, gone when the tensor goes: never left resident in malloc's
    heaps."""
    from rag.llm.host_memory import mapped_zeros

    def mappings_of(size: int) -> int:
        with open("/proc/self/maps") as maps:
            spans = [line.split()[0].split("-") for line in maps]
        return sum(1 for start, end in spans if int(end, 16) - int(start, 16) == size)

    like = torch.zeros(1, dtype=torch.bfloat16)
    shape = (16, 3, 2048, 64)  # 12 MB: below the 32 MB up to which glibc's heaps would take it
    size = math.prod(shape) * 2
    before = mappings_of(size)
    buffer = mapped_zeros(shape, like)
    assert buffer.shape == shape and buffer.dtype == torch.bfloat16 and not buffer.any()
    buffer[3, 1, 7] = 1
    assert mappings_of(size) == before + 1 and buffer.sum().item() == 64
    del buffer
    assert mappings_of(size) == before
