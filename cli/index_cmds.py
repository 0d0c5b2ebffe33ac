"""``rag ingest``, ``rag search``, ``rag index versions|verify|merge|rollback`` and ``rag demo``: an index on this
machine."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

from cli.options import cluster_options, config_options, filters_of, print_retrieval, retrieval_options, settings_of


def _print_summary(result) -> None:
    m = result.manifest
    by_status: dict[str, int] = {}
    for entry in m.files:
        by_status[entry.status] = by_status.get(entry.status, 0) + 1
    failed = [e for e in m.files if e.status == "failed"]
    run = m.run
    print()
    print(f"files      {len(m.files)}  " + "  ".join(f"{k}={v}" for k, v in sorted(by_status.items())))
    if result.plan.pruned:
        print(f"pruned     {len(result.plan.pruned)}: {', '.join(result.plan.pruned)}")
    print(
        f"pages      {sum(e.pages for e in m.files if e.status != 'failed')} in index, {run.pages_processed} parsed now"
    )
    print(f"chunks     {m.index.vectors} in index, {run.chunks_embedded} embedded now")
    print(f"failures   {len(failed)}")
    for entry in failed:
        print(f"  - {entry.file}: {entry.reason}")
    for entry in m.files:
        if entry.note:
            print(f"  note {entry.file}: {entry.note}")
    scans = [(e.file, page) for e in m.files if e.status != "failed" for page in e.ocr]
    if scans:
        read = [p["confidence"] for _, p in scans if not p["error"]]
        mean = f", mean confidence {sum(read) / len(read):.0f}" if read else ""
        print(f"ocr        {len(read)} of {len(scans)} pages without a text layer read{mean}")
        for file, page in scans:
            if page["error"]:
                print(f"  - {file} p. {page['page']}: {page['error']}")
    print(f"seconds    {run.seconds:.1f}  ({run.pages_per_s:.1f} pages/s, {run.chunks_per_s:.1f} chunks/s)")
    if run.embed_workers:
        workers = ", ".join(f"{w.worker} on {w.device}: {w.chunks} in {w.busy_seconds:.0f}s" for w in run.embed_workers)
        print(f"embedded by {workers}")
    languages = Counter(e.language or "no text" for e in m.files if e.status != "failed")
    print("languages  " + ", ".join(f"{language} {n}" for language, n in sorted(languages.items())))
    models = ", ".join(f"{e.model} dim {e.dim}" for e in (m.embedding, m.multilingual) if e)
    print(f"index      {m.index.kind} ({m.index.built_on}), {models}")
    masked = sum(len(s.deleted) for s in m.segments)
    print(f"segments   {len(m.segments)}" + (f", {masked} files masked out of them until a merge" if masked else ""))


def cmd_ingest(args: argparse.Namespace) -> int:
    from cli.progress import ProgressLine
    from ingest.job import IngestError, run_ingest
    from rag.store.errors import StoreError
    from rag.store.versions import IndexBusy

    progress = ProgressLine()
    try:
        result = run_ingest(
            args.docs_dir, args.index, settings_of(args), prune=args.prune, wait_s=args.wait, progress=progress
        )
    except (IngestError, IndexBusy, StoreError) as err:
        progress.close()
        print(f"error: {err}", file=sys.stderr)
        return 2
    progress.close()
    _print_summary(result)
    print(f"wrote {args.index}, version {result.version} (now current)")
    if result.chunks_total == 0:
        print("error: nothing could be indexed", file=sys.stderr)
        return 1
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from rag.filters import parse_filters
    from rag.search import Searcher

    searcher = Searcher.from_index_dir(args.index, settings_of(args))
    found = searcher.search(
        args.query,
        args.top_k,
        filters=parse_filters(filters_of(args)),
        mode=args.mode,
        auto_filters=False if args.no_auto_filters else None,
    )
    print_retrieval(found.filters, found.boosts, found.matched)
    for rank, hit in enumerate(found.chunks, start=1):
        print(f"{rank}. {hit.file} p.{hit.page}  score {hit.score:.3f}")
        print("   " + " ".join(hit.text.split())[:300])
    print(f"({found.mode}, {found.timings_ms['total_ms']:.0f} ms)")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def cmd_index_versions(args: argparse.Namespace) -> int:
    from rag.store.files import read_manifest
    from rag.store.versions import IndexDir

    versions = IndexDir(args.index).versions()
    for version in versions:
        m = read_manifest(version.path)
        print(
            f"{'*' if version.current else ' '} {version.name}  {m.created_at}  {m.indexed_files} files  "
            f"{m.index.vectors} chunks  {_count(len(m.segments) if m.segmented else 1, 'segment')}"
        )
    if not versions:
        print(f"{args.index} holds no index versions")
    return 0


def cmd_index_verify(args: argparse.Namespace) -> int:
    from rag.store.errors import DamagedVersion
    from rag.store.segments import verify
    from rag.store.versions import IndexDir

    versions = IndexDir(args.index).versions()
    damaged = []
    for version in versions:
        mark = "*" if version.current else " "
        try:
            _, stored = verify(version.path)
        except DamagedVersion as err:
            damaged.append(version)
            print(f"{mark} {version.name}  DAMAGED: {err}")
        else:
            how = f"{stored:,} bytes match their SHA-256" if stored else "read whole (no hashes kept then)"
            print(f"{mark} {version.name}  ok: {how}")
    if not versions:
        print(f"{args.index} holds no index versions")
    return 1 if damaged else 0


def cmd_index_rollback(args: argparse.Namespace) -> int:
    from rag.store.versions import IndexBusy, IndexDir

    index = IndexDir(args.index)
    try:
        with index.writing(args.wait, purpose="a rollback") as writer:
            names = [v.name for v in index.versions()]
            current = index.current_name()
            earlier = names[: names.index(current)] if current in names else []
            target = args.to or (earlier[-1] if earlier else None)
            if target is None:
                print(f"error: {args.index} has no version before {current} to roll back to", file=sys.stderr)
                return 2
            writer.point_to(target)
    except IndexBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{args.index}: {current} -> {target} (current); a running service follows within serve.reload_interval_s")
    return 0


def cmd_index_merge(args: argparse.Namespace) -> int:
    from rag.store.merging import merge_all
    from rag.store.versions import IndexBusy

    try:
        merged, published, before, after = merge_all(args.index, settings_of(args).index, args.wait)
    except IndexBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if published is None:
        print(f"{args.index}: version {merged} is one segment with nothing masked out: nothing to merge")
    else:
        print(f"{args.index}: {merged} ({before} segments) merged into {published} ({after}), now current")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the embedded corpus, ingest it and run one search: the whole path on a fresh machine."""
    from ingest.demo import build_demo_corpus

    out = Path(args.out)
    docs = out / "docs"
    for path in build_demo_corpus(docs):
        print(f"demo corpus: {path}")
    args.docs_dir, args.index, args.prune, args.wait = docs, out / "index", True, 0
    status = cmd_ingest(args)
    if status != 0:
        return status
    args.query, args.top_k = "What happens to a file that is encrypted?", 3
    args.filter, args.mode, args.no_auto_filters = [], None, False
    print(f"\nsearch: {args.query}")
    return cmd_search(args)


