"""Versioned index directories: one writer at a time, readers that never see a mix, rollback, and the old layout."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from cli.main import main as rag_main
from rag.config import IndexConfig
from rag.store.errors import DamagedVersion, DiskFull
from rag.store.files import CHUNK_COLUMNS, MANIFEST_FILE, EmbeddingInfo, IndexInfo, Manifest, RunStats
from rag.store.files import write_version as write_files
from rag.store.vectors import build_index
from rag.store.versions import LOCK, IndexBusy, IndexDir, open_index


def write_version(path, tag: str, n: int) -> None:
    """A small complete index whose every chunk says which version it belongs to."""
    chunks = pd.DataFrame({c: [None] * n for c in CHUNK_COLUMNS})
    chunks["file"], chunks["page"], chunks["chunk_index"] = f"{tag}.pdf", 1, range(n)
    chunks["text"], chunks["header"] = tag, ""
    vectors = np.random.default_rng(n).standard_normal((n, 8)).astype(np.float32)
    manifest = Manifest(
        created_at=tag,
        docs_dir="",
        fingerprint="",
        settings={},
        embedding=EmbeddingInfo(model="", dim=8, normalize=True),
        index=IndexInfo(kind="flat", built_on="cpu", vectors=n),
        files=[],
        run=RunStats(seconds=0, files_processed=0, pages_processed=0, chunks_embedded=0, pages_per_s=0, chunks_per_s=0),
    )
    write_files(path, build_index(vectors, IndexConfig())[0], chunks, vectors, manifest)


def publish(root, tag: str, n: int, keep: int = 3) -> str:
    with IndexDir(root).writing() as writer, writer.staging() as staged:
        write_version(staged, tag, n)
        return writer.publish(staged, keep)


def test_publish_points_to_the_new_version_and_keeps_a_few(tmp_path):
    root = tmp_path / "index"
    names = [publish(root, f"t{i}", 5 + i, keep=2) for i in range(4)]
    assert names == ["v000001", "v000002", "v000003", "v000004"]
    assert [(v.name, v.current) for v in IndexDir(root).versions()] == [("v000003", False), ("v000004", True)]
    store = open_index(root)
    assert (store.version, len(store.chunks), set(store.chunks["text"])) == ("v000004", 8, {"t3"})
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
            tags = set(store.chunks["text"])
            n = len(store.chunks)
            # One version's chunks, FAISS rows and manifest, never parts of two.
            if len(tags) != 1 or store.index.ntotal != n or store.manifest.created_at not in tags:
                errors.append(f"mixed: {tags}, {n} chunks, {store.index.ntotal} vectors")
            seen.add(store.version)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for t in readers:
        t.join()
    stop.set()
    writer.join(30)
    assert errors == []
    assert len(seen) > 3, seen  # the readers really raced the publisher


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
    write_version(root, "legacy", 4)
    assert open_index(root).version == "v000000"
    assert publish(root, "new", 6) == "v000001"
    assert [v.name for v in IndexDir(root).versions()] == ["v000000", "v000001"]
    assert not (root / MANIFEST_FILE).exists()
    assert set(open_index(root).chunks["text"]) == {"new"}


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
    later = root / "versions" / "v000002"
    (later / "faiss.index").write_bytes((later / "faiss.index").read_bytes()[:-7])  # a copy cut short
    with pytest.raises(
        DamagedVersion, match=f"faiss.index holds .* bytes where .* were written.*rollback --index {root}"
    ):
        open_index(root)
    assert rag_main(["search", "any question", "--index", str(root)]) == 2
    assert "version v000002 is damaged" in capsys.readouterr().err  # one line, not FAISS's C++ assertion

    assert rag_main(["index", "rollback", "--index", str(root)]) == 0
    good = root / "versions" / "v000001" / "embeddings.npy"
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
    publish(root, "older", 12)
    version = root / "versions" / "v000001"
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
    data = root / "versions" / "v000001" / "bm25" / "data.csc.index.npy"
    data.write_bytes(data.read_bytes()[:-4])
    with pytest.raises(DamagedVersion, match=f"bm25/data.csc.index.npy holds .*version v000001 is damaged.*{root}`"):
        open_index(root)
