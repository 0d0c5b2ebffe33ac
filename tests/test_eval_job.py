"""End-to-end batch evaluation: real questions over two real filings, on the Ray cluster, with the real models."""

import json

import pytest

from eval.datasets import load_dataset
from eval.job import run_eval
from rag.config import load_settings


def test_batch_eval_over_real_questions(small_index, sec_docs, tmp_path):
    questions = [
        q
        for q in load_dataset(sec_docs.parent / "qna_data.csv")
        if q.gold_files in (["*2023 Q3 AAPL*"], ["*2023 Q2 AAPL*"])
    ]
    chosen = questions[:3]
    dataset = tmp_path / "q.jsonl"
    with dataset.open("w") as f:
        for q in chosen:
            f.write(
                json.dumps(
                    {
                        "question": q.question,
                        "answer": q.answer,
                        "gold_files": q.gold_files,
                        "question_type": q.question_type,
                        "chunk_type": q.chunk_type,
                    }
                )
                + "\n"
            )
        # A gold file that is not in the index is recorded and counted, not fatal.
        f.write(json.dumps({"question": "What did Intel report?", "answer": "x", "gold_files": ["*INTC*"]}) + "\n")
        # Filters given with a question are applied inside every mode's search.
        f.write(
            json.dumps(
                {
                    "question": "What were total net sales?",
                    "answer": "x",
                    "gold_files": ["*2023 Q2 AAPL*"],
                    "filters": {"fiscal_quarter": 2},
                }
            )
            + "\n"
        )
    out = tmp_path / "report"
    # Answers from two sources: the scores are of retrieval's own depth, and a shorter prompt answers sooner.
    settings = load_settings(
        None, ["llm.max_new_tokens=12", "serve.top_k=2", "eval.pool.actors=1", "eval.pool.num_cpus=1"]
    )
    report = run_eval(dataset, small_index, out, settings)

    assert report["meta"]["questions"] == 5
    assert report["failures"] == 1
    overall = report["overall"]
    assert set(overall["retrieval"]) == {"dense", "bm25", "hybrid"}
    for scores in overall["retrieval"].values():
        assert 0 <= scores["mrr"] <= 1 and scores["recall@1"] <= scores["recall@10"]
    # Each of the three answerable questions names one filing; dense retrieval finds it in the top 10.
    assert overall["retrieval"]["dense"]["hit@10"] == 1.0
    assert 0 <= overall["answers"]["token_f1"] <= 1
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all(r["answer"] for r in rows)
    # Each answer's figures were checked: a share per answer that has any, and the check's own time.
    for row in rows:
        scores = row["answer_scores"]
        if scores["figures_supported"] is not None:  # the rest are cut off by the token limit
            assert 0 <= scores["figures_supported"] + scores["figures_unsupported"] <= 1
            assert scores["all_figures_supported"] == float(scores["figures_supported"] == 1)
        else:
            assert scores["all_figures_supported"] is None
    assert report["latency_s"]["check"]["p95"] < 1
    assert "gold file" in rows[3]["error"]
    assert rows[4]["filters"] == {"fiscal_quarter": [2]}
    assert all(set(r["files"]) == {"2023 Q2 AAPL.pdf"} for r in rows[4]["retrieval"].values())
    md = (out / "report.md").read_text()
    assert "| dense |" in md and "| bm25 |" in md and "| hybrid |" in md
    assert (out / "recall_at_k.png").stat().st_size > 0


@pytest.mark.slow  # two ingestions of one filing end to end: about a minute on two cores
def test_sweep_reuses_indexes_and_compares_points(ray_cluster, sec_docs, tmp_path):
    from eval.sweep import run_sweep
    from tests.pdf_factory import copy_docs

    docs = copy_docs(["2023 Q3 AAPL.pdf"], sec_docs, tmp_path / "docs", pages=12)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        f"docs: {tmp_path / 'not here'}\ngenerate: false\n"
        "grid:\n  chunking.chunk_size: [600]\n  retrieval.mode: [dense, bm25]\n"
        "points:\n  no headers: {chunking.contextual_headers: false, retrieval.mode: dense}\n"
    )
    dataset = tmp_path / "q.jsonl"
    dataset.write_text(
        "".join(
            json.dumps({"question": q, "answer": "a", "gold_files": ["*2023 Q3 AAPL*"]}) + "\n"
            for q in (
                "What were total net sales for the quarter ended July 1, 2023?",
                "iPhone net sales in the third quarter of 2023",
            )
        )
    )
    out = tmp_path / "sweep"
    pools = ["ingest.embed.actors=1", "ingest.embed.num_cpus=1", "eval.pool.actors=1", "eval.pool.num_cpus=1"]
    points = run_sweep(sweep, dataset, out, None, pools, docs=docs)  # the documents given win over the file's
    assert [p["point"] for p in points] == [
        "no headers",
        "mode=dense",
        "mode=bm25",
    ]
    # Two chunking settings, two indexes: the retrieval modes share them.
    assert len({p["index"] for p in points}) == 2
    assert len(list((out / "indexes").iterdir())) == 2
    # Every point is scored on both splits (one question falls in each here).
    assert all(0 <= p[f"{split} recall@5"] <= 1 for p in points for split in ("dev", "test"))
    table = (out / "sweep.md").read_text()
    assert "| mode=dense |" in table and "test mrr" in table
    assert (out / "sweep.png").stat().st_size > 0
