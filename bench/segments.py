"""What a one-file change costs an index of segments: the bytes the run writes against those a full run writes, and
the time a replica takes to serve the new version, reopening everything against reusing the segments it has open.

    python -m bench.segments --index INDEX_DIR [--runs 3] [--out bench/results]
    python -m bench.segments --index INDEX_DIR --split 4 OUT_INDEX_DIR

INDEX_DIR is any index (of any layout) over a folder that still exists (its manifest's docs_dir); the run uses the
settings it was built with. The index is copied to a scratch folder, the documents linked there, and the copy merged
into one segment (what a full run writes). Then one file (the middle one by name) is changed by a trailing PDF
comment, so its hash changes and its text does not, and `rag ingest` runs over the copy: its new segment and manifest
are the bytes a one-file change writes. Taking up the new version is then timed --runs times, interleaved: a fresh
open (the version's segments read, BM25 mapped) against an open that reuses the previous version's open segments,
each followed by one BM25 scoring. Writes segments.json and segments.png: median, min and max per way, and the ratios.

--split K OUT writes OUT as an index whose one version holds INDEX_DIR's current chunks and vectors in K segments (its
files dealt round-robin), the first file's chunks twice: masked out of the first segment and live in the last. `rag
eval --no-generate` over both then shows what segments change in retrieval: exact dense search nothing, BM25 (whose
lengths are weighed per segment) little.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.harness import bar_spread, spread
from bench.paths import RESULTS

QUERY = "What were total net sales for the quarter?"
WAYS = ("reopened", "reused")


def _bytes(paths: list[Path]) -> int:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def _take_up(root: Path, reuse) -> tuple[float, object]:
    from rag.store.versions import open_index

    started = time.perf_counter()
    store = open_index(root, reuse)
    store.lexical().scores(QUERY)
    return time.perf_counter() - started, store


def measure(index: Path, runs: int) -> dict:
    from ingest.job import run_ingest
    from rag.config import Settings
    from rag.store.files import MANIFEST_FILE, read_manifest
    from rag.store.merging import merge_all
    from rag.store.versions import IndexDir, open_index

    with tempfile.TemporaryDirectory(prefix="bench-segments-") as scratch:
        root, docs = Path(scratch) / "index", Path(scratch) / "docs"
        shutil.copytree(index, root)
        manifest = read_manifest(IndexDir(root).current().path)
        settings = Settings.model_validate(manifest.settings)  # as it was built: the run re-embeds only the change
        source = Path(manifest.docs_dir)
        for entry in manifest.files:
            if entry.status != "failed":
                (docs / entry.file).parent.mkdir(parents=True, exist_ok=True)
                (docs / entry.file).symlink_to(source / entry.file)
        merge_all(root, settings.index)
        full = _bytes([*(root / "segments").iterdir(), IndexDir(root).current().path / MANIFEST_FILE])
        before = open_index(root)
        before.lexical().scores(QUERY)

        files = sorted(e.file for e in manifest.files if e.status != "failed")
        changed = docs / files[len(files) // 2]
        target = changed.resolve()
        changed.unlink()
        shutil.copyfile(target, changed)
        with changed.open("ab") as pdf:
            pdf.write(b"\n% changed for bench.segments\n")
        segments_before = set((root / "segments").iterdir())
        result = run_ingest(docs, root, settings)
        written = sorted(set((root / "segments").iterdir()) - segments_before)
        one_file = _bytes([*written, IndexDir(root).current().path / MANIFEST_FILE])

        seconds: dict[str, list[float]] = {way: [] for way in WAYS}
        for _ in range(runs):  # interleaved: a noisy moment on a shared machine touches both ways alike
            for way in WAYS:
                took, _ = _take_up(root, before if way == "reused" else None)
                seconds[way].append(took)
        figures = {way: spread(seconds[way]) for way in WAYS}
        return {
            "index": str(index),
            "files": len(files),
            "chunks": result.manifest.index.vectors,
            "changed_file": changed.name,
            "chunks_embedded": result.manifest.run.chunks_embedded,
            "segments_after": len(result.manifest.segments),
            "full_run_bytes": full,
            "one_file_change_bytes": one_file,
            "one_file_over_full": one_file / full,
            "runs": runs,
            "take_up_seconds": figures,
            "reopened_over_reused": figures["reopened"]["median"] / figures["reused"]["median"],
        }


def split(index: Path, parts: int, out: Path) -> list[int]:
    """``index``'s current chunks as ``parts`` segments of a new index at ``out``; returns their live rows."""
    import numpy as np

    from rag.config import IndexConfig
    from rag.store.versions import IndexDir, open_index

    store = open_index(index)
    vectors = np.concatenate([np.asarray(s.vectors, dtype=np.float32) for s in store.segments.values()])
    if any(s.deleted for s in store.manifest.segments):
        raise SystemExit(f"{index} has chunks masked out: merge it first (rag index merge)")
    files = sorted(set(store.chunks["file"]))
    dealt = [files[i::parts] for i in range(parts)]
    dealt[-1] = [*dealt[-1], files[0]]  # the first file again, live here and masked out of the first segment
    refs = []
    with IndexDir(out).writing() as writer:
        for i, group in enumerate(dealt):
            rows = np.flatnonzero(store.chunks["file"].isin(group).to_numpy())
            chunks = store.read(rows)
            kind = IndexConfig(kind=store.manifest.index.kind)
            ref = writer.add_segment(chunks, vectors[rows], kind, store.manifest.embedding.model).ref
            masked = [files[0]] if i == 0 and parts > 1 else []
            refs.append(
                ref.model_copy(update={"deleted": masked, "rows": ref.rows - int(chunks["file"].isin(masked).sum())})
            )
        writer.publish_manifest(store.manifest.model_copy(update={"version": 2, "segments": refs}), keep=3)
    return [r.rows for r in refs]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    axes[0].bar([0, 1], [result["full_run_bytes"] / 2**20, result["one_file_change_bytes"] / 2**20], color="tab:blue")
    axes[0].set_xticks([0, 1], [f"full run ({result['files']} files)", "one file changed"])
    axes[0].set_ylabel("MB written")
    for x, way in enumerate(WAYS):
        bar_spread(axes[1], x, result["take_up_seconds"][way], "tab:gray" if way == "reopened" else "tab:blue")
    axes[1].set_xticks(range(len(WAYS)), ["every segment read", "open segments reused"])
    axes[1].set_ylabel("seconds to serve the new version")
    fig.suptitle(f"A one-file change to {result['chunks']:,} chunks (median, min-max of {result['runs']} runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--split", nargs=2, metavar=("K", "OUT_INDEX_DIR"))
    args = parser.parse_args()
    if args.split:
        print(split(args.index, int(args.split[0]), Path(args.split[1])))
        return
    result = measure(args.index, args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "segments.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "segments.png")
    print(json.dumps({k: result[k] for k in ("one_file_over_full", "reopened_over_reused")}))


if __name__ == "__main__":
    main()
