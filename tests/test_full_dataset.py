"""The whole SEC 10-Q set through the real command line, as a user runs it (slow: about two minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_all_twenty_filings_are_indexed(sec_docs, tmp_path):
    index_dir = tmp_path / "index"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "ingest", str(sec_docs), "--index", str(index_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((index_dir / "manifest.json").read_text())
    entries = manifest["files"]
    assert len(entries) == 20
    assert [e for e in entries if e["status"] != "indexed"] == []
    # 891 pages pypdf reads under its default limits, plus the two MSFT filings (72 + 74) that need raised ones.
    assert sum(e["pages"] for e in entries) == 891 + 72 + 74
    assert all(e["chunks"] > 0 for e in entries)
    assert "failures   0" in proc.stdout
    assert "pages/s" in proc.stdout
