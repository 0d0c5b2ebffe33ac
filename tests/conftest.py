from __future__ import annotations

import logging
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SEC_DIR = REPO.parent / "shared" / "datasets" / "sec-10q"
SEC_DOCS = SEC_DIR / "docs"


@pytest.fixture(scope="session")
def sec_docs() -> Path:
    if not SEC_DOCS.is_dir():
        pytest.fail(f"the SEC 10-Q dataset is expected at {SEC_DOCS} (shared/ beside the repository)")
    return SEC_DOCS


@pytest.fixture(scope="session")
def ray_cluster():
    """Two Ray nodes on this machine, started once per session: the head with two logical GPUs, a CPU-only worker.

    Fractional-GPU placement and multi-node spreading are both real on it, with no CUDA anywhere.
    """
    import ray
    from ray.cluster_utils import Cluster

    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "num_gpus": 2, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()
