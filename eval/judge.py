"""Optional LLM judge: any OpenAI-compatible endpoint scores each answer from 1 to 5 with a reason."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from eval.rows import ScoredRow

JUDGE_PROMPT = """You grade answers to questions about company filings.
Question: {question}
Reference answer: {gold}
Answer to grade: {answer}

Reply with one line: SCORE: <1-5> REASON: <one sentence>. 5 means the answer agrees with the reference
on every figure and fact, 1 means it is wrong or missing."""

_SCORE = re.compile(r"SCORE:\s*([1-5])\b(?:.*?REASON:\s*(.*))?", re.I | re.S)


def parse_verdict(text: str) -> dict:
    match = _SCORE.search(text)
    if not match:
        return {"score": None, "reason": f"unparsable verdict: {text.strip()[:200]}"}
    return {"score": int(match.group(1)), "reason": (match.group(2) or "").strip()[:500]}


def judge_rows(rows: list[ScoredRow], base_url: str, model: str, api_key: str | None, concurrency: int = 4) -> None:
    """Adds ``judge: {score, reason}`` to every row with an answer; a failed call is recorded, not raised."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key or "none", timeout=300)

    def one(row: ScoredRow) -> None:
        prompt = JUDGE_PROMPT.format(question=row.question, gold=row.gold_answer, answer=row.answer)
        try:
            reply = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], max_tokens=80, temperature=0
            )
            row.judge = parse_verdict(reply.choices[0].message.content or "")
        except Exception as err:
            row.judge = {"score": None, "reason": f"judge call failed: {type(err).__name__}: {err}"}

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, [r for r in rows if r.answer]))
