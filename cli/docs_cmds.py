"""``rag docs list|add|rm|reindex``: a collection's documents, in a running service (or, for ``list``, an index)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cli.client import call, reported
from cli.options import service_options


def _cell(value) -> str:
    if isinstance(value, str):
        return value
    if hasattr(value, "__len__"):
        return "; ".join(map(str, value))
    return "-" if value is None else str(value)


def _table(columns: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    for row in [columns, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(rows)} files")


@reported
def cmd_docs_list(args: argparse.Namespace) -> int:
    if args.endpoint:
        response = call(args, "GET", f"/v1/collections/{args.collection}/documents")
        rows = [
            [
                d["file"],
                d["status"],
                str(d.get("pages") or "-"),
                str(d.get("chunks") or "-"),
                d.get("language") or "-",
                d.get("reason") or d.get("note") or "",
            ]
            for d in response.json()["data"]
        ]
        _table(["file", "status", "pages", "chunks", "language", "reason"], rows)
        return 0
    if args.index is None:
        print("error: give --endpoint URL of a running service, or --index DIR", file=sys.stderr)
        return 2
    from rag.store.versions import open_index

    store = open_index(args.index)
    entries = store.manifest.entries()
    files = store.files.assign(
        language=store.files["file"].map(lambda f: entries[f].language if f in entries else None)
    )
    columns = ["file", "language", "company", "ticker", "form", "fiscal_year", "fiscal_quarter", "period_end"]
    columns += ["aliases", "title"]
    _table(columns, [[_cell(v) for v in row] for row in files[columns].itertuples(index=False)])
    return 0


def _follow_job(args: argparse.Namespace, job: dict) -> int:
    """Print the job's progress until it ends; 0 when it succeeded."""
    from ingest.progress import Progress

    shown = None
    while job["state"] in ("queued", "running"):
        line = f"{job['id']} {job['state']}"
        if job.get("waiting"):
            line += f" ({job['waiting']})"
        if job["progress"]:
            line += f": {Progress(**job['progress']).summary()}"
        if line != shown:
            print(line, flush=True)
            shown = line
        time.sleep(1)
        job = call(args, "GET", f"/v1/jobs/{job['id']}").json()
    if job["state"] == "failed":
        print(f"error: {job['id']} failed: {job['error']}", file=sys.stderr)
        return 1
    result = job["result"]
    print(
        f"{job['id']} succeeded: version {job['version']} is live within serve.reload_interval_s; "
        f"{result['indexed']} documents, {result['chunks']} chunks"
    )
    for file, reason in result["failed"].items():
        print(f"  failed {file}: {reason}")
    return 0


def _changed(args: argparse.Namespace, response, what: str) -> int:
    """Report a change the service accepted (202 with its job), and follow the job with --wait."""
    job = response.json()["job"]
    print(f"{what} {args.collection}; job {job['id']}")
    return _follow_job(args, job) if args.wait else 0


@reported
def cmd_docs_add(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    with ExitStack() as stack:
        files = [("files", (path.name, stack.enter_context(path.open("rb")), "application/pdf")) for path in args.files]
        response = call(args, "POST", f"/v1/collections/{args.collection}/documents", files=files)
    return _changed(args, response, f"added {len(args.files)} files to")


@reported
def cmd_docs_rm(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    response = call(args, "DELETE", f"/v1/collections/{args.collection}/documents/{quote(args.file)}")
    return _changed(args, response, f"removed {args.file} from")


@reported
def cmd_docs_reindex(args: argparse.Namespace) -> int:
    return _changed(args, call(args, "POST", f"/v1/collections/{args.collection}/reindex"), "reindexing")


def add_parsers(sub) -> None:
    docs = sub.add_parser(
        "docs", help="a collection's documents: list them, or add and remove them in a running service"
    )
    docs_sub = docs.add_subparsers(dest="docs_command", required=True)
    collection = argparse.ArgumentParser(add_help=False)
    collection.add_argument("--collection", default="default")
    follow = argparse.ArgumentParser(add_help=False, parents=[collection, service_options(endpoint_required=True)])
    follow.add_argument("--wait", action="store_true", help="follow the job until the new version is live")

    docs_list = docs_sub.add_parser(
        "list",
        help="each document with its status, or (--index) its metadata",
        parents=[collection, service_options(endpoint_required=False)],
    )
    docs_list.add_argument("--index", type=Path, help="read this index directly instead of asking a service")
    docs_list.set_defaults(func=cmd_docs_list)
    docs_add = docs_sub.add_parser(
        "add", help="upload PDFs; a job indexes them and the service goes on to the new version", parents=[follow]
    )
    docs_add.add_argument("files", type=Path, nargs="+")
    docs_add.set_defaults(func=cmd_docs_add)
    docs_rm = docs_sub.add_parser("rm", help="remove a document; a job takes its chunks out", parents=[follow])
    docs_rm.add_argument("file")
    docs_rm.set_defaults(func=cmd_docs_rm)
    docs_reindex = docs_sub.add_parser(
        "reindex", help="run a job over the whole folder: takes up documents whose job failed", parents=[follow]
    )
    docs_reindex.set_defaults(func=cmd_docs_reindex)
