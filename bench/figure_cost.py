"""What the figure check (rag.figures) costs an answer, against the search the answer followed.

    python -m bench.figure_cost --index INDEX_DIR [--dataset QNA_CSV] [--runs 3] [--out bench/results]

For each question of the dataset: the default search for its five passages (timed: the baseline, in the same run),
then the check of its gold answer against them, with its question, its parse caches emptied first, so that each
answer pays for reading its passages as the first answer to meet them does. Writes figure_cost.json and
figure_cost.png: the median, 95th percentile and most of each run, their median and min-max over --runs runs, and the
check's median over the search's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.harness import bar_spread, percentile, spread
from bench.paths import REPO, RESULTS

STEPS = ("search", "check")
STATS = ("p50", "p95", "max")


def one_run(searcher, questions) -> dict[str, list[float]]:
    import rag.figures as figures

    ms: dict[str, list[float]] = {step: [] for step in STEPS}
    for question in questions:
        started = time.perf_counter()
        chunks = searcher.search(question.question, 5).chunks
        searched = time.perf_counter()
        # Cold: the check keeps what it read of the passages it met (lru caches); the first answer to meet them pays.
        figures.clear_caches()
        checking = time.perf_counter()
        figures.check_figures(question.answer, chunks, question=question.question)
        done = time.perf_counter()
        ms["search"].append((searched - started) * 1000)
        ms["check"].append((done - checking) * 1000)
    return ms


def _at(values: list[float], q: float) -> float:
    found = percentile(values, q)
    assert found is not None  # a run times every answer
    return found


def measure(index: Path, dataset: Path, runs: int) -> dict:
    from eval.datasets import load_dataset
    from rag.config import load_settings
    from rag.search import Searcher

    searcher = Searcher.from_index_dir(index, load_settings(None))
    questions = list(load_dataset(dataset))
    per_run = [one_run(searcher, questions) for _ in range(runs)]
    stats = {
        step: {
            "p50": spread([_at(run[step], 50) for run in per_run]),
            "p95": spread([_at(run[step], 95) for run in per_run]),
            "max": spread([max(run[step]) for run in per_run]),
        }
        for step in STEPS
    }
    return {
        "index": str(index),
        "dataset": str(dataset),
        "answers": len(questions),
        "runs": runs,
        "ms": stats,
        "check_over_search_p50": stats["check"]["p50"]["median"] / stats["search"]["p50"]["median"],
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    colors = {"search": "tab:gray", "check": "tab:blue"}
    for i, stat in enumerate(STATS):
        for j, step in enumerate(STEPS):
            bar_spread(ax, i * 3 + j, result["ms"][step][stat], colors[step])
    ax.set_xticks([i * 3 + 0.5 for i in range(len(STATS))], ["median", "95th percentile", "most"])
    ax.set_ylabel("ms per answer")
    ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colors[s]) for s in STEPS], labels=["search", "figure check"])
    fig.suptitle(
        f"Figure check against the search it follows: {result['answers']} answers, five passages "
        f"(median, min-max of {result['runs']} runs)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, default=REPO.parent / "shared/datasets/sec-10q/qna_data.csv")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = measure(args.index, args.dataset, args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "figure_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "figure_cost.png")
    print(json.dumps({step: result["ms"][step]["p95"] for step in STEPS}))


if __name__ == "__main__":
    main()
