"""The product on a multi-process Ray cluster started with `ray start` (a head with its dashboard and job server, and
a worker), run the Ray way: Ray Jobs for ingestion and evaluation, `serve deploy` for the service (`rag serve
--address` is driven on such a cluster by tests/test_cluster_faults.py), each node's Prometheus endpoint for the
metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import defaultdict

import httpx
import pytest
import yaml

from tests.conftest import REPO, SEC_DIR, SHORT_PROMPTS, free_port
from tests.pdf_factory import copy_docs
from tests.ray_cluster import RayCluster, tool, wait_until

pytestmark = pytest.mark.slow

KEY = "cluster-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FILES = ["2023 Q3 AAPL.pdf", "2022 Q3 NVDA.pdf"]
QUESTION = "What were Apple's total net sales for the quarter ended July 1, 2023?"
# Small replicas, so the service fits beside a job on two small nodes; short answers, so the model is not the test.
SERVICE = [
    "llm.max_new_tokens=16",
    SHORT_PROMPTS,
    "serve.generator.ray_actor_options={num_cpus: 1}",
    "serve.retriever.ray_actor_options={num_cpus: 0.25}",
]


@pytest.fixture(scope="module")
def cluster():
    # The key is in the environment of `ray start`, as it would be on the head of a real cluster (a Secret in the
    # head pod's environment): serve deploy's application builder finds it there.
    nodes = RayCluster(env={**os.environ, "RAG_API_KEY": KEY})
    try:
        nodes.start_head(num_cpus=3)
        nodes.add_worker(num_cpus=2)
        yield nodes
    finally:
        nodes.stop()


def submit(cluster: RayCluster, entrypoint: list[str], timeout_s: float = 900) -> str:
    """``ray job submit`` with this repository as the working directory; the job's output once it succeeded."""
    done = subprocess.run(
        [tool("ray"), "job", "submit", "--address", cluster.dashboard, "--working-dir", str(REPO), "--", *entrypoint],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO,
        env=cluster.env,
    )
    assert done.returncode == 0 and "succeeded" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def cluster_index(cluster, sec_docs, tmp_path_factory):
    """Ingested by a Ray Job on the cluster, into a folder every node sees (on this machine, any folder)."""
    root = tmp_path_factory.mktemp("cluster")
    docs = copy_docs(FILES, sec_docs, root / "docs", pages=20)  # cover, statements and notes: the test is the cluster
    index = root / "index"
    output = submit(cluster, [tool("rag"), "ingest", str(docs), "--index", str(index)])
    return index, output


def test_ray_job_ingests_on_the_cluster(cluster_index):
    from rag.store.versions import open_index

    index, output = cluster_index
    version = (index / "CURRENT").read_text().strip()
    manifest = json.loads((index / "versions" / version / "manifest.json").read_text())
    assert {e["file"]: e["status"] for e in manifest["files"]} == {f: "indexed" for f in FILES}
    chunks = open_index(index).chunks
    assert set(chunks["file"]) == set(FILES) and len(chunks) == manifest["index"]["vectors"] > 100
    # The job's own progress lines, not Ray Data's per-operator bars, in the job's (non-interactive) log.
    assert re.search(r"ingest: indexing, 2/2 files read, [\d,]+ pages, [\d,]+ chunks embedded", output), output[-2000:]
    assert "Running Dataset" not in output and "Tasks:" not in output


def test_ray_job_evaluates_on_the_cluster(cluster, cluster_index, tmp_path):
    index, _ = cluster_index
    out = tmp_path / "report"
    submit(
        cluster,
        [
            tool("rag"),
            "eval",
            "--dataset",
            str(SEC_DIR / "qna_data.csv"),
            "--index",
            str(index),
            "--out",
            str(out),
            "--limit",
            "3",
            "--set",
            "llm.max_new_tokens=16",
            "--set",
            SHORT_PROMPTS,
        ],
    )
    report = json.loads((out / "report.json").read_text())
    assert report["overall"]["questions"] == 3 and report["failures"] == 0 and "answers" in report["overall"]
    assert (out / "report.md").stat().st_size > 0 and len((out / "rows.jsonl").read_text().splitlines()) >= 3


def _wait_ready(url: str) -> None:
    wait_until(lambda: httpx.get(f"{url}/readyz", timeout=10).status_code == 200, f"ready service at {url}", 300)


