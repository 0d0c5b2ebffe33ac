"""The scored rows summed up (overall, per split, question type and chunk type) and written as the files people read:
report.json, report.md, rows.jsonl and plots."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import mean
from typing import Any

from eval.rows import ScoredRow
from eval.scoring import K_VALUES


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(mean(values), 4) if values else None


def _percentiles(values: list[float | None]) -> dict[str, float]:
    known = sorted(v for v in values if v is not None)
    if not known:
        return {}
    pick = lambda q: known[min(len(known) - 1, round(q / 100 * (len(known) - 1)))]  # noqa: E731
    return {"p50": round(pick(50), 3), "p95": round(pick(95), 3), "p99": round(pick(99), 3)}


def _summary(group: list[ScoredRow]) -> dict[str, Any]:
    out: dict[str, Any] = {"questions": len(group), "retrieval": {}}
    for retriever in sorted({k for r in group for k in r.retrieval}):
        scores = [r.retrieval.get(retriever, {}) for r in group]
        keys = sorted({key for s in scores for key, v in s.items() if isinstance(v, float)})
        out["retrieval"][retriever] = {key: _mean(s.get(key) for s in scores) for key in keys}
    answered = [r.answer_scores for r in group if r.answer_scores]
    if answered:
        out["answers"] = {
            key: _mean(a.get(key) for a in answered)
            for key in (
                "token_f1",
                "number_recall",
                "citation_precision",
                "refusal",
                "figures_supported",
                "figures_unsupported",
                "all_figures_supported",
            )
            if any(key in a for a in answered)
        }
    judged = [r.judge["score"] for r in group if r.judge]
    if judged:
        out.setdefault("answers", {})["judge_score"] = _mean(judged)
    return out


_GROUPS: dict[str, Callable[[ScoredRow], str]] = {
    "by_split": lambda r: r.split,
    "by_question_type": lambda r: r.question_type,
    "by_chunk_type": lambda r: r.chunk_type,
}


def aggregate(rows: list[ScoredRow]) -> dict[str, Any]:
    """Means over the questions that have each score, overall and per split, question type and chunk type."""
    report: dict[str, Any] = {"overall": _summary(rows)}
    for target, key in _GROUPS.items():
        groups = defaultdict(list)
        for r in rows:
            groups[key(r)].append(r)
        report[target] = {name: _summary(group) for name, group in sorted(groups.items())}
    report["failures"] = sum(bool(r.error) for r in rows)
    latency = {
        "latency": _percentiles([r.latency_s for r in rows]),
        "retrieve": _percentiles([r.retrieve_s for r in rows]),
        "generate": _percentiles([r.generate_s for r in rows]),
        "check": _percentiles([r.check_s for r in rows]),
    }
    report["latency_s"] = {k: v for k, v in latency.items() if v}
    return report


def _table(title: str, summary: dict) -> list[str]:
    lines = [f"### {title} ({summary['questions']} questions)", ""]
    kinds = list(summary["retrieval"])
    if kinds:
        cols = [
            c
            for c in (
                "hit@1",
                "hit@5",
                "recall@1",
                "recall@5",
                "recall@10",
                "mrr",
                "page_hit@1",
                "page_hit@5",
                "page_recall@5",
                "page_mrr",
            )
            if any(c in summary["retrieval"][k] for k in kinds)
        ]
        lines += ["| retriever | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
        for kind in kinds:
            values = [summary["retrieval"][kind].get(c) for c in cols]
            lines.append(f"| {kind} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in values) + " |")
        lines.append("")
    if "answers" in summary:
        a = summary["answers"]
        names = {
            "token_f1": "answer token F1",
            "number_recall": "numbers recalled",
            "citation_precision": "citation precision",
            "refusal": "refusal rate",
            "figures_supported": "figures supported",
            "figures_unsupported": "figures unsupported",
            "all_figures_supported": "answers with every figure supported",
            "judge_score": "judge (1-5)",
        }
        keys = [k for k in names if k in a]
        lines += [
            "| " + " | ".join(names[k] for k in keys) + " |",
            "|" + " ---: |" * len(keys),
            "| " + " | ".join("-" if a[k] is None else f"{a[k]:.3f}" for k in keys) + " |",
            "",
        ]
    return lines


def write_report(out_dir: Path, rows: list[ScoredRow], meta: dict) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, **aggregate(rows)}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    with (out_dir / "rows.jsonl").open("w") as f:
        for row in rows:
            f.write(json.dumps(row.to_json()) + "\n")
    lines = [
        f"# Evaluation: {meta['dataset']}",
        "",
        f"{len(rows)} questions, index `{meta['index']}`, {meta['run']} run, {meta['seconds']:.0f} s, "
        f"{report['failures']} failed (see rows.jsonl).",
        "",
    ]
    lines += _table("All questions", report["overall"])
    for group in ("by_split", "by_question_type", "by_chunk_type"):
        for name, summary in report[group].items():
            lines += _table(f"{group.removeprefix('by_').replace('_', ' ')}: {name}", summary)
    if report["latency_s"]:
        lines += ["### Latency (s)", "", "| stage | p50 | p95 | p99 |", "| --- | ---: | ---: | ---: |"]
        lines += [f"| {k} | {v['p50']} | {v['p95']} | {v['p99']} |" for k, v in report["latency_s"].items()]
        lines.append("")
    lines += ["![recall@k](recall_at_k.png)", ""]
    (out_dir / "report.md").write_text("\n".join(lines))
    _plot(out_dir, report, rows)
    return report


@contextmanager
def figure(path: Path, size: tuple[float, float] = (6, 4)) -> Iterator:
    """Axes to draw on; the figure is laid out and saved to ``path`` on exit (headless: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    yield ax
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot(out_dir: Path, report: dict, rows: list[ScoredRow]) -> None:
    with figure(out_dir / "recall_at_k.png") as ax:
        for kind, scores in report["overall"]["retrieval"].items():
            ks = [k for k in K_VALUES if f"recall@{k}" in scores]
            ax.plot(ks, [scores[f"recall@{k}"] for k in ks], "o-", label=kind)
        ax.set_xlabel("k")
        ax.set_ylabel("gold-file recall@k")
        ax.set_ylim(0, 1)
        ax.set_title("Retrieval: gold-file recall@k")
        ax.legend()
    latencies = [r.latency_s for r in rows if r.latency_s]
    if latencies:
        with figure(out_dir / "latency.png") as ax:
            ax.hist(latencies, bins=30)
            ax.set_xlabel("request latency (s)")
            ax.set_ylabel("questions")
            ax.set_title("Online latency")
