"""From upload to servable, and reload across retriever replicas, against a running service.

    python -m bench.collections [--docs ../shared/datasets/sec-10q/docs] [--replicas 2] [--repeat 3] [--out
    bench/results]

Starts `rag serve --collection bench=<empty folder>` with --replicas retriever replicas, uploads every
PDF in --docs in one request, follows the job, and times: the upload's reply, the job's end (the new
version published) and the moment every retriever replica serves it (/v1/collections). Then a
question about one of the filings must cite it. Reload alone: a deletion makes a second version, and
the collection is rolled back and forth between the two --repeat times (`rag index rollback`), each
time until every replica serves the version pointed to. Writes collections.json and collections.png.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import free_port, spread, stop_server, wait_ready
from bench.paths import DATASETS, REPO, RESULTS
from cli.options import DEFAULT_CONFIG
from rag.config import load_settings

DEFAULT_DOCS = DATASETS / "sec-10q" / "docs"
QUESTION = "What were Apple's total net sales for the quarter ended July 1, 2023?"


def serving_everywhere(http, url: str, version: str, replicas: int, timeout: float = 300) -> float:
    """Seconds until ``replicas`` retriever replicas all report ``version``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        view = http.get(f"{url}/v1/collections/bench").json()
        if len(view["replicas"]) == replicas and set(view["replicas"].values()) == {version}:
            return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"replicas did not reach {version}: {view}")


def follow(http, url: str, job: dict) -> dict:
    while job["state"] in ("queued", "running"):
        time.sleep(0.5)
        job = http.get(f"{url}/v1/jobs/{job['id']}").json()
    if job["state"] != "succeeded":
        raise RuntimeError(f"job failed: {job}")
    return job


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-collection-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAG_API_KEY")}
    cmd = [
        sys.executable,
        "-m",
        "cli.main",
        "serve",
        "--collection",
        f"bench={root}",
        "--set",
        f"serve.port={port}",
        "--set",
        f"serve.retriever.num_replicas={args.replicas}",
        "--set",
        "llm.max_new_tokens=32",
    ]
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    pdfs = sorted(args.docs.glob("*.pdf"))
    result: dict = {
        "documents": len(pdfs),
        "megabytes": round(sum(p.stat().st_size for p in pdfs) / 2**20, 1),
        "retriever_replicas": args.replicas,
    }
    try:
        wait_ready(url, proc)
        with httpx.Client(timeout=600) as http:
            started = time.monotonic()
            files = [("files", (p.name, p.read_bytes(), "application/pdf")) for p in pdfs]
            reply = http.post(f"{url}/v1/collections/bench/documents", files=files)
            reply.raise_for_status()
            uploaded = time.monotonic()
            job = follow(http, url, reply.json()["job"])
            published = time.monotonic()
            serving_everywhere(http, url, job["version"], args.replicas)
            live = time.monotonic()
            result.update(
                upload_s=round(uploaded - started, 2),
                job_s=round(published - uploaded, 2),
                reload_s=round(live - published, 2),
                upload_to_servable_s=round(live - started, 2),
                chunks=job["result"]["chunks"],
                indexed=job["result"]["indexed"],
            )
            answer = http.post(f"{url}/query", json={"question": QUESTION, "collection": "bench"}).json()
            result["question"] = {"question": QUESTION, "cited": sorted({c["file"] for c in answer["citations"]})}
            print(
                f"{len(pdfs)} documents: upload {result['upload_s']} s, job {result['job_s']} s, on every replica "
                f"{result['reload_s']} s later: servable {result['upload_to_servable_s']} s after the upload began; "
                f"cited {result['question']['cited']}",
                flush=True,
            )

            removal = http.delete(f"{url}/v1/collections/bench/documents/{pdfs[0].name}")
            second = follow(http, url, removal.json()["job"])["version"]
            serving_everywhere(http, url, second, args.replicas)
            reloads = []
            for i in range(args.repeat * 2):
                target = job["version"] if i % 2 == 0 else second
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "cli.main",
                        "index",
                        "rollback",
                        "--index",
                        str(root / "index"),
                        "--to",
                        target,
                    ],
                    check=True,
                    cwd=REPO,
                    capture_output=True,
                )
                reloads.append(serving_everywhere(http, url, target, args.replicas))
                print(f"rollback to {target}: every replica serving it after {reloads[-1]:.1f} s", flush=True)
            result["rollback_reload_s"] = {
                **spread(reloads),
                "values": [round(r, 2) for r in reloads],
                "reload_interval_s": load_settings(DEFAULT_CONFIG).serve.reload_interval_s,
            }
    finally:
        stop_server(proc)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "collections.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "collections.png")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [2, 1]})
    left = 0.0
    for key, label, color in (
        ("upload_s", "upload", "tab:gray"),
        ("job_s", "ingestion job", "tab:blue"),
        ("reload_s", "on every replica", "tab:green"),
    ):
        ax1.barh([0], [result[key]], left=left, color=color, label=f"{label} {result[key]:.1f} s")
        left += result[key]
    ax1.set_yticks([])
    ax1.set_xlabel("seconds from the start of the upload")
    ax1.set_title(f"{result['documents']} PDFs ({result['megabytes']} MB) to servable: {left:.0f} s")
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    values = result["rollback_reload_s"]["values"]
    ax2.plot(range(1, len(values) + 1), values, "o-")
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("rollback")
    ax2.set_ylabel("seconds until every replica serves it")
    ax2.set_title(f"Reload on {result['retriever_replicas']} retriever replicas")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
