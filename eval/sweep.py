"""``rag eval --sweep FILE``: retrieval settings side by side, the development and held-back splits apart.

The sweep file names the points by a grid over config keys, a list of named points, or both::

    docs: ../shared/datasets/sec-10q/docs     # re-ingested where a point changes chunking or the model
    generate: false                           # retrieval metrics only (answers cost minutes per point)
    grid:
      chunking.chunk_size: [500, 1000]
      retrieval.mode: [dense, hybrid]
    points:
      dense, no headers: {chunking.contextual_headers: false, retrieval.mode: dense, retrieval.auto_filters: false}

Points that share chunking and embedding settings share one index: ingestion's own incremental
planning reuses an index whose fingerprint matches, so each distinct index is built once. Defaults
are chosen on the ``dev`` split; the ``test`` split is what they are reported by.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import yaml

from eval.job import run_eval
from eval.report import figure
from ingest.job import run_ingest
from ingest.planning import fingerprint
from rag.config import load_settings
from rag.store.versions import IndexDir

METRICS = ("hit@1", "hit@5", "recall@5", "mrr", "page_hit@1", "page_hit@5", "page_mrr")
SPLITS = ("dev", "test")


def sweep_points(spec: dict) -> list[tuple[str, dict]]:
    """(name, {config key: value}) for every point the sweep file names."""
    points = list((spec.get("points") or {}).items())
    grid: dict[str, list] = spec.get("grid") or {}
    varied = [k for k, values in grid.items() if len(values) > 1] or list(grid)[:1]
    for values in itertools.product(*grid.values()) if grid else ():
        point = dict(
            zip(grid, values, strict=True)
        )  # named by the keys that vary; the rest are the same for every point
        points.append((", ".join(f"{k.split('.')[-1]}={point[k]}" for k in varied), point))
    return points


def run_sweep(
    sweep_file: str | Path,
    dataset: str | Path,
    out_dir: str | Path,
    config: str | Path | None,
    overrides: list[str],
    limit: int | None = None,
    docs: str | Path | None = None,
) -> list[dict]:
    """``docs``: the documents of ``dataset`` where they are not the sweep file's own (one grid, two question sets)."""
    spec = yaml.safe_load(Path(sweep_file).read_text()) or {}
    points = sweep_points(spec)
    docs = docs or spec.get("docs")
    if not docs or not points:
        raise ValueError(f"{sweep_file}: a sweep needs 'docs' (or --docs) and a 'grid' or 'points'")
    out_dir = Path(out_dir)
    rows = []
    for name, point in points:
        settings = load_settings(config, overrides + [f"{k}={json.dumps(v)}" for k, v in point.items()])
        index_dir = out_dir / "indexes" / fingerprint(settings)
        if IndexDir(index_dir).current_name() is None:
            run_ingest(docs, index_dir, settings)
        mode = settings.retrieval.mode
        folder = "".join(c if c.isalnum() or c in "=.-" else "_" for c in name)
        report = run_eval(
            dataset,
            index_dir,
            out_dir / "points" / folder,
            settings,
            retrievers=(mode,),
            answer_retriever=mode,
            generate=bool(spec.get("generate", False)),
            limit=limit,
        )
        row = {"point": name, **point, "index": index_dir.name}
        for split in SPLITS:
            scores = report["by_split"].get(split, {}).get("retrieval", {}).get(mode, {})
            row.update({f"{split} {m}": scores.get(m) for m in METRICS})
        if "answers" in report["overall"]:
            row["token_f1"] = report["overall"]["answers"]["token_f1"]
        rows.append(row)
    _write(out_dir, rows)
    return rows


def _write(out_dir: Path, rows: list[dict]) -> None:
    (out_dir / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    columns = ["point"] + [c for c in rows[0] if c.startswith(SPLITS)] + (["token_f1"] if "token_f1" in rows[0] else [])
    lines = [
        "# Sweep",
        "",
        "Defaults are chosen on `dev`; `test` is held back.",
        "",
        "| " + " | ".join(columns) + " |",
        "| --- |" + " ---: |" * (len(columns) - 1),
    ]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(
                "-" if r.get(c) is None else f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in columns
            )
            + " |"
        )
    lines += ["", "![sweep](sweep.png)", ""]
    (out_dir / "sweep.md").write_text("\n".join(lines))

    with figure(out_dir / "sweep.png", size=(max(6, 1.4 * len(rows)), 4.8)) as ax:
        xs = range(len(rows))
        # Page-level figures where the questions have gold pages: file-level ones are then often the same everywhere.
        pages = any(r.get("dev page_hit@5") is not None for r in rows)
        shown = ("page_hit@5", "page_mrr") if pages else ("recall@5", "mrr")
        bars = [
            (f"{s} {m}", offset)
            for (s, m), offset in zip(itertools.product(SPLITS, shown), (-0.3, -0.1, 0.1, 0.3), strict=True)
        ]
        for label, offset in bars:
            ax.bar([x + offset for x in xs], [r.get(label) or 0 for r in rows], width=0.2, label=label)
        ax.set_xticks(list(xs), [r["point"].replace(", ", "\n").replace(" + ", "\n+ ") for r in rows], fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(f"Sweep: gold-{'page' if pages else 'file'} retrieval, dev and held-back test")
        ax.legend(fontsize=7, loc="lower right")
