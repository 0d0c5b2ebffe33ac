"""``rag serve``: the online service (Ray Serve) over one or more collections, on a local Ray or a cluster."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from pathlib import Path

from cli.options import cluster_options, config_sources, settings_of
from rag.config import Settings, resolve_api_key
from rag.ray_runtime import pool_size


def _service_cpus(settings: Settings) -> float:
    """CPUs the service's replicas reserve, plus one ingestion job's pool: what a local Ray must declare for a job
    started through the documents API to be placed beside the service."""
    serve_cfg, pool = settings.serve, settings.ingest.embed
    replicas = sum(
        d.ray_actor_options.get("num_cpus", 1) * (d.num_replicas if isinstance(d.num_replicas, int) else 1)
        for d in (serve_cfg.ingress, serve_cfg.retriever, serve_cfg.generator)
    )
    return replicas + pool_size(pool, {"CPU": os.cpu_count() or 1}) * pool.num_cpus + settings.ingest.parse_num_cpus


def cmd_serve(args: argparse.Namespace) -> int:
    from ray import serve

    from rag.ray_runtime import ensure_ray
    from serving.app import build_app

    for text in args.collection:
        name, sep, root = text.partition("=")
        if not sep:
            print(f"error: --collection {text!r} is not of the form NAME=FOLDER", file=sys.stderr)
            return 2
        args.set += [
            f"serve.collections.{name}.index={Path(root) / 'index'}",
            f"serve.collections.{name}.docs={Path(root) / 'docs'}",
        ]
    settings = settings_of(args)
    cfg = settings.serve
    if not cfg.collections and args.index is None:
        print(
            "error: nothing to serve: give --index DIR, --collection NAME=FOLDER or serve.collections in the config",
            file=sys.stderr,
        )
        return 2
    if cfg.host not in ("127.0.0.1", "localhost", "::1") and not resolve_api_key(cfg):
        if not args.insecure:
            print(
                f"error: binding {cfg.host} without an API key would let anyone who reaches the port query the index; "
                f"set {cfg.api_key_env} (or serve.api_key), or pass --insecure",
                file=sys.stderr,
            )
            return 2
        logging.getLogger(__name__).warning("binding %s without an API key (--insecure)", cfg.host)
    ensure_ray(settings.ray, min_cpus=_service_cpus(settings))
    serve.start(http_options={"host": cfg.host, "port": cfg.port, "request_timeout_s": cfg.request_timeout_s})
    config, overrides = config_sources(args)
    application = build_app(
        {
            "index": args.index and str(args.index),
            "docs": args.docs and str(args.docs),
            "config": config and str(config),
            "set": overrides,
        }
    )
    serve.run(application, name="rag", route_prefix="/", blocking=False)
    names = ", ".join(settings.serve.collections) or "default"
    print(
        f"serving {names}: the page at http://{cfg.host}:{cfg.port}/ (API: POST /query, /v1/chat/completions, "
        "/v1/collections); Ctrl-C or SIGTERM stops"
    )
    # A service in the background (nohup, systemd, `docker stop`) is stopped by SIGTERM, and one started with `&` in a
    # script ignores SIGINT: both end the way Ctrl-C does, Serve shut down first.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def add_parsers(sub) -> None:
    serve_cmd = sub.add_parser(
        "serve", help="run the online service (Ray Serve) over one or more collections", parents=[cluster_options()]
    )
    serve_cmd.add_argument("--index", type=Path, help="serve this index as the collection named default")
    serve_cmd.add_argument("--docs", type=Path, help="with --index: its documents folder, for uploads through the API")
    serve_cmd.add_argument(
        "--collection",
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help="a collection kept in FOLDER (FOLDER/docs, FOLDER/index; created empty when new); "
        "repeatable, beside serve.collections in the config",
    )
    serve_cmd.add_argument("--insecure", action="store_true", help="allow a non-loopback host without an API key")
    serve_cmd.set_defaults(func=cmd_serve)
