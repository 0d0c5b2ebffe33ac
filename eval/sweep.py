"""``rag eval --sweep FILE``: a grid over chunking, top_k and retriever kind, one comparison table and plot.

The sweep file::

    docs: ../shared/datasets/sec-10q/docs     # re-ingested where the grid changes chunking or the model
    generate: false                           # retrieval metrics only (answers cost minutes per point)
    grid:
      chunking.chunk_size: [500, 1000]
      chunking.chunk_overlap: [100]
      serve.top_k: [5]
      retriever: [dense, bm25, hybrid]

Points that share chunking and embedding settings share one index: ingestion's own incremental
planning reuses an index whose fingerprint matches, so each distinct index is built once.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import yaml

from eval.job import run_eval
from eval.report import figure
from ingest.job import run_ingest
from ingest.manifest import fingerprint
from rag.config import load_settings

def run_sweep(sweep_file: str | Path, dataset: str | Path, out_dir: str | Path, config: str | Path | None,
              overrides: list[str], limit: int | None = None) -> list[dict]:
    spec = yaml.safe_load(Path(sweep_file).read_text()) or {}
    if "grid" not in spec or "docs" not in spec:
        raise ValueError(f"{sweep_file}: a sweep needs 'docs' and 'grid'")
    grid: dict[str, list] = spec["grid"]
    out_dir = Path(out_dir)
    keys = list(grid)
    points = []
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values))
        retriever = point.pop("retriever", "dense")
        settings = load_settings(config, overrides + [f"{k}={json.dumps(v)}" for k, v in point.items()])
        index_dir = out_dir / "indexes" / fingerprint(settings)
        if not (index_dir / "manifest.json").is_file():
            run_ingest(spec["docs"], index_dir, settings)
        name = "_".join(f"{k.split('.')[-1]}={v}" for k, v in point.items()) + f"_{retriever}"
        report = run_eval(dataset, index_dir, out_dir / "points" / name, settings, kinds=(retriever,),
                          answer_kind=retriever, generate=bool(spec.get("generate", False)), limit=limit)
        overall = report["overall"]
        row = {**point, "retriever": retriever, "index": index_dir.name,
               **{m: overall["retrieval"][retriever].get(m) for m in ("recall@1", "recall@5", "recall@10", "mrr")}}
        if "answers" in overall:
            row["token_f1"] = overall["answers"]["token_f1"]
        points.append(row)
    _write(out_dir, points)
    return points


def _write(out_dir: Path, points: list[dict]) -> None:
    (out_dir / "sweep.json").write_text(json.dumps(points, indent=2) + "\n")
    columns = list(points[0])
    lines = ["# Sweep", "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for p in points:
        lines.append("| " + " | ".join(f"{p[c]:.3f}" if isinstance(p[c], float) else str(p[c]) for c in columns) + " |")
    lines += ["", "![sweep](sweep.png)", ""]
    (out_dir / "sweep.md").write_text("\n".join(lines))

    labels = ["\n".join(f"{k.split('.')[-1]}={p[k]}" for k in p if k not in ("index", "recall@1", "recall@5", "recall@10", "mrr", "token_f1"))
              for p in points]
    with figure(out_dir / "sweep.png", size=(max(6, 1.3 * len(points)), 4.5)) as ax:
        xs = range(len(points))
        ax.bar([x - 0.2 for x in xs], [p["recall@5"] or 0 for p in points], width=0.4, label="recall@5")
        ax.bar([x + 0.2 for x in xs], [p["mrr"] or 0 for p in points], width=0.4, label="MRR")
        ax.set_xticks(list(xs), labels, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title("Sweep: gold-file retrieval")
        ax.legend()
