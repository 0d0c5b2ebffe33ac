"""bench.gpu_check rehearsed on the CPU at toy sizes, every part, so that the GPU check cannot rot between the
sessions that are lent a GPU (slow: about a minute and a half)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_every_part_of_the_gpu_check_runs_and_reports(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--small", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = json.loads((tmp_path / "gpu_check.json").read_text())
    failed = [r for r in records if "error" in r or "skipped" in r]
    assert not failed, failed
    parts = {r["part"] for r in records}
    assert {"env", "encoder", "graphs", "smollm2", "llama8b", "tenants"} <= parts
    # The window path that graphs replay on a GPU decodes what the eager path decodes.
    graphs = next(r for r in records if r["part"] == "graphs")
    assert graphs["same"] == graphs["of"] == 4
    for shape in ("smollm2", "llama8b"):
        levels = [r for r in records if r["part"] == shape and "c" in r and "what" not in r]
        assert [r["c"] for r in levels] == [1, 4] and all(r["tok_per_s"]["median"] > 0 for r in levels)
    tenants = [r for r in records if r["part"] == "tenants"]
    assert len(tenants) == 2 and all(t["answered"] > 0 and not t["failed"] for t in tenants), tenants
    assert (tmp_path / "gpu_check.png").stat().st_size > 0
