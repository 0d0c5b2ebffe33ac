"""Where the embedding actors run: fractional logical GPUs on a CPU machine, and across two Ray nodes."""

from __future__ import annotations

import pytest

from ingest.job import IngestError, run_ingest
from rag.config import load_settings
from tests.pdf_factory import text_pdf

TOPICS = ["revenue", "inventory", "leases", "goodwill", "taxes", "dividends", "litigation", "segments"]


@pytest.fixture(scope="module")
def many_small_docs(tmp_path_factory):
    """Eight files, one block each, so every actor of a pool of four gets work."""
    folder = tmp_path_factory.mktemp("small")
    for topic in TOPICS:
        text_pdf(folder / f"{topic}.pdf", [f"This page discusses {topic} in section {i}. " * 60 for i in range(3)])
    return folder


def test_four_actors_share_one_logical_gpu_and_fall_back_to_cpu(ray_cluster, many_small_docs, tmp_path):
    settings = load_settings(
        None,
        ["ingest.embed.actors=4", "ingest.embed.num_gpus=0.25", "ingest.embed.num_cpus=0.25", "ingest.embed.batch_size=8"],
    )
    result = run_ingest(many_small_docs, tmp_path / "index", settings)
    workers = result.manifest.run.embed_workers
    assert len(workers) == 4
    # All four were placed on the one GPU at the same time (4 x 0.25), and ran on the CPU: no CUDA here.
    assert {w.worker.split(":gpu=")[1] for w in workers} == {"0"}
    assert {w.device for w in workers} == {"cpu"}
    assert sum(w.chunks for w in workers) == result.chunks_total


def test_work_spreads_over_both_nodes(ray_cluster, many_small_docs, tmp_path):
    settings = load_settings(None, ["ingest.embed.actors=3", "ingest.embed.num_cpus=1", "ingest.embed.batch_size=8"])
    result = run_ingest(many_small_docs, tmp_path / "index", settings)
    nodes = {w.worker.split(":")[0] for w in result.manifest.run.embed_workers}
    assert len(nodes) == 2, result.manifest.run.embed_workers


def test_a_pool_larger_than_the_cluster_fails_at_once(ray_cluster, many_small_docs, tmp_path):
    with pytest.raises(IngestError, match="GPUs"):
        run_ingest(many_small_docs, tmp_path / "index", load_settings(None, ["ingest.embed.num_gpus=1", "ingest.embed.actors=2"]))
    with pytest.raises(IngestError, match="CPUs"):
        run_ingest(many_small_docs, tmp_path / "index", load_settings(None, ["ingest.embed.actors=8", "ingest.embed.num_cpus=1"]))