def _ask(url: str) -> dict:
    r = httpx.post(f"{url}/query", json={"question": QUESTION, "top_k": 3}, headers=AUTH, timeout=180)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def deployed(cluster, cluster_index, tmp_path_factory):
    """configs/serve.yaml, with the paths a cluster needs made absolute, deployed with `serve deploy`."""
    index, _ = cluster_index
    config = yaml.safe_load((REPO / "configs" / "serve.yaml").read_text())
    config["http_options"]["port"] = free_port()
    (app,) = config["applications"]
    app["args"].update(index=str(index), config=str(REPO / "configs" / "default.yaml"))
    app["args"]["set"] += SERVICE
    path = tmp_path_factory.mktemp("serve-config") / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    deploy = subprocess.run(
        [tool("serve"), "deploy", str(path), "-a", cluster.dashboard],
        capture_output=True,
        text=True,
        timeout=120,
        env=cluster.env,
    )
    assert deploy.returncode == 0, deploy.stderr
    url = f"http://127.0.0.1:{config['http_options']['port']}"
    _wait_ready(url)
    yield url  # no `serve shutdown`: the cluster, Serve with it, is stopped right after this module


def test_serve_deploy_of_the_app_config(deployed):
    assert httpx.post(f"{deployed}/query", json={"question": QUESTION}, timeout=30).status_code == 401
    assert _ask(deployed)["citations"][0]["file"] == "2023 Q3 AAPL.pdf"


def _scrape(cluster: RayCluster) -> dict[str, list[tuple[dict, float]]]:
    """Every node's Prometheus endpoint: metric name -> (labels, value) samples."""
    samples: dict[str, list[tuple[dict, float]]] = defaultdict(list)
    line = re.compile(r"^(\w+)(?:\{(.*)\})? (\S+)$")
    for node in cluster.nodes:
        for text in httpx.get(node.metrics_url, timeout=30).text.splitlines():
            match = line.match(text)
            if match:
                labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
                samples[match.group(1)].append((labels, float(match.group(3))))
    return samples


def _unmet(metrics: dict, index) -> list[str]:
    """What the scraped metrics do not (yet) show, after test_metrics_reach_prometheus's queries."""

    def total(name: str, **labels) -> float:
        return sum(v for tags, v in metrics.get(name, []) if all(tags.get(k) == x for k, x in labels.items()))

    current = (index / "CURRENT").read_text().strip()
    chunks = json.loads((index / "versions" / current / "manifest.json").read_text())["index"]["vectors"]
    retrievals = total("ray_rag_retrieval_seconds_count", collection="default")
    answers = total("ray_rag_time_to_first_token_seconds_count")
    checks = {
        "3 answered /query": total("ray_rag_requests_total", route="/query", status="200", collection="default") >= 3,
        "a 401 on /query": total("ray_rag_requests_total", route="/query", status="401") >= 1,
        "an answered chat": total("ray_rag_requests_total", route="/v1/chat/completions", status="200") >= 1,
        "request latencies": total("ray_rag_request_seconds_count", route="/query") >= 3,
        "retrievals, each under 30 s": retrievals >= 4
        and 0 < total("ray_rag_retrieval_seconds_sum", collection="default") / retrievals < 30,
        "first tokens, each under 120 s": answers >= 4
        and 0 < total("ray_rag_time_to_first_token_seconds_sum") / answers < 120,
        "gaps between tokens": total("ray_rag_inter_token_seconds_count") >= 2 * answers,
        "1 to 16 tokens per answer": answers <= total("ray_rag_generated_tokens_total") <= 16 * answers,
        "batch gauges": all(
            metrics.get(n) and all(v >= 0 for _, v in metrics[n])
            for n in ("ray_rag_decode_batch_size", "ray_rag_waiting_requests")
        ),
        "the version served": {v for _, v in metrics.get("ray_rag_index_version", [])} == {int(current.lstrip("v"))},
        "its chunks": {v for _, v in metrics.get("ray_rag_index_chunks", [])} == {chunks},
        # Serve's own tags, so a dashboard can split by replica.
        "Serve's tags": all(
            tags.get("deployment") == "Retriever" and tags.get("replica")
            for tags, _ in metrics.get("ray_rag_index_chunks", [])
        ),
    }
    return [what for what, ok in checks.items() if not ok]


def test_metrics_reach_prometheus(cluster, cluster_index, deployed):
    assert httpx.post(f"{deployed}/query", json={"question": QUESTION}, timeout=30).status_code == 401
    for _ in range(3):
        _ask(deployed)
    chat = {"messages": [{"role": "user", "content": QUESTION}], "stream": True, "max_tokens": 8}
    with httpx.stream("POST", f"{deployed}/v1/chat/completions", json=chat, headers=AUTH, timeout=180) as r:
        assert r.status_code == 200 and list(r.iter_lines())
    index, _ = cluster_index
    deadline = time.monotonic() + 90  # each node's agent exports every few seconds
    while (unmet := _unmet(metrics := _scrape(cluster), index)) and time.monotonic() < deadline:
        time.sleep(3)
    assert not unmet, {
        name: [(tags.get("collection"), tags.get("deployment"), v) for tags, v in samples]
        for name, samples in metrics.items()
        if name.startswith("ray_rag_index")
    }
