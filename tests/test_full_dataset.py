"""The whole SEC 10-Q set through the real command line, as a user runs it (slow: about four minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rag.store.versions import current_manifest

pytestmark = pytest.mark.slow


def _rag(*args: str) -> subprocess.CompletedProcess:
    """The command in a fresh local Ray of its own: a bare ray.init() would join the test session's cluster where
    one is running (ray.address=local starts a new one, as on a user's machine with no cluster)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-m", "cli.main", *args, "--set", "ray.address=local"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def test_all_twenty_filings_are_indexed_and_retrieved(sec_docs, tmp_path):
    index_dir = tmp_path / "index"
    proc = _rag("ingest", str(sec_docs), "--index", str(index_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = current_manifest(index_dir).model_dump()
    entries = manifest["files"]
    assert len(entries) == 20
    assert [e for e in entries if e["status"] != "indexed"] == []
    # 891 pages pypdf reads under its default limits, plus the two MSFT filings (72 + 74) that need raised ones.
    assert sum(e["pages"] for e in entries) == 891 + 72 + 74
    assert all(e["chunks"] > 0 for e in entries)
    assert "failures   0" in proc.stdout
    assert "pages/s" in proc.stdout

    # Every filing's pages gave its company, ticker, form and period; the name's quarter label is the fiscal quarter
    # or, where the filer's calendar says otherwise (Microsoft's, NVIDIA's), a period alias.
    for e in entries:
        meta = e["metadata"]
        year, quarter, ticker = e["file"].removesuffix(".pdf").split()
        assert (meta["ticker"], meta["form"]) == (ticker, "10-Q")
        label = f"{year} {quarter}"
        assert f"{meta['fiscal_year']} Q{meta['fiscal_quarter']}" == label or meta["period_aliases"] == [label]
        assert meta["company"] and meta["period_end"].startswith(("2022-", "2023-"))

    # The default retrieval on the held-back half of the questions (the defaults were chosen on the other half).
    out = tmp_path / "eval"
    proc = _rag(
        "eval",
        "--dataset",
        str(sec_docs.parent / "qna_data.csv"),
        "--index",
        str(index_dir),
        "--out",
        str(out),
        "--no-generate",
        "--retrievers",
        "hybrid",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    test_split = json.loads((out / "report.json").read_text())["by_split"]["test"]["retrieval"]["hybrid"]
    assert test_split["recall@5"] >= 0.95 and test_split["mrr"] >= 0.85, test_split
