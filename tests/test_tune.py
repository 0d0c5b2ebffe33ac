"""A collection's retrieval mode chosen on its own questions (rag tune), over a real index of three filings, with the
SEC questions about them and their gold pages; every reader then searches with it."""

from __future__ import annotations

import json
import shutil

import pytest

from cli.main import main
from eval.datasets import load_dataset
from eval.page_gold import gold_pages, page_texts
from eval.tune import tune
from rag.config import load_settings
from rag.search import Searcher
from rag.tuning import TUNED
from tests.conftest import SEC_DIR, SMALL_INDEX_FILES

CHINESE = "苹果公司的净销售额是多少？"


@pytest.fixture(scope="module")
def questions(small_index, tmp_path_factory):
    """The SEC questions whose gold files are all in the small index, each with the pages holding its answer's
    figures (eval.page_gold), where it has any."""
    pages = page_texts(small_index)
    path = tmp_path_factory.mktemp("tune") / "questions.jsonl"
    rows = []
    for q in load_dataset(SEC_DIR / "qna_data.csv"):
        files = [f for f in pages if q.is_gold_file(f)]
        if files and set(files) <= set(SMALL_INDEX_FILES):
            gold = [{"file": f, "page": p} for f, p in gold_pages(q, pages)]
            rows.append({"id": q.id, "question": q.question, "answer": q.answer, "gold_files": files})
            rows[-1]["gold_pages"] = gold
    assert sum(bool(r["gold_pages"]) for r in rows) >= 4, "too few questions with gold pages to choose by"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def report(small_index, questions):
    return tune(small_index, questions, load_settings(None), fewest=1)


def _key(found: dict, mode: str) -> tuple:
    dev = found["modes"][mode]["dev"]
    return dev[found["metric"]], dev["mrr"]


def test_the_mode_with_the_best_dev_figures_is_chosen_and_held_back_figures_are_reported(report):
    found = report["chosen_by"]["languages"]["en"]
    assert found["metric"] == "page_hit@5" and set(found["modes"]) == {"dense", "bm25", "hybrid"}
    assert found["configured"] == "hybrid"
    best = max(_key(found, m) for m in found["modes"])
    assert _key(found, found["chosen"]) == best
    if _key(found, "hybrid") == best:  # the config's mode keeps a tie
        assert found["chosen"] == "hybrid" and report["retrieval"] == {}
    else:
        assert report["retrieval"] == {"mode_by_language": {"en": found["chosen"]}}
    assert all(found["modes"][m]["test"][found["metric"]] is not None for m in found["modes"])


def test_held_back_questions_never_change_the_choice(small_index, questions, report, tmp_path):
    dev_only = tmp_path / "dev.jsonl"
    dev_only.write_text("".join(line + "\n" for line in questions.read_text().splitlines() if _split(line) == "dev"))
    again = tune(small_index, dev_only, load_settings(None), fewest=1)
    found, before = again["chosen_by"]["languages"]["en"], report["chosen_by"]["languages"]["en"]
    assert found["chosen"] == before["chosen"]
    assert {m: f["dev"] for m, f in found["modes"].items()} == {m: f["dev"] for m, f in before["modes"].items()}


def _split(line: str) -> str:
    from eval.datasets import Question

    return Question("", json.loads(line)["question"], "").split


def test_too_few_dev_questions_leave_the_config_s_mode(small_index, questions):
    again = tune(small_index, questions, load_settings(None), fewest=10_000)
    assert again["retrieval"] == {} and again["chosen_by"]["languages"]["en"]["chosen"] == "hybrid"


def test_rag_tune_writes_the_choice_and_every_reader_searches_with_it(small_index, questions, report, tmp_path, capsys):
    found = report["chosen_by"]["languages"]["en"]
    worst = min(found["modes"], key=lambda m: _key(found, m))
    assert _key(found, worst) < max(_key(found, m) for m in found["modes"]), "every mode scored the same"
    index = tmp_path / "index"
    shutil.copytree(small_index, index)
    configured = [f"retrieval.mode={worst}"]
    argv = ["tune", "--index", str(index), "--dataset", str(questions), "--fewest", "1", "--set", configured[0]]
    assert main([*argv, "--out", str(tmp_path / "report.json")]) == 0
    written = json.loads((index / TUNED).read_text())
    assert json.loads((tmp_path / "report.json").read_text())["retrieval"] == written["retrieval"]
    chosen = written["retrieval"]["mode_by_language"]["en"]
    assert chosen != worst and "(chosen)" in capsys.readouterr().out
    assert written["chosen_by"]["languages"]["en"]["questions"]["test"] > 0

    searcher = Searcher.from_index_dir(index, load_settings(None, configured))
    question = "What were Apple's total net sales for the quarter ended July 1, 2023?"
    assert searcher.search(question, 5).mode == chosen
    assert searcher.search(question, 5, mode=worst).mode == worst  # a request's own mode wins
    assert searcher.mode_for(CHINESE) == worst  # a language it was not tuned for keeps the config's

    assert main(["tune", "--index", str(index), "--clear"]) == 0
    assert Searcher.from_index_dir(index, load_settings(None, configured)).search(question, 5).mode == worst


def test_a_damaged_tuning_file_is_named(small_index, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(small_index, index)
    (index / TUNED).write_text("{not json")
    with pytest.raises(ValueError, match=f"{TUNED}: not JSON"):
        Searcher.from_index_dir(index, load_settings(None))
    (index / TUNED).write_text(json.dumps({"retrieval": {"mode_by_language": {"en": "sparse"}}}))
    with pytest.raises(ValueError, match="not retrieval settings"):
        Searcher.from_index_dir(index, load_settings(None))


def test_a_dataset_about_other_files_is_refused(small_index, tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"question": "q?", "answer": "a", "gold_files": ["absent.pdf"]}) + "\n")
    with pytest.raises(ValueError, match=r"no question .* has a gold file"):
        tune(small_index, other, load_settings(None))
