"""A node lost mid-run on a `ray start` cluster: the ingestion fits its pool to what is left and finishes (the
published index untouched until then); the service replaces the replicas it lost and no request hangs.

Each test starts its own two-node cluster, kills the worker node's processes with SIGKILL, and stops the rest."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import threading
import time

import httpx
import pytest

from rag.store.versions import IndexDir, current_manifest
from tests.conftest import REPO, SHORT_PROMPTS, free_port
from tests.pdf_factory import copy_docs
from tests.ray_cluster import RayCluster, stop_service, tool, wait_until

pytestmark = pytest.mark.slow

FIRST = ["2023 Q3 AAPL.pdf", "2022 Q3 NVDA.pdf"]
MORE = [
    "2023 Q2 AAPL.pdf",
    "2023 Q1 AMZN.pdf",
    "2023 Q2 INTC.pdf",
    "2023 Q1 NVDA.pdf",
    "2023 Q1 INTC.pdf",
    "2022 Q3 AMZN.pdf",
]
APPLE_Q3 = "What were Apple's total net sales for the quarter ended July 1, 2023?"
NODE_DEATH_S = 20  # how long Ray takes to declare a silent node dead (its health check), with room


@pytest.fixture
def cluster():
    nodes = RayCluster(env=dict(os.environ))
    try:
        yield nodes
    finally:
        nodes.stop()


def test_losing_a_node_mid_ingest_refits_the_pool_and_finishes(cluster, sec_docs, tmp_path):
    # One CPU per node, as in the report: the default pool (one 0.5-CPU actor per core: 2, + 0.5 for parsing) needs
    # both nodes.
    cluster.start_head(num_cpus=1)
    worker = cluster.add_worker(num_cpus=1)
    # The first 20 pages of each filing: the run still outlasts the node's loss and the pool's refit.
    docs, index = copy_docs(FIRST, sec_docs, tmp_path / "docs", pages=20), tmp_path / "index"
    ingest = [tool("rag"), "ingest", str(docs), "--index", str(index), "--address", cluster.address]
    first = subprocess.run(ingest, capture_output=True, text=True, timeout=600, cwd=REPO, env=cluster.env)
    assert first.returncode == 0, (first.stdout + first.stderr)[-6000:]
    published = IndexDir(index).current_name()
    copy_docs(MORE, sec_docs, docs, pages=20)

    job = subprocess.Popen(
        ingest, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=cluster.env
    )
    lines: list[str] = []
    # Killed as the pipeline starts, not at a progress line: the first embedded block can reach the driver late
    # (in 2 of 8 runs here only as the run was finishing, so nothing was lost). The run takes 40 s or more.
    for line in job.stdout:
        lines.append(line)
        if "running the pipeline over" in line:
            break
    killed_at = time.monotonic()
    cluster.kill(worker)
    assert IndexDir(index).current_name() == published
    lines += job.stdout.readlines()
    job.wait(timeout=600)
    output = "".join(lines)
    assert job.returncode == 0, output[-4000:]
    assert time.monotonic() - killed_at < 540
    assert "running the pipeline again with 1 embedding actors" in output, output[-4000:]
    assert IndexDir(index).current_name() != published
    assert {e["file"]: e["status"] for e in current_manifest(index).model_dump()["files"]} == {
        **{f: "skipped_unchanged" for f in FIRST},
        **{f: "indexed" for f in MORE},
    }


def test_losing_a_node_mid_serve_replaces_its_replicas(cluster, small_index):
    cluster.start_head(num_cpus=4)
    worker = cluster.add_worker(num_cpus=2)
    port = free_port()
    service = [
        f"serve.port={port}",
        "llm.max_new_tokens=8",
        SHORT_PROMPTS,
        "serve.generator.num_replicas=2",
        "serve.generator.ray_actor_options={num_cpus: 1}",
        "serve.retriever.num_replicas=2",
        "serve.retriever.ray_actor_options={num_cpus: 0.25}",
    ]
    server = subprocess.Popen(
        [
            tool("rag"),
            "serve",
            "--index",
            str(small_index),
            "--address",
            cluster.address,
            *[a for s in service for a in ("--set", s)],
        ],
        cwd=REPO,
        env=cluster.env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/readyz", timeout=10).status_code == 200, "a ready service", 300, [server])
        wait_until(
            lambda: all(len(_replica_nodes(cluster).get(d, [])) == 2 for d in ("Generator", "Retriever")),
            "every replica running",
            240,
        )
        before = _replica_nodes(cluster)
        assert len({node for nodes in before.values() for node in nodes}) == 2, before  # Serve spread them
        asked = httpx.post(f"{url}/query", json={"question": APPLE_Q3, "top_k": 2}, timeout=150)
        assert asked.status_code == 200 and asked.json()["citations"][0]["file"] == "2023 Q3 AAPL.pdf", asked.text

        outcomes: list[tuple[object, float, float]] = []  # (status or error, sent at, seconds)
        stop = threading.Event()

        def client() -> None:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    status = httpx.post(
                        f"{url}/query", json={"question": "What were Apple's total net sales?", "top_k": 2}, timeout=150
                    ).status_code
                except httpx.HTTPError as err:
                    status = type(err).__name__
                outcomes.append((status, sent, time.monotonic() - sent))

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            clients = [pool.submit(client) for _ in range(3)]
            wait_until(lambda: sum(1 for s, _, _ in outcomes if s == 200) >= 3, "three answers", 300)
            killed_at = time.monotonic()
            cluster.kill(worker)
            # Serve replaces what ran on the lost node with replicas on the head, and answers again.
            wait_until(lambda: _all_on_one_node(_replica_nodes(cluster), before), "replicas replaced on the head", 240)
            wait_until(
                lambda: sum(1 for s, sent, _ in outcomes if s == 200 and sent > killed_at) >= 3,
                "three answers after the loss",
                240,
            )
            stop.set()
            for c in clients:
                c.result(timeout=200)
        after = [(s, round(sent + d - killed_at, 1), d) for s, sent, d in outcomes if sent + d > killed_at]
        assert max(d for _, _, d in after) < 120, after  # nothing hung on the dead replicas
        # Behind a live ingress, a request on a lost retriever or generator replica gets the ingress's retryable 503.
        # What the lost node itself held fails at once, the way Serve fails it: connections open on its HTTP proxy
        # break (every node runs one; on one machine they share the port through SO_REUSEPORT), and where the
        # ingress replica was there, Serve's proxy answers the requests it held with 500.
        (head,) = {node for nodes in _replica_nodes(cluster).values() for node in nodes}
        ingress_lost = before["Ingress"] != [head]
        lost_with_the_node = [(s, ended) for s, ended, _ in after if not isinstance(s, int) or s == 500]
        assert all(ended < NODE_DEATH_S for _, ended in lost_with_the_node), after
        allowed = {200, 503, 500} if ingress_lost else {200, 503}
        assert {s for s, _, _ in after if isinstance(s, int)} <= allowed, after
    finally:
        stop_service(server)


def _replica_nodes(cluster: RayCluster) -> dict[str, list[str]]:
    """deployment -> the node ids of its running replicas, from the dashboard's Serve API."""
    apps = httpx.get(f"{cluster.dashboard}/api/serve/applications/", headers=cluster.headers, timeout=10).json()[
        "applications"
    ]
    return {
        name: [r["node_id"] for r in d["replicas"] if r["state"] == "RUNNING"]
        for name, d in apps["rag"]["deployments"].items()
    }


def _all_on_one_node(now: dict[str, list[str]], before: dict[str, list[str]]) -> bool:
    """Every deployment back at its replica count, all of them on one node."""
    counts = all(len(now.get(name, [])) == len(nodes) for name, nodes in before.items())
    return counts and len({node for nodes in now.values() for node in nodes}) == 1
