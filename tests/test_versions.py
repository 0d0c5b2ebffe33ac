"""Versioned index directories: one writer at a time, readers that never see a mix, rollback, and the old layout."""

from __future__ import annotations

import gc
import io
import json
import multiprocessing
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from cli.main import main as rag_main
from rag.config import IndexConfig
from rag.store import files
from rag.store.errors import DamagedVersion, DiskFull
from rag.store.files import (
    CHUNK_COLUMNS,
    MANIFEST_FILE,
    EmbeddingInfo,
    IndexInfo,
    Manifest,
    RunStats,
    write_json,
    write_parts,
)
from rag.store.rows import IN_MEMORY, ChunkRows
from rag.store.vectors import build_index
from rag.store.versions import LOCK, IndexBusy, IndexDir, open_index


def _chunks(tag: str, n: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` chunks of one file, each saying which version it belongs to, and their vectors."""
    chunks = pd.DataFrame({c: [None] * n for c in CHUNK_COLUMNS})
    chunks["file"], chunks["page"], chunks["chunk_index"] = f"{tag}.pdf", 1, range(n)
    chunks["text"], chunks["header"] = tag, ""
    return chunks, np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32)


def _manifest(tag: str, n: int, **more) -> Manifest:
    return Manifest(
        created_at=tag,
        docs_dir="",
        fingerprint="",
        settings={},
        embedding=EmbeddingInfo(model="", dim=8, normalize=True),
        index=IndexInfo(kind="flat", built_on="cpu", vectors=n),
        files=[],
        run=RunStats(seconds=0, files_processed=0, pages_processed=0, chunks_embedded=0, pages_per_s=0, chunks_per_s=0),
        **more,
    )


def write_unsegmented(path, tag: str, n: int) -> None:
    """A version as it was written before segments: its one segment's files in its own folder."""
    chunks, vectors = _chunks(tag, n)
    stored, lexical = write_parts(path, build_index(vectors, IndexConfig())[0], None, chunks, vectors)
    write_json(path / MANIFEST_FILE, _manifest(tag, n, version=1, stored=stored, lexical=lexical))


def segment_of(root, version: str):
    """The folder of the one segment of ``version``."""
    (ref,) = json.loads((root / "versions" / version / MANIFEST_FILE).read_text())["segments"]
    return root / "segments" / ref["name"]


def publish(root, tag: str, n: int, keep: int = 3) -> str:
    """A version of one new segment of ``n`` chunks."""
    chunks, vectors = _chunks(tag, n)
    with IndexDir(root).writing() as writer:
        segment = writer.add_segment(chunks, vectors, IndexConfig(), "")
        return writer.publish_manifest(_manifest(tag, n, segments=[segment.ref]), keep)


def test_publish_points_to_the_new_version_and_keeps_a_few(tmp_path):
    root = tmp_path / "index"
    names = [publish(root, f"t{i}", 5 + i, keep=2) for i in range(4)]
    assert names == ["v000001", "v000002", "v000003", "v000004"]
    assert [(v.name, v.current) for v in IndexDir(root).versions()] == [("v000003", False), ("v000004", True)]
    assert len(list((root / "segments").iterdir())) == 2  # the segments of the versions pruned went with them
    store = open_index(root)
    assert (store.version, len(store.chunks), set(store.read()["text"])) == ("v000004", 8, {"t3"})
    assert not list(root.glob(".staging-*"))


def _publish_forever(root: str, stop) -> None:
    i = 0
    while not stop.is_set():
        publish(root, f"tag{i}", 3 + i % 7, keep=2)
        i += 1


def test_readers_see_one_version_whole_while_another_process_publishes(tmp_path):
    root = tmp_path / "index"
    publish(root, "first", 3)
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or locks inherited from pytest
    stop = spawn.Event()
    writer = spawn.Process(target=_publish_forever, args=(str(root), stop))
    writer.start()
    seen, errors = set(), []

    def read() -> None:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            try:
                store = open_index(root)
            except Exception as err:
                errors.append(repr(err))
                continue
            tags = set(store.read()["text"])
            n = len(store.chunks)
            # One version's chunks, FAISS rows and manifest, never parts of two.
            vectors = sum(s.index.ntotal for s in store.segments.values())
            if len(tags) != 1 or vectors != n or store.manifest.created_at not in tags:
                errors.append(f"mixed: {tags}, {n} chunks, {vectors} vectors")
            seen.add(store.version)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    stop.set()
    writer.join(30)
    assert not errors, "\n".join(errors)  # whole: a rare failure must say what the reader met
    assert len(seen) > 3, seen  # the readers really raced the publisher


class _Finalised:
    """Garbage in a cycle whose finalizer runs Python code: a collection in the middle of one thread's work lets the
    interpreter switch to another there."""

    def __init__(self):
        self.cycle = self

    def __del__(self):
        sum(range(50))


def test_threads_opening_arrays_at_once_never_fail(tmp_path):
    # Threads switched as often as the interpreter can, in the middle of numpy's .npy header parse: without the lock
    # in rag.store.files, CPython 3.11's AST constructor race failed hundreds of these reads a second here (and so
    # called a sound segment damaged). The segment's file is read from memory: a loop without system calls is tight
    # enough for the race to show within the test.
    root = tmp_path / "index"
    publish(root, "one", 5)
    stored = (segment_of(root, "v000001") / files.EMBEDDINGS_FILE).read_bytes()
    errors = []

    def read() -> None:
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            [_Finalised() for _ in range(5)]
            try:
                files.load_npy(io.BytesIO(stored), mapped=False)
            except Exception as err:
                errors.append(repr(err))

    thresholds, interval = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(5, 1, 1)
    sys.setswitchinterval(1e-6)
    try:
        readers = [threading.Thread(target=read) for _ in range(4)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
    finally:
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)
    assert not errors, f"{len(errors)} reads failed, the first: {errors[0]}"


HOLD = """
import sys, time
from rag.store.versions import IndexDir
with IndexDir(sys.argv[1]).writing(purpose="a test holding the lock"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_second_writer_is_refused_or_waits_and_a_killed_one_leaves_no_lock(tmp_path):
    root = tmp_path / "index"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(root), "60"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(IndexBusy, match=f"a test holding the lock \\(pid {holder.pid}"):
        publish(root, "refused", 3)
    assert rag_main(["index", "rollback", "--index", str(root)]) == 2  # rollbacks take the same lock
    holder.kill()  # the kernel releases a dead holder's lock: nobody has to delete a stale file
    holder.wait()
    assert publish(root, "after", 3) == "v000001"
    assert (root / LOCK).exists()

    short = subprocess.Popen([sys.executable, "-c", HOLD, str(root), "2"], stdout=subprocess.PIPE, text=True)
    assert short.stdout.readline().strip() == "held"
    started = time.monotonic()
    with IndexDir(root).writing(wait_s=30):
        assert time.monotonic() - started > 0.5  # it waited for the holder, then went on
    short.wait()


def test_an_unversioned_index_is_read_then_adopted(tmp_path):
    root = tmp_path / "index"
    root.mkdir()
    write_unsegmented(root, "legacy", 4)
    assert open_index(root).version == "v000000"
    assert publish(root, "new", 6) == "v000001"
    assert [v.name for v in IndexDir(root).versions()] == ["v000000", "v000001"]
    assert not (root / MANIFEST_FILE).exists()
    assert set(open_index(root).read()["text"]) == {"new"}


def test_versions_and_rollback_commands(tmp_path, capsys):
    root = tmp_path / "index"
    for i in range(3):
        publish(root, f"t{i}", 3 + i)
    assert rag_main(["index", "versions", "--index", str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out] == [["v000001", "t0"], ["v000002", "t1"], ["*", "v000003"]]
    assert rag_main(["index", "rollback", "--index", str(root)]) == 0
    assert open_index(root).version == "v000002"
    assert rag_main(["index", "rollback", "--index", str(root), "--to", "v000003"]) == 0
    assert open_index(root).version == "v000003"
    assert rag_main(["index", "rollback", "--index", str(root), "--to", "v000009"]) == 2
    assert "no version v000009" in capsys.readouterr().err
    # The next ingestion builds on the version rolled back to, and never deletes the current one.
    assert rag_main(["index", "rollback", "--index", str(root), "--to", "v000001"]) == 0
    publish(root, "t3", 9, keep=1)
    assert [v.name for v in IndexDir(root).versions()] == ["v000004"]


def test_a_damaged_file_is_named_with_the_way_out_and_verify_finds_what_sizes_cannot(tmp_path, capsys):
    root = tmp_path / "index"
    publish(root, "good", 40)
    publish(root, "later", 50)
    later = segment_of(root, "v000002")
    (later / "faiss.index").write_bytes((later / "faiss.index").read_bytes()[:-7])  # a copy cut short
    with pytest.raises(
        DamagedVersion,
        match=f"{later.name}/faiss.index holds .* bytes where .* were written.*segment {later.name}.*"
        f"rollback --index {root}",
    ):
        open_index(root)
    assert rag_main(["search", "any question", "--index", str(root)]) == 2
    assert f"segment {later.name} (with each version using it) is damaged" in capsys.readouterr().err  # not FAISS's

    assert rag_main(["index", "rollback", "--index", str(root)]) == 0
    good = segment_of(root, "v000001") / "embeddings.npy"
    flipped = bytearray(good.read_bytes())
    flipped[-1] ^= 0xFF  # one bit of one vector: the size is right, the data is not
    good.write_bytes(bytes(flipped))
    assert open_index(root).version == "v000001"  # opening checks sizes only: cheap enough for every reload
    capsys.readouterr()
    assert rag_main(["index", "verify", "--index", str(root)]) == 1
    verified = capsys.readouterr().out.splitlines()
    assert "embeddings.npy does not match the SHA-256" in verified[0] and verified[0].startswith("* v000001  DAMAGED")
    assert "faiss.index holds" in verified[1]


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB file system (a tmpfs), for what a full disk does."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"a small file system is a tmpfs mount, which needs root: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_sentence_and_the_current_version_stays(small_disk):
    root = small_disk / "index"
    publish(root, "fits", 20)
    with pytest.raises(
        DiskFull, match=f"no space left on the device holding {root}: .*needs about .* MB and .* MB are free"
    ):
        publish(root, "too big", 8000)  # 8,000 x 8 floats: 256 KB stored and 256 KB more in FAISS
    assert open_index(root).version == "v000001"
    assert not list(root.glob(".staging-*"))  # what was written of it is gone, the space with it
    assert publish(root, "fits again", 30) == "v000002"


def test_a_version_written_before_hashes_and_bm25_were_kept_is_still_read(tmp_path, capsys):
    root = tmp_path / "index"
    root.mkdir()
    write_unsegmented(root, "older", 12)
    version = root
    manifest = json.loads((version / MANIFEST_FILE).read_text())
    del manifest["stored"], manifest["lexical"]
    (version / MANIFEST_FILE).write_text(json.dumps(manifest))
    shutil.rmtree(version / "bm25")
    store = open_index(root)
    assert store.lexical().scores("older").shape == (12,)  # built from the chunks, as before BM25 was stored
    assert rag_main(["index", "verify", "--index", str(root)]) == 0
    assert "read whole" in capsys.readouterr().out


def test_a_damaged_bm25_file_names_its_version_and_index(tmp_path):
    root = tmp_path / "index"
    publish(root, "words", 30)
    data = segment_of(root, "v000001") / "bm25" / "data.csc.index.npy"
    data.write_bytes(data.read_bytes()[:-4])
    with pytest.raises(DamagedVersion, match=f"bm25/data.csc.index.npy holds .*segment s000001-.* is damaged.*{root}`"):
        open_index(root)


# ---- segments ------------------------------------------------------------------------------------------------------


def _texts_chunks(files: dict[str, int], seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Chunks of several files with varied words (Zipf-distributed, as words are) and their vectors."""
    rng = np.random.default_rng(seed)
    vocab = np.array([f"term{i}" for i in range(800)])
    weights = 1 / np.arange(1, 801)
    rows = [(f, i) for f, n in files.items() for i in range(n)]
    chunks = pd.DataFrame({c: [None] * len(rows) for c in CHUNK_COLUMNS})
    chunks["file"], chunks["chunk_index"], chunks["page"], chunks["header"] = (
        [f for f, _ in rows],
        [i for _, i in rows],
        1,
        "",
    )
    chunks["chunk_id"] = [f"{seed}:{f}:{i}" for f, i in rows]
    chunks["text"] = [" ".join(rng.choice(vocab, int(rng.integers(20, 80)), p=weights / weights.sum())) for _ in rows]
    vectors = rng.standard_normal((len(rows), 8)).astype(np.float32)
    return chunks, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _publish_segments(
    root, parts: list[tuple[pd.DataFrame, np.ndarray, list[str]]], cfg: IndexConfig | None = None
) -> str:
    """A version of one segment per part, each with the files listed masked out."""
    with IndexDir(root).writing() as writer:
        refs = []
        for chunks, vectors, deleted in parts:
            ref = writer.add_segment(chunks, vectors, cfg or IndexConfig(), "").ref
            rows = int((~chunks["file"].isin(deleted)).sum())
            refs.append(ref.model_copy(update={"deleted": deleted, "rows": rows}))
        return writer.publish_manifest(_manifest("segments", sum(r.rows for r in refs), segments=refs), keep=5)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    """One index whose version is three segments, one file rewritten since the first (masked out of it), and another
    whose version is the same live chunks as one segment."""
    first, first_vectors = _texts_chunks({"a.pdf": 60, "b.pdf": 50, "c.pdf": 40}, seed=1)
    second, second_vectors = _texts_chunks({"d.pdf": 70}, seed=2)
    third, third_vectors = _texts_chunks({"b.pdf": 30}, seed=3)  # b.pdf changed: its new chunks
    split = tmp_path_factory.mktemp("split") / "index"
    with pytest.MonkeyPatch.context() as patch:  # several row groups a segment, for the reads by row below
        patch.setattr(files, "CHUNK_ROW_GROUP", 16)
        _publish_segments(
            split, [(first, first_vectors, ["b.pdf"]), (second, second_vectors, []), (third, third_vectors, [])]
        )
    live = first["file"] != "b.pdf"
    whole = tmp_path_factory.mktemp("whole") / "index"
    chunks = pd.concat([first[live], second, third], ignore_index=True)
    _publish_segments(whole, [(chunks, np.concatenate([first_vectors[live], second_vectors, third_vectors]), [])])
    return open_index(split), open_index(whole)


def _by_id(store, hits) -> list[tuple[str, float]]:
    ids = store.read([h.row for h in hits], ["chunk_id"])["chunk_id"]
    return [(chunk_id, h.score) for chunk_id, h in zip(ids, hits, strict=True)]


def test_a_version_of_segments_searches_as_one_without_what_is_masked_out(segmented):
    split, whole = segmented
    assert len(split.segments) == 3 and len(split.chunks) == len(whole.chunks) == 200
    assert set(split.read()["chunk_id"]) == set(whole.read()["chunk_id"])  # b.pdf's old chunks are not there
    for seed in range(5):
        query = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
        # Exact (flat) segments: the same chunks with the same scores as one segment of the same chunks.
        assert _by_id(split, split.search(query, 10)) == _by_id(whole, whole.search(query, 10))
        # A filter's rows: only those, from whichever segments hold them.
        rows = np.flatnonzero(split.chunks["file"].isin(["b.pdf", "c.pdf"]).to_numpy())
        hits = split.search(query, 10, rows)
        assert len(hits) == 10 and set(split.chunks["file"][[h.row for h in hits]]) <= {"b.pdf", "c.pdf"}
        whole_rows = np.flatnonzero(whole.chunks["file"].isin(["b.pdf", "c.pdf"]).to_numpy())
        assert _by_id(split, hits) == _by_id(whole, whole.search(query, 10, whole_rows))


def test_chunks_are_read_by_row_from_disk_and_memory_holds_what_search_needs(segmented, tmp_path):
    split, whole = segmented
    every = split.read()
    assert list(every.columns) == CHUNK_COLUMNS and len(every) == 200
    assert set(every["chunk_id"]) == set(whole.read()["chunk_id"])
    for segment in split.segments.values():
        parquet = pq.ParquetFile(segment.path / "chunks.parquet")
        assert parquet.metadata.num_row_groups > 1 and not {"text", "chunk_id"} & set(parquet.schema_arrow.names)
    # A segment written before texts and ids were stored apart holds them in its chunks.parquet.
    first = next(iter(split.segments.values()))
    (tmp_path / "older").mkdir()
    first.rows.read().to_parquet(tmp_path / "older" / "chunks.parquet", row_group_size=16)
    some = np.array([40, 3, 17])
    pd.testing.assert_frame_equal(ChunkRows(tmp_path / "older").read(some), first.rows.read(some))
    assert ChunkRows(tmp_path / "older").strings(some, "text") == first.rows.strings(some, "text")
    # Any rows in any order, across segments, row groups and what is masked out, as a whole read gives them.
    rows = np.random.default_rng(4).permutation(200)[:60]
    pd.testing.assert_frame_equal(split.read(rows), every.iloc[rows].reset_index(drop=True))
    pd.testing.assert_frame_equal(split.read(rows[:1], ["text"]), every.iloc[rows[:1]][["text"]].reset_index(drop=True))
    for column in ("text", "chunk_id"):  # what each hit reads, without a frame
        assert split.strings(rows, column) == every[column].iloc[rows].tolist()
    # In memory: a chunk's file, page, place and header, strings as categories; files with their metadata once each.
    assert list(split.chunks.columns) == IN_MEMORY and isinstance(split.chunks["file"].dtype, pd.CategoricalDtype)
    assert (split.chunks["file"] == every["file"]).all() and (split.chunks["page"] == every["page"]).all()
    assert sorted(split.files["file"]) == sorted(whole.files["file"]) == ["a.pdf", "b.pdf", "c.pdf", "d.pdf"]
    # A file's rows, found by their runs: b.pdf's live ones are in the third segment, after d.pdf's.
    for wanted in (["b.pdf"], ["a.pdf", "d.pdf"], ["c.pdf", "b.pdf", "z.pdf"], []):
        expected = np.flatnonzero(every["file"].isin(wanted).to_numpy())
        assert np.array_equal(split.rows_of(wanted), expected)


def test_a_compressed_segment_rescores_its_candidates_with_the_stored_vectors(tmp_path):
    import faiss

    from rag.store.vectors import kind_for

    # By default a segment's size picks its kind: exact below index.flat_below, compressed above.
    assert [kind_for(n, IndexConfig()) for n in (5_000, 199_999, 200_000)] == ["flat", "flat", "ivfpq"]
    assert kind_for(250_000, IndexConfig(flat_below=300_000)) == "flat"

    chunks, vectors = _texts_chunks({"a.pdf": 6000, "b.pdf": 4000}, seed=5)
    # Four dimensions a byte: codes coarse enough that their own order is often wrong.
    _publish_segments(tmp_path / "index", [(chunks, vectors, [])], IndexConfig(kind="ivfpq", nlist=8, nprobe=8, pq_m=2))
    store = open_index(tmp_path / "index")
    (segment,) = store.segments.values()
    assert isinstance(segment.index, faiss.IndexIVFPQ)
    stored = np.asarray(segment.vectors)
    recall = {0: [], 100: []}
    for seed in range(20):
        query = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
        best = set(np.argsort(-(stored @ query))[:10])
        for rescore in recall:
            hits = store.search(query, 10, rescore=rescore)
            recall[rescore].append(len(best & {h.row for h in hits}) / 10)
            if rescore:  # the scores of whole vectors, in their order
                assert np.allclose([h.score for h in hits], stored[[h.row for h in hits]] @ query, atol=1e-5)
                assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert np.mean(recall[0]) < 0.5 < 0.85 < np.mean(recall[100]), recall  # measured: 0.36 and 0.905


def test_ivf_segments_share_one_training_and_merges_keep_it(tmp_path):
    """A collection's IVF segments take up the training (coarse quantizer) of one already written rather than train
    their own, and a merge keeps it; one trained with fewer cells than configured, or for other settings, is not
    taken up."""
    import faiss

    from rag.store.merging import merge

    cfg = IndexConfig(kind="ivf", nlist=8, nprobe=2)
    parts = [_texts_chunks({f"{name}.pdf": 1000}, seed) for seed, name in enumerate("abc")]
    with IndexDir(tmp_path / "index").writing() as writer:
        written: list = []
        for chunks, vectors in parts:
            written.append(writer.add_segment(chunks, vectors, cfg, "", written))
        assert len({s.info.training for s in written}) == 1 and written[0].info.training
        indexes = [faiss.read_index(str(s.path / "faiss.index")) for s in written]  # held: each owns its quantizer
        centroids = [faiss.downcast_index(index.quantizer).reconstruct_n(0, 8) for index in indexes]
        assert all(np.array_equal(centroids[0], c) for c in centroids[1:])
        assert writer.add_segment(*parts[0], cfg.model_copy(update={"nlist": 4}), "", written).info.training not in {
            written[0].info.training
        }
        # Two cells: 100 vectors train no more.
        small = writer.add_segment(*_texts_chunks({"s.pdf": 100}, 7), cfg, "", [])
        assert faiss.read_index(str(small.path / "faiss.index")).nlist == 2
        assert writer.add_segment(*parts[1], cfg, "", [small]).info.training != small.info.training

        (merged,) = merge(writer, written, written, cfg, "")
        assert merged.info.training == written[0].info.training and merged.info.rows == 3000


def test_bm25_scores_segments_as_one_collection(segmented):
    split, whole = segmented
    lexical_split, lexical_whole = split.lexical(), whole.lexical()
    ids = split.read()["chunk_id"].to_numpy()
    order = pd.Series(range(len(whole.chunks)), index=whole.read()["chunk_id"])[ids].to_numpy()
    for query in ("term5 term300 term77", "term400 term401", "term1 term2 term650"):
        mine, one = lexical_split.scores(query), lexical_whole.scores(query)[order]
        assert mine.shape == (200,) and mine.max() > 0
        # Document frequencies are the version's (b.pdf's masked chunks count until a merge, as in Lucene); lengths
        # are weighed against each segment's own mean: close, not equal.
        assert np.abs(mine - one).max() < 0.1 * one.max()
        assert len(set(np.argsort(-mine)[:10]) & set(np.argsort(-one)[:10])) >= 8


def test_bm25_top_ranks_as_every_score_does(segmented):
    """The pruned search (rarest terms first, the rest looked up for the chunks that can still rank) returns what
    ranking every chunk's score returns, inside a selection or not, across segments and what is masked out."""
    selections = [None, np.sort(np.random.default_rng(3).choice(200, 60, replace=False)), np.array([5, 150])]
    for store in segmented:
        lexical = store.lexical()
        for query in ("term5 term300 term77", "term0 term1 term2 term3 term799", "term0 term0 term4", "absent"):
            every = lexical.scores(query)
            for rows in selections:
                pool = np.arange(len(every)) if rows is None else rows
                pool = pool[every[pool] > 0]
                for depth in (1, 10, 50):
                    got, scores = lexical.top(query, depth, rows)
                    assert got.tolist() == pool[np.lexsort((pool, -every[pool]))][:depth].tolist()
                    assert np.allclose(scores, every[got], rtol=1e-5)


def test_reload_reuses_the_segments_it_has_open(segmented, tmp_path):
    split, _ = segmented
    root = split.root.parent.parent
    again = open_index(root, reuse=split)
    assert all(again.segments[p] is split.segments[p] for p in split.segments)


def test_merges_rewrite_segments_as_one_and_runs_merge_past_their_bounds(segmented, capsys):
    from rag.store.merging import due
    from rag.store.segments import located

    split, whole = segmented
    root = split.root.parent.parent
    segments = located(split.root, split.manifest)
    assert due(segments, IndexConfig()) == [segments[0]]  # b.pdf: 50 of its 150 rows masked out, past 0.3
    assert due(segments, IndexConfig(max_deleted_share=0.5)) == []
    # Past the count: the smallest first, down to half the bound.
    assert [s.ref.rows for s in due(segments, IndexConfig(max_segments=2, max_deleted_share=0.5))] == [30, 70, 100]

    assert rag_main(["index", "merge", "--index", str(root)]) == 0
    assert "3 segments) merged into v000002 (1)" in capsys.readouterr().out
    merged = open_index(root)
    assert [s.deleted for s in merged.manifest.segments] == [[]] and len(merged.chunks) == 200
    query = np.random.default_rng(9).standard_normal(8).astype(np.float32)
    assert _by_id(merged, merged.search(query, 10)) == _by_id(whole, whole.search(query, 10))
    assert rag_main(["index", "merge", "--index", str(root)]) == 0
    assert "nothing to merge" in capsys.readouterr().out
    assert rag_main(["index", "rollback", "--index", str(root)]) == 0  # the segments of the version before stay
    assert len(open_index(root).segments) == 3


def test_a_version_written_before_segments_is_linked_in_as_one(tmp_path):
    root = tmp_path / "index"
    root.mkdir()
    write_unsegmented(root, "old", 20)
    with IndexDir(root).writing() as writer:
        old = IndexDir(root).current()
        (segment,) = writer.segments_of(old)
        assert (segment.path / "faiss.index").stat().st_ino == (old.path / "faiss.index").stat().st_ino  # no copy
        writer.publish_manifest(_manifest("old", 20, segments=[segment.ref]), keep=3)
    store = open_index(root)
    assert (store.version, len(store.chunks), set(store.read()["text"])) == ("v000001", 20, {"old"})
    assert rag_main(["index", "verify", "--index", str(root)]) == 0
