"""A collection's own retrieval settings: chosen on its own questions by ``rag tune`` (eval.tune) and kept beside its
versions as ``INDEX_DIR/retrieval.json``, so they outlive every later ingestion. Every reader of the collection (the
service's retriever, ``rag ask``, ``rag search``) searches with them over the config's retrieval section; a
request's own ``retrieval_mode`` still wins, as do the modes ``rag eval`` compares by name. Which mode reads a
collection best depends on its documents and its users' questions (docs/retrieval.md), so the default is the
config's until the collection's own questions say otherwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rag.config import RetrievalConfig
from rag.store.errors import VERSIONS
from rag.store.files import replace_whole

TUNED = "retrieval.json"


def collection_dir(version_path: str | Path) -> Path:
    """The index directory a version belongs to (an index written before versions is its own)."""
    path = Path(version_path)
    return path.parent.parent if path.parent.name == VERSIONS else path


def read_tuned(index_dir: str | Path) -> dict[str, Any] | None:
    """The collection's tuning as ``rag tune`` wrote it (``retrieval`` and ``chosen_by``); None where it has none."""
    path = Path(index_dir) / TUNED
    try:
        tuned = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err}); run `rag tune` again or delete it") from err
    if not isinstance(tuned, dict) or not isinstance(tuned.get("retrieval"), dict):
        raise ValueError(f"{path}: holds no 'retrieval' settings; run `rag tune` again or delete it")
    return tuned


def with_tuning(cfg: RetrievalConfig, index_dir: str | Path) -> RetrievalConfig:
    """``cfg`` with the collection's tuned settings over it; a setting by language adds to the config's languages."""
    tuned = read_tuned(index_dir)
    if tuned is None:
        return cfg
    tree = cfg.model_dump()
    for key, value in tuned["retrieval"].items():
        tree[key] = {**tree[key], **value} if isinstance(value, dict) and isinstance(tree.get(key), dict) else value
    try:
        return RetrievalConfig.model_validate(tree)
    except ValidationError as err:
        raise ValueError(f"{Path(index_dir) / TUNED}: not retrieval settings this version reads: {err}") from err


def write_tuned(index_dir: str | Path, retrieval: dict[str, Any], chosen_by: dict[str, Any]) -> Path:
    """Replaces the collection's tuning whole (a reader sees the old file or the new one, never half of one)."""
    path = Path(index_dir) / TUNED
    replace_whole(
        path, json.dumps({"retrieval": retrieval, "chosen_by": chosen_by}, indent=2, ensure_ascii=False) + "\n"
    )
    return path


def clear_tuned(index_dir: str | Path) -> None:
    """The collection searched with the config's retrieval settings again."""
    (Path(index_dir) / TUNED).unlink(missing_ok=True)
