"""The ``rag`` command, above the stages it drives (ingest, serving, eval) and the core they share.

Each subcommand reads the one typed config: a YAML file, then ``--set`` overrides."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import tempfile
from pathlib import Path

from rag.config import Settings, load_settings, resolve_api_key

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


def _config_sources(args: argparse.Namespace) -> tuple[Path | None, list[str]]:
    """The YAML file (``--config``, else the repository's default when present) and the overrides."""
    config = args.config
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    overrides = list(args.set)
    if getattr(args, "address", None):
        overrides.append(f"ray.address={args.address}")
    return config, overrides


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(*_config_sources(args))


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
    print(f"pages      {sum(e.pages for e in m.files if e.status != 'failed')} in index, {run.pages_processed} parsed now")
    print(f"chunks     {m.index['vectors']} in index, {run.chunks_embedded} embedded now")
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
    print(f"index      {m.index['kind']} ({m.index['built_on']}), {m.embedding['model']} dim {m.embedding['dim']}")


def cmd_ingest(args: argparse.Namespace) -> int:
    from cli.progress import ProgressLine
    from ingest.job import IngestError, run_ingest
    from rag.versions import IndexBusy

    progress = ProgressLine()
    try:
        result = run_ingest(args.docs_dir, args.index, _settings(args), prune=args.prune, wait_s=args.wait,
                            progress=progress)
    except (IngestError, IndexBusy) as err:
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


def _filters(args: argparse.Namespace) -> dict:
    """``--filter company=Apple --filter fiscal_quarter=2 --filter fiscal_quarter=3`` as a filter object."""
    import yaml

    raw: dict = {}
    for text in args.filter:
        key, sep, value = text.partition("=")
        if not sep:
            raise ValueError(f"--filter {text!r} is not of the form field=value")
        raw.setdefault(key.strip(), []).append(yaml.safe_load(value))
    return {k: v[0] if k == "file_glob" or len(v) == 1 else v for k, v in raw.items()}


def _print_retrieval(filters: dict, boosts: dict, matched: list[str]) -> None:
    if filters or boosts:
        print(f"filters {filters or '-'}  boosts {boosts or '-'}  (from: {', '.join(matched) or 'the request'})")


def cmd_search(args: argparse.Namespace) -> int:
    from rag.filters import parse_filters
    from rag.search import Searcher

    searcher = Searcher.from_index_dir(args.index, _settings(args))
    found = searcher.search(args.query, args.top_k, filters=parse_filters(_filters(args)), mode=args.mode,
                            auto_filters=False if args.no_auto_filters else None)
    _print_retrieval(found.filters, found.boosts, found.matched)
    for rank, hit in enumerate(found.chunks, start=1):
        print(f"{rank}. {hit.file} p.{hit.page}  score {hit.score:.3f}")
        print("   " + " ".join(hit.text.split())[:300])
    print(f"({found.mode}, {found.timings_ms['total_ms']:.0f} ms)")
    return 0


def cmd_index_versions(args: argparse.Namespace) -> int:
    import json

    from rag.index import MANIFEST_FILE
    from rag.versions import IndexDir

    versions = IndexDir(args.index).versions()
    for version in versions:
        m = json.loads((version.path / MANIFEST_FILE).read_text())
        indexed = sum(e["status"] != "failed" for e in m["files"])
        print(f"{'*' if version.current else ' '} {version.name}  {m['created_at']}  {indexed} files  "
              f"{m['index']['vectors']} chunks")
    if not versions:
        print(f"{args.index} holds no index versions")
    return 0


def cmd_index_rollback(args: argparse.Namespace) -> int:
    from rag.versions import IndexBusy, IndexDir

    index = IndexDir(args.index)
    try:
        with index.writing(args.wait, purpose="a rollback") as writer:
            names = [v.name for v in index.versions()]
            current = index.current_name()
            earlier = names[:names.index(current)] if current in names else []
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


def cmd_docs_list(args: argparse.Namespace) -> int:
    if args.endpoint:
        response = _call(args, "GET", f"/v1/collections/{args.collection}/documents")
        if response is None:
            return 1
        rows = [[d["file"], d["status"], str(d.get("pages") or "-"), str(d.get("chunks") or "-"),
                 d.get("reason") or d.get("note") or ""] for d in response.json()["data"]]
        _table(["file", "status", "pages", "chunks", "reason"], rows)
        return 0
    if args.index is None:
        print("error: give --endpoint URL of a running service, or --index DIR", file=sys.stderr)
        return 2
    from rag.versions import open_index

    files = open_index(args.index).files
    columns = ["file", "company", "ticker", "form", "fiscal_year", "fiscal_quarter", "period_end", "aliases", "title"]
    _table(columns, [[_cell(v) for v in row] for row in files[columns].itertuples(index=False)])
    return 0


def _cell(value) -> str:
    if value is None:
        return "-"
    return "; ".join(map(str, value)) if not isinstance(value, str) and hasattr(value, "__len__") else str(value)


def _table(columns: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
    for row in [columns, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    print(f"{len(rows)} files")


def _call(args: argparse.Namespace, method: str, path: str, **kwargs):
    """A request to the running service at ``--endpoint``; None (after saying why) unless it succeeded."""
    import httpx

    key = os.environ.get(args.api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.request(method, f"{args.endpoint.rstrip('/')}{path}", headers=headers, timeout=300, **kwargs)
    except httpx.HTTPError as err:
        print(f"error: {args.endpoint}: {err}", file=sys.stderr)
        return None
    if response.status_code >= 400:
        detail = response.json().get("detail") if "json" in response.headers.get("content-type", "") else response.text
        print(f"error: {response.status_code} {detail}", file=sys.stderr)
        return None
    return response


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
        response = _call(args, "GET", f"/v1/jobs/{job['id']}")
        if response is None:
            return 1
        job = response.json()
    if job["state"] == "failed":
        print(f"error: {job['id']} failed: {job['error']}", file=sys.stderr)
        return 1
    result = job["result"]
    print(f"{job['id']} succeeded: version {job['version']} is live within serve.reload_interval_s; "
          f"{result['indexed']} documents, {result['chunks']} chunks")
    for file, reason in result["failed"].items():
        print(f"  failed {file}: {reason}")
    return 0


def cmd_docs_add(args: argparse.Namespace) -> int:
    from contextlib import ExitStack

    with ExitStack() as stack:
        files = [("files", (path.name, stack.enter_context(path.open("rb")), "application/pdf")) for path in args.files]
        response = _call(args, "POST", f"/v1/collections/{args.collection}/documents", files=files)
    return _changed(args, response, f"added {len(args.files)} files to")


def cmd_docs_rm(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    response = _call(args, "DELETE", f"/v1/collections/{args.collection}/documents/{quote(args.file)}")
    return _changed(args, response, f"removed {args.file} from")


def cmd_docs_reindex(args: argparse.Namespace) -> int:
    response = _call(args, "POST", f"/v1/collections/{args.collection}/reindex")
    return _changed(args, response, "reindexing")


def _changed(args: argparse.Namespace, response, what: str) -> int:
    """Report a change the service accepted (202 with its job), and follow the job with --wait."""
    if response is None:
        return 1
    job = response.json()["job"]
    print(f"{what} {args.collection}; job {job['id']}")
    return _follow_job(args, job) if args.wait else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ray import serve

    from rag.ray_runtime import ensure_ray
    from serving.app import build_app

    for text in args.collection:
        name, sep, root = text.partition("=")
        if not sep:
            print(f"error: --collection {text!r} is not of the form NAME=FOLDER", file=sys.stderr)
            return 2
        args.set += [f"serve.collections.{name}.index={Path(root) / 'index'}",
                     f"serve.collections.{name}.docs={Path(root) / 'docs'}"]
    settings = _settings(args)
    cfg = settings.serve
    if not cfg.collections and args.index is None:
        print("error: nothing to serve: give --index DIR, --collection NAME=FOLDER or serve.collections in the config",
              file=sys.stderr)
        return 2
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not resolve_api_key(cfg):
        if not args.insecure:
            print(f"error: binding {cfg.host} without an API key would let anyone who reaches the port query the index; "
                  f"set {cfg.api_key_env} (or serve.api_key), or pass --insecure", file=sys.stderr)
            return 2
        logging.getLogger(__name__).warning("binding %s without an API key (--insecure)", cfg.host)
    ensure_ray(settings.ray, min_cpus=_service_cpus(settings))
    serve.start(http_options={"host": cfg.host, "port": cfg.port, "request_timeout_s": cfg.request_timeout_s})
    config, overrides = _config_sources(args)
    application = build_app({"index": args.index and str(args.index), "docs": args.docs and str(args.docs),
                             "config": config and str(config), "set": overrides})
    serve.run(application, name="rag", route_prefix="/", blocking=False)
    names = ", ".join(settings.serve.collections) or "default"
    print(f"serving {names}: the page at http://{cfg.host}:{cfg.port}/ (API: POST /query, /v1/chat/completions, "
          "/v1/collections); Ctrl-C stops")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


def _service_cpus(settings: Settings) -> float:
    """CPUs the service's replicas reserve, plus one ingestion job's pool: what a local Ray must declare for a job
    started through the documents API to be placed beside the service."""
    serve_cfg, pool = settings.serve, settings.ingest.embed
    replicas = sum(d.ray_actor_options.get("num_cpus", 1) * (d.num_replicas if isinstance(d.num_replicas, int) else 1)
                   for d in (serve_cfg.ingress, serve_cfg.retriever, serve_cfg.generator))
    return replicas + pool.actors * pool.num_cpus + settings.ingest.parse_num_cpus


def cmd_ask(args: argparse.Namespace) -> int:
    if args.endpoint:
        import httpx

        headers = {"Authorization": f"Bearer {os.environ[args.api_key_env]}"} if os.environ.get(args.api_key_env) else {}
        body = {"question": args.question, "top_k": args.top_k, "file_glob": args.file_glob, "filters": _filters(args),
                "retrieval_mode": args.mode, "auto_filters": False if args.no_auto_filters else None}
        response = httpx.post(f"{args.endpoint.rstrip('/')}/query", json=body, headers=headers, timeout=300)
        if response.status_code != 200:
            print(f"error: {response.status_code} {response.text}", file=sys.stderr)
            return 1
        data = response.json()
        _print_retrieval(data["retrieval"]["filters"], data["retrieval"]["boosts"], data["retrieval"]["matched"])
        print(data["answer"])
        citations = [(c["file"], c["page"], c["score"]) for c in data["citations"]]
    else:
        if args.index is None:
            print("error: give --endpoint URL of a running service, or --index DIR to answer in-process", file=sys.stderr)
            return 2
        import asyncio

        from rag.answering import AnswerRequest, local_pipeline
        from rag.engines import load_engine
        from rag.filters import parse_filters
        from rag.search import Searcher

        settings = _settings(args)
        raw = _filters(args)
        if args.file_glob:
            raw.setdefault("file_glob", args.file_glob)
        pipeline = local_pipeline(Searcher.from_index_dir(args.index, settings), load_engine(settings.llm))
        request = AnswerRequest(args.question, top_k=args.top_k, max_tokens=settings.llm.max_new_tokens,
                                filters=parse_filters(raw), mode=args.mode,
                                auto_filters=False if args.no_auto_filters else None)
        answer = asyncio.run(pipeline.answer(request))
        _print_retrieval(answer.search.filters, answer.search.boosts, answer.search.matched)
        print(answer.text)
        citations = [(c.file, c.page, c.score) for c in answer.chunks]
    print("\nretrieved:")
    for file, page, score in citations:
        print(f"  {file} p.{page} ({score:.3f})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from eval.datasets import DatasetError
    from eval.job import run_eval

    if args.sweep:
        from eval.sweep import run_sweep

        config, overrides = _config_sources(args)
        points = run_sweep(args.sweep, args.dataset, args.out, config, overrides, limit=args.limit)
        print(f"{len(points)} points; table: {Path(args.out) / 'sweep.md'}")
        return 0
    if args.index is None:
        print("error: give --index DIR (or --sweep FILE)", file=sys.stderr)
        return 2
    if args.judge_url and not args.judge_model:
        print("error: --judge-url needs --judge-model", file=sys.stderr)
        return 2
    try:
        report = run_eval(
            args.dataset, args.index, args.out, _settings(args), endpoint=args.endpoint,
            kinds=tuple(args.retrievers.split(",")), answer_kind=args.answer_retriever, generate=not args.no_generate,
            limit=args.limit, concurrency=args.concurrency, api_key=os.environ.get(args.api_key_env),
            judge=args.judge_url and {"base_url": args.judge_url, "model": args.judge_model,
                                      "api_key": os.environ.get(args.judge_api_key_env)},
            filters=_filters(args),
        )
    except (DatasetError, ConnectionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    overall = report["overall"]
    for kind, scores in overall["retrieval"].items():
        print(f"{kind:<7} recall@5 {scores.get('recall@5', 0):.3f}  MRR {scores.get('mrr', 0):.3f}")
    if "answers" in overall:
        print(f"answers token F1 {overall['answers']['token_f1']:.3f}")
    print(f"{report['failures']} failed; report: {Path(args.out) / 'report.md'} ({report['meta']['seconds']:.0f} s)")
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


def _retrieval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=["dense", "bm25", "hybrid"], help="retrieval mode (default: retrieval.mode)")
    parser.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE",
                        help="metadata filter, repeatable: company, ticker, form, fiscal_year, fiscal_quarter, "
                             "period_end, file, file_glob (e.g. --filter company=Apple --filter fiscal_year=2023)")
    parser.add_argument("--no-auto-filters", action="store_true",
                        help="do not turn companies and periods the question names into filters")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help=f"YAML config (default: {DEFAULT_CONFIG.name} when present)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. --set chunking.chunk_size=500"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="index a folder of PDFs with Ray Data")
    ingest.add_argument("docs_dir", type=Path)
    ingest.add_argument("--index", type=Path, required=True, help="index directory to create or update")
    ingest.add_argument("--prune", action="store_true", help="drop chunks of files that are gone from DOCS_DIR")
    ingest.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                        help="wait this long for another ingestion writing the same index (default: fail at once)")
    ingest.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    _common(ingest)
    ingest.set_defaults(func=cmd_ingest)

    search = sub.add_parser("search", help="nearest chunks for a query")
    search.add_argument("query")
    search.add_argument("--index", type=Path, required=True)
    search.add_argument("--top-k", type=int, default=5)
    _retrieval_options(search)
    _common(search)
    search.set_defaults(func=cmd_search)

    index_cmd = sub.add_parser("index", help="an index's versions: list them, roll back to one")
    index_sub = index_cmd.add_subparsers(dest="index_command", required=True)
    versions = index_sub.add_parser("versions", help="list the versions kept, * marks the current one")
    versions.add_argument("--index", type=Path, required=True)
    versions.set_defaults(func=cmd_index_versions)
    rollback = index_sub.add_parser("rollback", help="make an earlier version current again")
    rollback.add_argument("--index", type=Path, required=True)
    rollback.add_argument("--to", help="the version to make current (default: the one before the current)")
    rollback.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="wait this long for a running ingestion")
    rollback.set_defaults(func=cmd_index_rollback)

    docs = sub.add_parser("docs", help="a collection's documents: list them, or add and remove them in a running service")
    docs_sub = docs.add_subparsers(dest="docs_command", required=True)
    docs_list = docs_sub.add_parser("list", help="each document with its status, or (--index) its metadata")
    docs_list.add_argument("--index", type=Path, help="read this index directly instead of asking a service")
    docs_add = docs_sub.add_parser("add", help="upload PDFs; a job indexes them and the service goes on to the new version")
    docs_add.add_argument("files", type=Path, nargs="+")
    docs_rm = docs_sub.add_parser("rm", help="remove a document; a job takes its chunks out")
    docs_rm.add_argument("file")
    docs_reindex = docs_sub.add_parser("reindex", help="run a job over the whole folder: takes up documents whose job "
                                       "failed")
    for command, func in ((docs_list, cmd_docs_list), (docs_add, cmd_docs_add), (docs_rm, cmd_docs_rm),
                          (docs_reindex, cmd_docs_reindex)):
        command.add_argument("--endpoint", required=command is not docs_list, help="URL of a running service")
        command.add_argument("--collection", default="default")
        command.add_argument("--api-key-env", default="RAG_API_KEY")
        if command is not docs_list:
            command.add_argument("--wait", action="store_true", help="follow the job until the new version is live")
        command.set_defaults(func=func)

    serve_cmd = sub.add_parser("serve", help="run the online service (Ray Serve) over one or more collections")
    serve_cmd.add_argument("--index", type=Path, help="serve this index as the collection named default")
    serve_cmd.add_argument("--docs", type=Path, help="with --index: its documents folder, for uploads through the API")
    serve_cmd.add_argument("--collection", action="append", default=[], metavar="NAME=FOLDER",
                           help="a collection kept in FOLDER (FOLDER/docs, FOLDER/index; created empty when new); "
                                "repeatable, beside serve.collections in the config")
    serve_cmd.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    serve_cmd.add_argument("--insecure", action="store_true", help="allow a non-loopback host without an API key")
    _common(serve_cmd)
    serve_cmd.set_defaults(func=cmd_serve)

    ask = sub.add_parser("ask", help="answer a question with citations, from a running service or in-process")
    ask.add_argument("question")
    ask.add_argument("--endpoint", help="URL of a running service, e.g. http://127.0.0.1:8000")
    ask.add_argument("--index", type=Path, help="answer in-process over this index instead")
    ask.add_argument("--top-k", type=int, default=5)
    ask.add_argument("--file-glob", help="only files matching this glob")
    ask.add_argument("--api-key-env", default="RAG_API_KEY")
    _retrieval_options(ask)
    _common(ask)
    ask.set_defaults(func=cmd_ask)

    ev = sub.add_parser("eval", help="score retrieval and answers on a question set")
    ev.add_argument("--dataset", required=True, help="the SEC qna_data.csv, or a JSONL of question/answer/gold_files")
    ev.add_argument("--index", type=Path, help="the index to evaluate (not with --sweep)")
    ev.add_argument("--out", type=Path, required=True)
    ev.add_argument("--sweep", type=Path, help="a grid file (configs/sweep.yaml): re-ingests where needed")
    ev.add_argument("--endpoint", help="evaluate a running service (online mode) instead of a Ray Data job")
    ev.add_argument("--retrievers", default="dense,bm25,hybrid", help="batch mode: retrieval modes to compare")
    ev.add_argument("--answer-retriever", help="the mode whose chunks answers are generated from (default: retrieval.mode)")
    ev.add_argument("--no-generate", action="store_true", help="score retrieval only")
    ev.add_argument("--limit", type=int, help="only the first N questions")
    ev.add_argument("--concurrency", type=int, default=8, help="online mode: requests in flight")
    ev.add_argument("--api-key-env", default="RAG_API_KEY")
    ev.add_argument("--judge-url", help="OpenAI-compatible endpoint (…/v1) of an LLM judge scoring answers 1-5; off by default")
    ev.add_argument("--judge-model", help="the judge's model name at that endpoint")
    ev.add_argument("--judge-api-key-env", default="OPENAI_API_KEY")
    ev.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE",
                    help="metadata filter sent with every question (a JSONL question's own 'filters' win)")
    ev.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    _common(ev)
    ev.set_defaults(func=cmd_eval)

    demo = sub.add_parser("demo", help="build the embedded demo corpus, ingest it, search it")
    demo.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "rag-demo"), help="where docs/ and index/ go")
    demo.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    _common(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it narrates every CPU variant it tries
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
