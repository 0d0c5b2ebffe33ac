from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SEC_DIR = REPO.parent / "shared" / "datasets" / "sec-10q"
SEC_DOCS = SEC_DIR / "docs"
SMALL_INDEX_FILES = ["2023 Q3 AAPL.pdf", "2023 Q2 AAPL.pdf", "2022 Q3 NVDA.pdf"]
# For services whose tests are not about the prompt: a 2,000-token prompt (the default budget) costs the 135M model
# 7 s of prefill on two cores, one of 640 tokens 2 s. Retrieval and citations do not depend on it.
SHORT_PROMPTS = "llm.max_prompt_tokens=640"


def needs_command(command: str, install: str) -> None:
    """Skip where ``command`` is not installed, saying what to install. CI installs every one (.ci/run) and sets
    RAG_TESTS_REQUIRE_COMMANDS=1, so that there a missing one fails the test instead of skipping what it proves."""
    if shutil.which(command):
        return
    message = f"needs {command}, not found on the PATH: {install}"
    if os.environ.get("RAG_TESTS_REQUIRE_COMMANDS") == "1":
        pytest.fail(message)
    pytest.skip(message)


TESSERACT = "apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim fonts-wqy-microhei"


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


@pytest.fixture(scope="session")
def small_index(ray_cluster, sec_docs, tmp_path_factory):
    """Two Apple filings and one of NVIDIA's ingested once, for the search, serving and eval tests."""
    from ingest.job import run_ingest
    from rag.config import load_settings
    from tests.pdf_factory import copy_docs

    docs = copy_docs(SMALL_INDEX_FILES, sec_docs, tmp_path_factory.mktemp("serve-docs"))
    index_dir = tmp_path_factory.mktemp("serve-index") / "index"
    run_ingest(docs, index_dir, load_settings(None, ["ingest.embed.actors=2", "ingest.embed.num_cpus=0.5"]))
    return index_dir


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now, and never one handed out before in this session: the kernel may give a port it has just
    given again, and a Ray node started with two equal ports fails (seen in CI: its metrics and its dashboard
    agent both on 33647)."""
    import socket

    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


SERVE_START_ATTEMPTS = 3


def _gcs_log_tail(lines: int = 40) -> str:
    import ray

    log = Path(ray._private.worker.global_worker.node.get_logs_dir_path()) / "gcs_server.out"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.is_file() else f"({log} is missing)"


def start_app(index_dir, overrides: list[str]) -> str:
    """Deploy the application graph with Serve on this machine's loopback; returns its base URL once ready.
    ``index_dir``: served as the collection named default; None when the overrides configure the collections."""
    import time

    import httpx
    import ray
    from ray import serve

    from serving.app import build_app

    port = free_port()
    for attempt in range(1, SERVE_START_ATTEMPTS + 1):
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
            break
        except ray.exceptions.GetTimeoutError:
            # Seen in CI: the GCS of the session's cluster, on two busy cores, left a name lookup unanswered for its
            # 60 s. What is tested here is the service, so it is asked again; the GCS's own log says why it was slow.
            if attempt == SERVE_START_ATTEMPTS:
                raise TimeoutError(
                    f"serve.start: the GCS answered none of {attempt} lookups; its log ends:\n{_gcs_log_tail()}"
                ) from None
            logging.getLogger(__name__).warning("serve.start: the GCS did not answer in time (try %d)", attempt)
            time.sleep(20)
    serve.run(build_app({"index": index_dir and str(index_dir), "set": overrides}), name="rag", route_prefix="/")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=10).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise TimeoutError(f"the service at {url} did not become ready")


def wait_served(url: str, collection: str, version: str, headers: dict | None = None, timeout: float = 60) -> None:
    """Until every retriever replica of the service at ``url`` serves ``version`` of ``collection``."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    while True:
        view = httpx.get(f"{url}/v1/collections/{collection}", headers=headers, timeout=30).json()
        if view["replicas"] and set(view["replicas"].values()) == {version}:
            return
        assert time.monotonic() < deadline, view
        time.sleep(0.5)


def upload(url: str, collection: str, files: list[tuple[str, bytes]], headers: dict | None = None):
    """The service's answer to ``files`` (name, content) posted to ``collection``'s documents."""
    import httpx

    return httpx.post(
        f"{url}/v1/collections/{collection}/documents",
        headers=headers,
        timeout=120,
        files=[("files", (name, data, "application/pdf")) for name, data in files],
    )
