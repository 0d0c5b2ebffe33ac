"""Where the embedding actors run: fractional logical GPUs on a CPU machine, and across two Ray nodes."""

from __future__ import annotations

import threading
import time

import pytest

from ingest.cluster import PoolDoesNotFit, admit, fit_pool, running_executor, sized_pool
from ingest.job import IngestError, run_ingest
from rag.config import load_settings
from rag.store.versions import current_manifest
from tests.pdf_factory import text_pdf

TOPICS = ["revenue", "inventory", "leases", "goodwill", "taxes", "dividends", "litigation", "segments"]


@pytest.fixture(scope="module")
def many_small_docs(tmp_path_factory):
    """Eight files, one block each, so every actor of a pool of four gets work."""
    folder = tmp_path_factory.mktemp("small")
    for topic in TOPICS:
        text_pdf(folder / f"{topic}.pdf", [f"This page discusses {topic} in section {i}. " * 60 for i in range(3)])
    return folder


def test_four_actors_share_one_gpu_and_fall_back_to_cpu(ray_cluster, many_small_docs, tmp_path):
    import threading
    import time

    import ray

    settings = load_settings(
        None,
        [
            "ingest.embed.actors=4",
            "ingest.embed.num_gpus=0.25",
            "ingest.embed.num_cpus=0.25",
            "ingest.embed.batch_size=8",
        ],
    )
    total_gpus = ray.available_resources().get("GPU", 0)
    outcome = {}
    job = threading.Thread(
        target=lambda: outcome.update(result=run_ingest(many_small_docs, tmp_path / "index", settings))
    )
    job.start()
    free_gpu = []
    while job.is_alive():
        free_gpu.append(ray.available_resources().get("GPU", 0))
        time.sleep(0.2)
    job.join()
    result = outcome["result"]
    # At some moment one whole GPU was held: the four 0.25 actors were placed at once, nothing else uses GPUs.
    assert min(free_gpu) == total_gpus - 1
    workers = result.manifest.run.embed_workers
    assert len(workers) >= 2
    assert all(len(w.worker.split(":gpu=")[1].split(",")) == 1 for w in workers)  # a share of one GPU each
    # CUDA is absent here, so each actor fell back to the CPU.
    assert {w.device for w in workers} == {"cpu"}
    assert sum(w.chunks for w in workers) == result.chunks_total


@pytest.mark.slow  # a second pool of model-loading actors, on both nodes: half a minute
def test_work_spreads_over_both_nodes(ray_cluster, many_small_docs, tmp_path):
    # 1.5 CPUs each: no node of two CPUs holds both actors, so Ray must place one on each node.
    settings = load_settings(None, ["ingest.embed.actors=2", "ingest.embed.num_cpus=1.5", "ingest.embed.batch_size=8"])
    result = run_ingest(many_small_docs, tmp_path / "index", settings)
    nodes = {w.worker.split(":")[0] for w in result.manifest.run.embed_workers}
    assert len(nodes) == 2, result.manifest.run.embed_workers


def test_a_pool_larger_than_the_cluster_fails_at_once(ray_cluster, many_small_docs, tmp_path):
    with pytest.raises(IngestError, match="GPUs"):
        run_ingest(
            many_small_docs,
            tmp_path / "index",
            load_settings(None, ["ingest.embed.num_gpus=1", "ingest.embed.actors=3"]),
        )
    with pytest.raises(IngestError, match="CPUs"):
        run_ingest(
            many_small_docs,
            tmp_path / "index",
            load_settings(None, ["ingest.embed.actors=8", "ingest.embed.num_cpus=1"]),
        )


def test_a_running_execution_is_found_and_stopped_from_another_thread(ray_cluster):
    """The one reach into Ray Data's internals (how a shrunk cluster stops a run): when an upgrade moves them, this
    fails here rather than a node loss going unhandled."""
    import ray

    def slow(batch):  # defined here so that Ray pickles it by value: workers cannot import a test module
        time.sleep(0.3)
        return batch

    dataset = ray.data.range(400, override_num_blocks=40).map_batches(slow)
    rows: list = []
    errors: list[BaseException] = []

    def consume():
        try:
            rows.extend(dataset.iter_batches(batch_size=None))
        except BaseException as error:  # a failed task must fail the test, not die with the thread
            errors.append(error)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    deadline, executor = time.monotonic() + 60, None
    while executor is None and time.monotonic() < deadline:  # found before its first output too
        executor = running_executor(dataset)
        time.sleep(0.1)
    assert executor is not None
    executor.shutdown(force=True)
    consumer.join(60)
    assert not consumer.is_alive()
    assert errors == []
    assert len(rows) < 40  # stopped early


