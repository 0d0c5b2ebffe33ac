"""Grounded prompts within a token budget: numbered sources in, answers that cite them as [n] out."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rag.languages import is_chinese
from rag.types import RetrievedChunk

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources below. Cite the sources you use as [1], [2]. "
    "If the sources do not contain the answer, say that you do not know."
)
# The same rules for a question asked in Chinese, so that the answer (and a refusal) comes in the question's language.
SYSTEM_PROMPT_ZH = (
    "你只根据下面编号的资料回答问题，并用 [1]、[2] 标注所用的资料。如果资料里没有答案，就说你不知道。请用中文回答。"
)

# What the figure policy (answers.unsupported_figures, rag.answering) says, in the question's language.
_UNSUPPORTED_WARNING = "\n\nNot found in the sources, check before use: {figures}."
_UNSUPPORTED_WARNING_ZH = "\n\n以下数字在资料中找不到，使用前请核对：{figures}。"
_FIGURES_REFUSAL = (
    "I do not know: the answer drafted from the sources gave figures that they do not hold ({figures}), so it is "
    "withheld."
)
_FIGURES_REFUSAL_ZH = "我不知道：根据资料拟出的回答含有资料中找不到的数字（{figures}），因此不予给出。"

_CITATION = re.compile(r"\[(\d+)\]")
_SOURCES_HEADING = "\n\nSources:\n"
_SOURCES_HEADING_ZH = "\n\n资料：\n"
_SOURCE_LINE = re.compile(r"^\[\d+\] (.+), p\. (\d+)$", re.M)  # a line of source_list: "[n] " + source_label
# Tokens a chat template adds: per message (role markers), once (generation prompt), between sources.
# Generous for the templates of common instruct models, so the budget holds without rendering twice.
_MESSAGE_TOKENS = 8
_TEMPLATE_TOKENS = 16
_SEPARATOR_TOKENS = 2
_MIN_SOURCE_TOKENS = 24  # a trimmed source shorter than this says nothing
# No token spans more characters than this: a turn this many times longer than the budget cannot fit, and is
# dropped without being tokenized (a 5 MB message must not cost seconds of tokenizer time).
_MAX_CHARS_PER_TOKEN = 32


def source_label(chunk: RetrievedChunk) -> str:
    return f"{chunk.file}, p. {chunk.page}"


def _source(i: int, chunk: RetrievedChunk, text: str) -> str:
    return f"[{i}] ({source_label(chunk)})\n{text}"


def _fit_text(text: str, tokens: int, count_tokens: Callable[[str], int]) -> str:
    """The longest prefix of ``text`` (cut at a word) that counts at most ``tokens``."""
    low, high = 0, len(text)
    while low < high:  # binary search on characters: a dozen tokenizer calls for a 1,200-character source
        mid = (low + high + 1) // 2
        if count_tokens(text[:mid]) <= tokens:
            low = mid
        else:
            high = mid - 1
    cut = text[:low]
    return cut[: cut.rfind(" ")] if " " in cut and low < len(text) else cut


def build_messages(
    question: str,
    chunks: Sequence[RetrievedChunk],
    history: Sequence[dict],
    count_tokens: Callable[[str], int],
    budget: int,
    instructions: str = "",
    max_chars_per_source: int = 1200,
) -> list[dict]:
    """Chat messages for the LLM within ``budget`` tokens, built so that the question is never the part that is lost.

    The rules (in Chinese for a Chinese question), the client's own ``instructions`` (its system message, after the
    rules) and the
    question are always kept. Earlier turns are kept newest first within a quarter of what remains
    (the follow-up the question leans on is the newest); sources fill the rest in rank order, the
    last one trimmed to fit; a source or turn that does not fit is dropped whole.
    """
    chinese = is_chinese(question)
    own = SYSTEM_PROMPT_ZH if chinese else SYSTEM_PROMPT
    heading = _SOURCES_HEADING_ZH if chinese else _SOURCES_HEADING
    rules = f"{own}\n\n{instructions.strip()}" if instructions.strip() else own
    messages = 2 + len(history)
    left = budget - _TEMPLATE_TOKENS - _MESSAGE_TOKENS * messages
    left -= count_tokens(rules) + count_tokens(heading) + count_tokens(question)
    kept: list[dict] = []
    history_budget = max(0, left) // 4
    for turn in reversed(history):
        if len(turn["content"]) > history_budget * _MAX_CHARS_PER_TOKEN:
            break
        cost = count_tokens(turn["content"])
        if cost > history_budget:
            break
        history_budget -= cost
        left -= cost
        kept.insert(0, turn)
    sources = []
    for i, chunk in enumerate(chunks, 1):
        text = " ".join(chunk.text.split())[:max_chars_per_source]
        cost = count_tokens(_source(i, chunk, text)) + _SEPARATOR_TOKENS
        if cost > left:
            room = left - count_tokens(_source(i, chunk, "")) - _SEPARATOR_TOKENS
            if room >= _MIN_SOURCE_TOKENS:
                sources.append(_source(i, chunk, _fit_text(text, room, count_tokens)))
            break
        left -= cost
        sources.append(_source(i, chunk, text))
    system = f"{rules}{heading}" + "\n\n".join(sources)
    return [{"role": "system", "content": system}, *kept, {"role": "user", "content": question}]


def unsupported_warning(question: str, figures: Sequence[str]) -> str:
    """The sentence that follows an answer whose ``figures`` its sources do not hold."""
    return _naming(figures, _UNSUPPORTED_WARNING_ZH if is_chinese(question) else _UNSUPPORTED_WARNING)


def figures_refusal(question: str, figures: Sequence[str]) -> str:
    """What replaces such an answer where the policy refuses it."""
    return _naming(figures, _FIGURES_REFUSAL_ZH if is_chinese(question) else _FIGURES_REFUSAL)


def _naming(figures: Sequence[str], template: str) -> str:
    return template.format(figures=", ".join(dict.fromkeys(figures)))


def cited_indices(answer: str, n_sources: int) -> list[int]:
    """1-based source numbers the answer cites, in first-seen order, ignoring numbers with no source."""
    seen: list[int] = []
    for match in _CITATION.finditer(answer):
        i = int(match.group(1))
        if 1 <= i <= n_sources and i not in seen:
            seen.append(i)
    return seen


def source_list(answer: str, chunks: Sequence[RetrievedChunk]) -> str:
    """What follows an answer so plain-text clients see its citations: the file and page of each source it cited
    (of every source when it cited none). A stream sends it after the answer's last token, so the answer's own text is
    never changed, trailing spaces included: streamed and whole answers read the same."""
    if not chunks:
        return ""
    cited = cited_indices(answer, len(chunks)) or list(range(1, len(chunks) + 1))
    lines = "\n".join(f"[{i}] {source_label(chunks[i - 1])}" for i in cited)
    return f"{_SOURCES_HEADING}{lines}"


def split_source_list(text: str) -> tuple[str, list[tuple[str, int]]]:
    """A whole answer as ``source_list`` ended it: the model's words, and the (file, page) of each source listed."""
    answer, heading, sources = text.rpartition(_SOURCES_HEADING)
    if not heading:
        return text, []
    return answer, [(m.group(1), int(m.group(2))) for m in _SOURCE_LINE.finditer(sources)]
