"""`rag serve` killed (SIGKILL) while an ingestion job runs and another collection's upload waits, then started again:
every accepted document is indexed, the upload is cited, and its job's id, given before the kill, still answers. A
local Ray of the service's own, as on a laptop (slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import pytest

from tests.conftest import REPO, SHORT_PROMPTS, free_port, upload, wait_served
from tests.pdf_factory import copy_docs
from tests.ray_cluster import stop_service, tool, wait_until

pytestmark = pytest.mark.slow

UPLOAD = "2023 Q2 AAPL.pdf"
WAITING = "2022 Q3 AAPL.pdf"  # in hr's folder at the first start
QUESTION = "What were Apple's total net sales for the three months ended April 1, 2023?"


def start(root, port: int) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": "local"}  # never a Ray that other tests started
    return subprocess.Popen(
        [
            tool("rag"),
            "serve",
            "--collection",
            f"sec={root / 'sec'}",
            "--collection",
            f"hr={root / 'hr'}",
            "--set",
            f"serve.port={port}",
            "--set",
            "serve.reload_interval_s=1",
            "--set",
            "llm.max_new_tokens=8",
            "--set",
            SHORT_PROMPTS,
        ],
        env=env,
        cwd=REPO,
        start_new_session=True,
    )


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def statuses(url: str, collection: str) -> dict[str, str]:
    documents = httpx.get(f"{url}/v1/collections/{collection}/documents", timeout=30).json()["data"]
    return {d["file"]: d["status"] for d in documents}


def test_an_accepted_upload_is_indexed_after_the_service_is_killed(sec_docs, tmp_path):
    # Their first pages (cover and statements): the test is about the jobs, not the filings' length.
    filings = copy_docs([UPLOAD, WAITING], sec_docs, tmp_path / "filings", pages=12)
    copy_docs([WAITING], filings, tmp_path / "hr" / "docs")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start(tmp_path, port)
    try:
        wait_until(lambda: ready(url), "the service", 300, [server])
        accepted = upload(url, "sec", [(UPLOAD, (filings / UPLOAD).read_bytes())])
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job"]["id"]
        time.sleep(8)
        assert statuses(url, "sec") == {UPLOAD: "pending"} and statuses(url, "hr") == {WAITING: "pending"}
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    # The service's Ray goes with it (its processes end once their driver has gone), and with it the port.
    wait_until(lambda: not ready(url), "the killed service's port to close", 60)

    restarted_at = time.monotonic()
    server = start(tmp_path, port)
    try:
        wait_until(lambda: ready(url), "the restarted service", 300, [server])
        wait_until(
            lambda: statuses(url, "sec") == {UPLOAD: "indexed"} and statuses(url, "hr") == {WAITING: "indexed"},
            "every accepted document indexed",
            600,
            [server],
        )
        print(f"restart to indexed: {time.monotonic() - restarted_at:.0f} s")
        wait_served(url, "sec", httpx.get(f"{url}/v1/collections/sec", timeout=30).json()["version"])
        answer = httpx.post(
            f"{url}/query", json={"question": QUESTION, "collection": "sec", "max_tokens": 1}, timeout=120
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["citations"][0]["file"] == UPLOAD
        jobs = [c["jobs"] for c in httpx.get(f"{url}/v1/collections", timeout=30).json()["data"]]
        assert jobs == [[], []], jobs
        # The job that took the upload is the one whose id the client was given, a run lost with the service kept.
        record = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()
        assert record["state"] == "succeeded" and f"+{UPLOAD}" in record["changes"], record
        assert all("Collections replica stopped" in a["error"] for a in record["attempts"][:-1]), record
    finally:
        stop_service(server)
