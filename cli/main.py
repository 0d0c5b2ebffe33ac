"""The ``rag`` command, above the stages it drives (ingest, serving, eval) and the core they share.

Each subcommand reads the one typed config: a YAML file, then ``--set`` overrides. The commands live by group:
cli.index_cmds (ingest, search, index, demo), cli.docs_cmds, cli.serve_cmd, cli.answer_cmds (ask, eval)."""

from __future__ import annotations

import argparse
import logging
import sys

from cli import answer_cmds, docs_cmds, index_cmds, serve_cmd
from rag.store.errors import StoreError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (index_cmds, docs_cmds, serve_cmd, answer_cmds):
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # it narrates every CPU variant it tries
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, StoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