def add_parsers(sub) -> None:
    ingest = sub.add_parser("ingest", help="index a folder of PDFs with Ray Data", parents=[cluster_options()])
    ingest.add_argument("docs_dir", type=Path)
    ingest.add_argument("--index", type=Path, required=True, help="index directory to create or update")
    ingest.add_argument("--prune", action="store_true", help="drop chunks of files that are gone from DOCS_DIR")
    ingest.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait this long for another ingestion writing the same index (default: fail at once)",
    )
    ingest.set_defaults(func=cmd_ingest)

    search = sub.add_parser(
        "search", help="nearest chunks for a query", parents=[retrieval_options(), config_options()]
    )
    search.add_argument("query")
    search.add_argument("--index", type=Path, required=True)
    search.set_defaults(func=cmd_search)

    index_cmd = sub.add_parser(
        "index", help="an index's versions: list them, check their files, merge its segments, roll back to one"
    )
    index_sub = index_cmd.add_subparsers(dest="index_command", required=True)
    versions = index_sub.add_parser("versions", help="list the versions kept, * marks the current one")
    versions.add_argument("--index", type=Path, required=True)
    versions.set_defaults(func=cmd_index_versions)
    verify = index_sub.add_parser("verify", help="read every version's files whole against their SHA-256")
    verify.add_argument("--index", type=Path, required=True)
    verify.set_defaults(func=cmd_index_verify)
    merge = index_sub.add_parser(
        "merge",
        help="rewrite the current version's segments as one, without the chunks masked out of them",
        parents=[config_options()],
    )
    merge.add_argument("--index", type=Path, required=True)
    merge.add_argument(
        "--wait", type=float, default=0, metavar="SECONDS", help="wait this long for a running ingestion"
    )
    merge.set_defaults(func=cmd_index_merge)
    rollback = index_sub.add_parser("rollback", help="make an earlier version current again")
    rollback.add_argument("--index", type=Path, required=True)
    rollback.add_argument("--to", help="the version to make current (default: the one before the current)")
    rollback.add_argument(
        "--wait", type=float, default=0, metavar="SECONDS", help="wait this long for a running ingestion"
    )
    rollback.set_defaults(func=cmd_index_rollback)

    demo = sub.add_parser(
        "demo", help="build the embedded demo corpus, ingest it, search it", parents=[cluster_options()]
    )
    demo.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "rag-demo"), help="where docs/ and index/ go")
    demo.set_defaults(func=cmd_demo)
