"""Collections through the service, over real HTTP: documents in and out, jobs, new versions live without a restart,
keys scoped to collections, hostile uploads. Real Serve, real Ray Data ingestion, real SEC filings (slow)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from cli.main import main as rag_main
from rag.store.versions import current_manifest
from tests.conftest import SHORT_PROMPTS, start_app, upload, wait_served
from tests.pdf_factory import bad_files, copy_docs

pytestmark = pytest.mark.slow

ADMIN, SEC_KEY, OTHER_KEY = "admin-key", "sec-key", "other-key"
KEYS = {"RAG_API_KEY": ADMIN, "RAG_KEY_SEC": SEC_KEY, "RAG_KEY_OTHER": OTHER_KEY}
AMAZON = ["2023 Q1 AMZN.pdf", "2023 Q2 AMZN.pdf", "2023 Q3 AMZN.pdf"]
QUESTION = "What were Amazon's total net sales for the quarter ended June 30, 2023?"


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def service(small_index, tmp_path_factory):
    """Two collections: sec, empty and writable; other, the small index (Apple and NVIDIA) with its documents."""
    from ray import serve

    root = tmp_path_factory.mktemp("collections")
    shutil.copytree(small_index, root / "other" / "index")
    shutil.copytree(current_manifest(small_index).docs_dir, root / "other" / "docs")
    overrides = [
        f"serve.collections.sec.index={root / 'sec' / 'index'}",
        f"serve.collections.sec.docs={root / 'sec' / 'docs'}",
        f"serve.collections.other.index={root / 'other' / 'index'}",
        f"serve.collections.other.docs={root / 'other' / 'docs'}",
        "serve.default_collection=other",
        "serve.scoped_keys=[{key_env: RAG_KEY_SEC, collections: [sec]},"
        " {key_env: RAG_KEY_OTHER, collections: [other]}]",
        "serve.reload_interval_s=1",
        "serve.max_upload_mb=2",
        "llm.max_new_tokens=8",
        SHORT_PROMPTS,
    ]
    os.environ.update(KEYS)
    try:
        url = start_app(None, overrides)
    finally:
        for name in KEYS:
            del os.environ[name]
    yield url, root
    serve.shutdown()


def wait_for(url: str, key: str, job: dict, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while job["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(1)
        job = httpx.get(f"{url}/v1/jobs/{job['id']}", headers=auth(key), timeout=30).json()
    return job


def live(url: str, key: str, collection: str, version: str) -> None:
    wait_served(url, collection, version, auth(key))


def ask(url: str, key: str, collection: str, question: str = QUESTION) -> httpx.Response:
    return httpx.post(
        f"{url}/query",
        headers=auth(key),
        timeout=120,
        json={"question": question, "collection": collection, "max_tokens": 1},
    )


@pytest.fixture(scope="module")
def amazon(sec_docs, tmp_path_factory) -> Path:
    """The first pages of three Amazon filings (cover, statements): the test is about the collection, not their size."""
    return copy_docs(AMAZON, sec_docs, tmp_path_factory.mktemp("amazon"), pages=10)


def test_documents_in_and_out_while_queries_run(service, amazon, monkeypatch, capsys):
    url, _ = service
    monkeypatch.setenv("RAG_API_KEY", SEC_KEY)  # what `rag docs` sends
    assert ask(url, SEC_KEY, "sec").status_code == 409  # nothing indexed yet, and it says so
    first = upload(url, "sec", [(n, (amazon / n).read_bytes()) for n in AMAZON[:2]], auth(SEC_KEY))
    assert first.status_code == 202, first.text
    # Uploads in a row join the job that is queued, or start one: never a queue of full runs.
    assert rag_main(["docs", "add", str(amazon / AMAZON[2]), "--endpoint", url, "--collection", "sec"]) == 0
    second = capsys.readouterr().out.split("job ")[-1].strip()
    jobs = {first.json()["job"]["id"], second}
    assert len(jobs) <= 2
    done = [wait_for(url, SEC_KEY, {"id": j, "state": "queued"}) for j in sorted(jobs)]
    assert {j["state"] for j in done} == {"succeeded"}, done
    last = max(done, key=lambda j: j["version"])
    assert last["result"]["indexed"] == 3 and last["result"]["chunks"] > 0
    # Every chunk of the version was embedded by one of the jobs (the second finds nothing left when the first
    # started after the third upload).
    assert sum(j["progress"]["chunks_embedded"] for j in done) == last["result"]["chunks"], done
    live(url, SEC_KEY, "sec", last["version"])

    listed = httpx.get(f"{url}/v1/collections/sec/documents", headers=auth(SEC_KEY), timeout=30).json()["data"]
    assert [(d["file"], d["status"]) for d in listed] == [(n, "indexed") for n in AMAZON]
    assert all(
        d["pages"] > 0 and d["chunks"] > 0 and d["metadata"]["company"] and d["language"] == "en" for d in listed
    )
    assert rag_main(["docs", "list", "--endpoint", url, "--collection", "sec"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:4]]
    assert [(row[-4], row[-1]) for row in rows] == [("indexed", "en")] * 3  # status ... language

    cited = {c["file"] for c in ask(url, SEC_KEY, "sec").json()["citations"]}
    assert cited == {"2023 Q2 AMZN.pdf"}

    errors, answered, stop = [], [], threading.Event()

    def query_continuously() -> None:
        while not stop.is_set():
            r = ask(url, ADMIN, "sec", "Amazon net sales by segment")
            if r.status_code != 200:
                errors.append((r.status_code, r.text[:200]))
            else:
                answered.append({c["file"] for c in r.json()["citations"]})

    client = threading.Thread(target=query_continuously)
    client.start()
    try:
        assert rag_main(["docs", "rm", "2023 Q2 AMZN.pdf", "--endpoint", url, "--collection", "sec", "--wait"]) == 0
        out = capsys.readouterr().out
        assert "succeeded: version" in out and "2 documents" in out
        version = out.split("version ")[1].split()[0]
        live(url, SEC_KEY, "sec", version)
        time.sleep(2)
    finally:
        stop.set()
        client.join()
    assert errors == [] and answered
    assert "2023 Q2 AMZN.pdf" not in {c["file"] for c in ask(url, SEC_KEY, "sec").json()["citations"]}
    assert "2023 Q2 AMZN.pdf" not in {
        d["file"]
        for d in httpx.get(f"{url}/v1/collections/sec/documents", headers=auth(SEC_KEY), timeout=30).json()["data"]
    }


def test_a_key_reaches_only_its_collections(service):
    url, _ = service
    missing = httpx.get(f"{url}/v1/collections/nonexistent", headers=auth(SEC_KEY), timeout=30)
    assert missing.status_code == 404
    # Collection B is, for a key scoped to A, exactly what a collection that does not exist is.
    for method, path, kwargs in [
        ("GET", "/v1/collections/other", {}),
        ("GET", "/v1/collections/other/documents", {}),
        ("DELETE", "/v1/collections/other/documents/2023 Q3 AAPL.pdf", {}),
        ("POST", "/query", {"json": {"question": "Apple net sales", "collection": "other"}}),
        ("POST", "/v1/chat/completions", {"json": {"model": "other", "messages": [{"role": "user", "content": "hi"}]}}),
    ]:
        r = httpx.request(method, f"{url}{path}", headers=auth(SEC_KEY), timeout=60, **kwargs)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["detail"] == missing.json()["detail"].replace("nonexistent", "other")
    assert upload(url, "other", [("x.pdf", b"%PDF-1.7\n")], auth(SEC_KEY)).status_code == 404
    # The default collection (other) is beyond this key too: a request that names none is refused the same way.
    assert (
        httpx.post(f"{url}/query", headers=auth(SEC_KEY), json={"question": "net sales"}, timeout=60).status_code == 404
    )

    names = {c["name"] for c in httpx.get(f"{url}/v1/collections", headers=auth(SEC_KEY), timeout=30).json()["data"]}
    assert names == {"sec"}
    assert {m["id"] for m in httpx.get(f"{url}/v1/models", headers=auth(SEC_KEY), timeout=30).json()["data"]} == {"sec"}
    everything = httpx.get(f"{url}/v1/collections", headers=auth(ADMIN), timeout=30).json()["data"]
    assert {c["name"] for c in everything} == {"sec", "other"}
    assert httpx.get(f"{url}/v1/collections", timeout=30).status_code == 401
    # A job in collection other, looked up with the sec key: not found, as if it did not exist.
    job = upload(url, "other", [("2023 Q3 AAPL.pdf", b"%PDF-1.7 not really a filing\n")], auth(OTHER_KEY))
    assert job.status_code == 202
    documents = httpx.get(f"{url}/v1/collections/other/documents", headers=auth(OTHER_KEY), timeout=30).json()["data"]
    assert {d["file"]: d["status"] for d in documents}["2023 Q3 AAPL.pdf"] == "pending"  # changed, not yet indexed
    assert httpx.get(f"{url}/v1/jobs/{job.json()['job']['id']}", headers=auth(SEC_KEY), timeout=30).status_code == 404
    finished = wait_for(url, OTHER_KEY, job.json()["job"])
    assert finished["state"] == "succeeded"
    # Replacing a filing with a broken file fails that file, with its reason; everything else stays indexed.
    documents = httpx.get(f"{url}/v1/collections/other/documents", headers=auth(OTHER_KEY), timeout=30).json()["data"]
    statuses = {d["file"]: (d["status"], d.get("reason")) for d in documents}
    assert statuses["2023 Q3 AAPL.pdf"][0] == "failed" and statuses["2023 Q3 AAPL.pdf"][1]
    assert statuses["2023 Q2 AAPL.pdf"][0] == statuses["2022 Q3 NVDA.pdf"][0] == "indexed"


def test_hostile_uploads_and_deletions_are_refused_and_nothing_indexed_is_lost(service, sec_docs, tmp_path):
    url, root = service
    before = sorted(p.name for p in (root / "sec" / "docs").iterdir())
    pdf = (sec_docs / "2023 Q1 AMZN.pdf").read_bytes()
    for name, data, status in [
        ("../escape.pdf", pdf, 400),
        ("a/b.pdf", pdf, 400),
        ("..\\b.pdf", pdf, 400),
        (".hidden.pdf", pdf, 400),
        ("notes.txt", b"plain text", 415),
        ("fake.pdf", b"plain text, named .pdf", 415),
        ("metadata.jsonl", b"{}", 400),
        ("big.pdf", (sec_docs / "2023 Q3 INTC.pdf").read_bytes(), 413),
        ("x" * 300 + ".pdf", pdf, 400),
    ]:
        r = upload(url, "sec", [("ok.pdf", pdf), (name, data)], auth(SEC_KEY))
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.json()["detail"]
    assert httpx.post(f"{url}/v1/collections/sec/documents", headers=auth(SEC_KEY), timeout=30).status_code == 400
    for name in ["../other/docs/2023 Q3 AAPL.pdf", "%2e%2e/%2e%2e/etc/passwd", "/etc/passwd", "nothing.pdf"]:
        r = httpx.delete(f"{url}/v1/collections/sec/documents/{name}", headers=auth(SEC_KEY), timeout=30)
        assert r.status_code == 404, (name, r.text)
    assert sorted(p.name for p in (root / "sec" / "docs").iterdir()) == before  # nothing written, nothing removed
    # A client's mistake is logged as a refusal at INFO, not as the service's failure with a traceback.
    import ray

    logs = "".join(
        f.read_text(errors="replace")
        for f in (Path(ray._private.worker._global_node.get_session_dir_path()) / "logs" / "serve").glob(
            "replica_*Collections*.log"
        )
    )
    assert "refused add: 'fake.pdf' is not a PDF" in logs and "refused remove: document 'nothing.pdf'" in logs
    assert "Request failed" not in logs and "Traceback" not in logs

    bad_files(tmp_path / "bad", copy_docs(["2023 Q1 AMZN.pdf"], sec_docs, tmp_path / "good") / "2023 Q1 AMZN.pdf")
    r = upload(url, "sec", [("encrypted.pdf", (tmp_path / "bad" / "encrypted.pdf").read_bytes())], auth(SEC_KEY))
    assert r.status_code == 202, r.text
    job = wait_for(url, SEC_KEY, r.json()["job"])
    assert job["state"] == "succeeded" and "encrypted.pdf" in job["result"]["failed"]
    documents = {
        d["file"]: d
        for d in httpx.get(f"{url}/v1/collections/sec/documents", headers=auth(SEC_KEY), timeout=30).json()["data"]
    }
    assert documents["encrypted.pdf"]["status"] == "failed" and "encrypted" in documents["encrypted.pdf"]["reason"]
    assert all(d["status"] == "indexed" for f, d in documents.items() if f != "encrypted.pdf")
