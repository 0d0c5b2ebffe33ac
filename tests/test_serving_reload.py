"""Retriever replicas follow their index's current version without a restart, and never drop a request doing so
(slow: an ingestion and a Serve deployment of two replicas of its own)."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest

from ingest.job import run_ingest
from rag.config import load_settings
from rag.filters import Filters
from rag.store.versions import IndexDir, current_manifest
from rag.types import AnswerRequest, SearchResult
from tests.conftest import free_port

pytestmark = pytest.mark.slow

QUESTION = AnswerRequest("NVIDIA data center revenue", top_k=5, filters=Filters(), mode="dense", auto_filters=False)


@pytest.fixture(scope="module")
def two_versions(small_index, tmp_path_factory):
    """The small index (three filings, v000001) and a v000002 without NVIDIA's filing, current."""
    root = tmp_path_factory.mktemp("reload") / "index"
    shutil.copytree(small_index, root)
    docs = root.parent / "docs"
    shutil.copytree(current_manifest(small_index).docs_dir, docs)
    (docs / "2022 Q3 NVDA.pdf").unlink()
    assert run_ingest(docs, root, load_settings(None), prune=True).version == "v000002"
    return root


@pytest.fixture(scope="module")
def retriever(ray_cluster, two_versions):
    from ray import serve

    from serving.deployments import RetrieverDeployment

    settings = load_settings(
        None, ["serve.reload_interval_s=0.5", "retrieval.mode=dense", f"serve.collections.default.index={two_versions}"]
    )
    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    handle = serve.run(
        RetrieverDeployment.options(num_replicas=2, ray_actor_options={"num_cpus": 0.1}).bind(
            settings.model_dump_json()
        ),
        name="reload",
        route_prefix=None,
    )
    yield handle
    serve.shutdown()  # the next module starts Serve with HTTP options of its own


def _search(handle) -> SearchResult:
    return handle.search.remote(QUESTION).result(timeout_s=60)


def _versions(handle, calls: int = 12) -> set[str]:
    """What the replicas serve, over enough calls to reach both of them."""
    return {handle.info.remote().result(timeout_s=30)["collections"]["default"]["version"] for _ in range(calls)}


def test_a_new_current_version_goes_live_on_every_replica_while_queries_run(retriever, two_versions):
    assert _versions(retriever) == {"v000002"}
    assert "2022 Q3 NVDA.pdf" not in {c.file for c in _search(retriever).chunks}

    results, errors, stop = [], [], threading.Event()

    def query_continuously() -> None:
        while not stop.is_set():
            try:
                found = _search(retriever)
                results.append((found.version, {c.file for c in found.chunks}))
            except Exception as err:
                errors.append(repr(err))

    client = threading.Thread(target=query_continuously)
    client.start()
    with IndexDir(two_versions).writing() as writer:
        writer.point_to("v000001")  # a rollback: a new current version, the quickest way to make one
    flipped = time.monotonic()
    while _versions(retriever) != {"v000001"}:
        assert time.monotonic() - flipped < 30, "the replicas did not follow the pointer"
    reload_s = time.monotonic() - flipped
    time.sleep(1)
    stop.set()
    client.join()

    assert errors == []
    assert {v for v, _ in results} == {"v000001", "v000002"}
    # Each answer's sources come from the version it reports: NVIDIA's filing only in the one that has it.
    assert all(("2022 Q3 NVDA.pdf" in files) == (version == "v000001") for version, files in results[-3:])
    assert all("2022 Q3 NVDA.pdf" not in files for version, files in results if version == "v000002")
    print(f"both replicas serving the new version {reload_s:.1f} s after the pointer moved")


def _publish_broken(root, damage) -> str:
    """A copy of the current version, damaged by ``damage(staged_directory)``, published as the current one."""
    with IndexDir(root).writing() as writer, writer.staging() as staged:
        shutil.copytree(IndexDir(root).current().path, staged, dirs_exist_ok=True)
        damage(root, staged)
        return writer.publish(staged, keep=5)


def _counts_disagree(root, staged) -> None:
    manifest = staged / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"vectors": ', '"vectors": 1', 1))


def _cut_short(root, staged) -> None:
    """The version's first segment copied to a new one whose FAISS index is cut short, listed in its place."""
    manifest = json.loads((staged / "manifest.json").read_text())
    segment = manifest["segments"][0]
    copy = root / "segments" / f"{segment['name'][:7]}-cut"
    shutil.copytree(root / "segments" / segment["name"], copy)
    (copy / "faiss.index").write_bytes((copy / "faiss.index").read_bytes()[:100])
    segment["name"] = copy.name
    (staged / "manifest.json").write_text(json.dumps(manifest))


def test_a_version_that_fails_its_checks_is_not_served(retriever, two_versions):
    serving = _versions(retriever)
    for damage in (_counts_disagree, _cut_short):
        broken = _publish_broken(two_versions, damage)
        time.sleep(3)
        assert IndexDir(two_versions).current_name() == broken and _versions(retriever) == serving, damage.__name__
        assert _search(retriever).chunks