def test_the_pool_is_fitted_to_what_a_shrunk_cluster_has_left():
    two = load_settings(None, ["ingest.embed.actors=2"])  # 2 actors x 0.5 CPU, 0.5 CPU for parsing
    assert fit_pool(two, {"CPU": 1}).ingest.embed.actors == 1
    assert fit_pool(two, {"CPU": 6}).ingest.embed.actors == 2  # never more than configured
    with pytest.raises(PoolDoesNotFit, match="CPUs"):
        fit_pool(two, {"CPU": 0.75})
    gpus = load_settings(None, ["ingest.embed.actors=4", "ingest.embed.num_gpus=0.25"])
    assert fit_pool(gpus, {"CPU": 8, "GPU": 0.5}).ingest.embed.actors == 2
    assert gpus.ingest.embed.actors == 4  # the caller's settings are left as they were


def test_an_auto_pool_takes_one_actor_per_core_or_gpu_share_it_is_given():
    default = load_settings(None, [])  # actors: auto, each 0.5 CPU and one torch thread
    assert [fit_pool(default, {"CPU": n}).ingest.embed.actors for n in (1, 2, 6, 16)] == [1, 2, 6, 16]
    threads = load_settings(None, ["ingest.embed.num_cpus=2"])  # two threads each: one actor per two cores
    assert [fit_pool(threads, {"CPU": n}).ingest.embed.actors for n in (4, 9)] == [1, 4]
    gpus = load_settings(None, ["ingest.embed.num_gpus=0.25", "ingest.embed.num_cpus=1"])
    assert fit_pool(gpus, {"CPU": 16, "GPU": 2}).ingest.embed.actors == 8
    assert fit_pool(gpus, {"CPU": 4, "GPU": 2}).ingest.embed.actors == 3  # and a parsing task beside them
    assert sized_pool(gpus, {"CPU": 16, "GPU": 2}).ingest.embed.actors == 8
    two = load_settings(None, ["ingest.embed.actors=2"])
    assert sized_pool(two, {"CPU": 16}) is two  # a set size stays, to be checked against the cluster


def test_a_job_is_admitted_with_what_is_free_and_capped_to_it():
    default = load_settings(None, [])
    job = admit(default, {"CPU": 2.0}, files=20)  # beside a service holding the rest: the pool, and parsing
    assert (job.ingest.embed.actors, job.ingest.max_cpus) == (2, 2.0)
    three = admit(default, {"CPU": 8.0}, files=3)  # no more actors nor parsing tasks than files
    assert (three.ingest.embed.actors, three.ingest.max_cpus) == (3, 3.0)
    one = admit(default, {"CPU": 8.0}, files=1)  # an actor more than files would load its model for nothing
    assert (one.ingest.embed.actors, one.ingest.max_cpus) == (1, 1.0)
    assert admit(default, {"CPU": 1.2}, files=5).ingest.embed.actors == 1
    with pytest.raises(PoolDoesNotFit):
        admit(default, {"CPU": 0.5}, files=5)
    assert default.ingest.max_cpus is None and default.ingest.embed.actors == "auto"


@pytest.mark.slow  # a second process joining the cluster: 19 s
def test_cli_joins_an_existing_cluster(ray_cluster, many_small_docs, tmp_path):
    """`rag ingest --address` runs its work on the cluster it is pointed at, not on a Ray of its own."""
    import os
    import subprocess
    import sys

    import ray

    index_dir = tmp_path / "index"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "ingest",
            str(many_small_docs),
            "--index",
            str(index_dir),
            "--address",
            ray_cluster.address,
            "--set",
            "ingest.embed.batch_size=8",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    workers = current_manifest(index_dir).model_dump()["run"]["embed_workers"]
    cluster_nodes = {node["NodeID"][:8] for node in ray.nodes() if node["Alive"]}
    assert workers and {w["worker"].split(":")[0] for w in workers} <= cluster_nodes
