"""Scores per question, aggregates by retrieval kind, question type and chunk type, and the files people read."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from statistics import mean

from eval import scoring
from eval.datasets import Question
from rag.prompts import split_source_list


def cited_files(answer: str) -> list[str]:
    """Files named in the answer's source list (what it cited, or everything it was grounded in)."""
    return [file for file, _ in split_source_list(answer)[1]]


def score_row(q: Question, row: dict, indexed_files: set[str], answer_kind: str) -> dict:
    gold_in_index = {f for f in indexed_files if q.is_gold_file(f)}
    scored = {
        "id": q.id,
        "question": q.question,
        "gold_answer": q.answer,
        "gold_files": q.gold_files,
        "question_type": q.question_type,
        "chunk_type": q.chunk_type,
        "split": q.split,
        "answer": row.get("answer", ""),
        "filters": row.get("filters", {}),
        "error": row.get("error", "") or ("" if gold_in_index else "no gold file is in the index"),
        "latency_s": row.get("latency_s"),
        "retrieve_s": row.get("retrieve_s"),
        "generate_s": row.get("generate_s"),
        "retrieval": {},
    }
    for kind, hits in (row.get("retrieved") or {}).items():
        files = [h["file"] for h in hits]
        pages = [f"{h['file']}#{h['page']}" for h in hits]
        scores = {"files": files, "pages": [h["page"] for h in hits]}
        if gold_in_index:
            for k in scoring.K_VALUES:
                scores[f"recall@{k}"] = scoring.recall_at_k(files, q.is_gold_file, len(gold_in_index), k)
                scores[f"hit@{k}"] = scoring.hit_at_k(files, q.is_gold_file, k)
            scores["mrr"] = scoring.reciprocal_rank(files, q.is_gold_file)
        if q.gold_pages:
            gold = {f"{f}#{p}" for f, p in q.gold_pages}
            for k in scoring.K_VALUES:
                scores[f"page_recall@{k}"] = scoring.recall_at_k(pages, gold.__contains__, len(gold), k)
                scores[f"page_hit@{k}"] = scoring.hit_at_k(pages, gold.__contains__, k)
            scores["page_mrr"] = scoring.reciprocal_rank(pages, gold.__contains__)
        scored["retrieval"][kind] = scores
    if scored["answer"]:
        answer, gold = scoring.strip_sources(scored["answer"]), scoring.strip_sources(q.answer)
        scored["answer_scores"] = {
            "token_f1": scoring.token_f1(answer, gold),
            "number_recall": scoring.number_recall(answer, gold),
            "citation_precision": scoring.citation_precision(cited_files(scored["answer"]), q.is_gold_file),
            "refusal": float(scoring.is_refusal(scored["answer"])),
            "answered_from": answer_kind,
        }
    return scored


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(mean(values), 4) if values else None


def _percentiles(values: list[float]) -> dict:
    values = sorted(v for v in values if v is not None)
    if not values:
        return {}
    pick = lambda q: values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]  # noqa: E731
    return {"p50": round(pick(50), 3), "p95": round(pick(95), 3), "p99": round(pick(99), 3)}


def aggregate(rows: list[dict]) -> dict:
    """Means over the questions that have each score, overall and per question type and chunk type."""

    def summarise(group: list[dict]) -> dict:
        out: dict = {"questions": len(group), "retrieval": {}}
        kinds = sorted({k for r in group for k in r["retrieval"]})
        for kind in kinds:
            keys = sorted(
                {key for r in group for key, v in r["retrieval"].get(kind, {}).items() if isinstance(v, float)}
            )
            out["retrieval"][kind] = {key: _mean(r["retrieval"].get(kind, {}).get(key) for r in group) for key in keys}
        answered = [r["answer_scores"] for r in group if "answer_scores" in r]
        if answered:
            out["answers"] = {
                key: _mean(a[key] for a in answered)
                for key in ("token_f1", "number_recall", "citation_precision", "refusal")
            }
        judged = [r["judge"]["score"] for r in group if r.get("judge")]
        if judged:
            out.setdefault("answers", {})["judge_score"] = _mean(judged)
        return out

    report = {"overall": summarise(rows), "by_split": {}, "by_question_type": {}, "by_chunk_type": {}}
    for field, target in (
        ("split", "by_split"),
        ("question_type", "by_question_type"),
        ("chunk_type", "by_chunk_type"),
    ):
        groups = defaultdict(list)
        for r in rows:
            groups[r[field]].append(r)
        report[target] = {name: summarise(group) for name, group in sorted(groups.items())}
    report["failures"] = sum(bool(r["error"]) for r in rows)
    latency = {
        stage: _percentiles([r.get(f"{stage}_s") for r in rows]) for stage in ("latency", "retrieve", "generate")
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


def write_report(out_dir: Path, rows: list[dict], meta: dict) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, **aggregate(rows)}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    with (out_dir / "rows.jsonl").open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    lines = [
        f"# Evaluation: {meta['dataset']}",
        "",
        f"{len(rows)} questions, index `{meta['index']}`, mode {meta['mode']}, {meta['seconds']:.0f} s, "
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


def _plot(out_dir: Path, report: dict, rows: list[dict]) -> None:
    with figure(out_dir / "recall_at_k.png") as ax:
        for kind, scores in report["overall"]["retrieval"].items():
            ks = [k for k in scoring.K_VALUES if f"recall@{k}" in scores]
            ax.plot(ks, [scores[f"recall@{k}"] for k in ks], "o-", label=kind)
        ax.set_xlabel("k")
        ax.set_ylabel("gold-file recall@k")
        ax.set_ylim(0, 1)
        ax.set_title("Retrieval: gold-file recall@k")
        ax.legend()
    latencies = [r["latency_s"] for r in rows if r.get("latency_s")]
    if latencies:
        with figure(out_dir / "latency.png") as ax:
            ax.hist(latencies, bins=30)
            ax.set_xlabel("request latency (s)")
            ax.set_ylabel("questions")
            ax.set_title("Online latency")
