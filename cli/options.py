"""What the subcommands share: the config they read (a YAML file, then ``--set`` and ``--address``), the options
that carry it, and the retrieval options of ``search`` and ``ask``."""

from __future__ import annotations

import argparse
from pathlib import Path

from rag.config import RETRIEVAL_MODES, Settings, load_settings
from rag.filters import FILTER_FIELDS

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


def config_sources(args: argparse.Namespace) -> tuple[Path | None, list[str]]:
    """The YAML file (``--config``, else the repository's default when present) and the overrides."""
    config = args.config
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    overrides = list(args.set)
    if getattr(args, "address", None):
        overrides.append(f"ray.address={args.address}")
    return config, overrides


def settings_of(args: argparse.Namespace) -> Settings:
    return load_settings(*config_sources(args))


def config_options() -> argparse.ArgumentParser:
    """``--config`` and ``--set``, as a parent parser."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--config", type=Path, help=f"YAML config (default: {DEFAULT_CONFIG.name} when present)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. --set chunking.chunk_size=500"
    )
    return parser


def cluster_options() -> argparse.ArgumentParser:
    """``--config``, ``--set`` and ``--address``: for the commands that start or join Ray."""
    parser = argparse.ArgumentParser(add_help=False, parents=[config_options()])
    parser.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    return parser


def service_options(endpoint_required: bool) -> argparse.ArgumentParser:
    """``--endpoint`` and ``--api-key-env``: for the commands that talk to a running service (cli.client)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--endpoint", required=endpoint_required, help="URL of a running service, e.g. http://127.0.0.1:8000"
    )
    parser.add_argument("--api-key-env", default="RAG_API_KEY", help="the environment variable holding its API key")
    return parser


def filter_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--filter", action="append", default=[], metavar="FIELD=VALUE", help=help_text)


def retrieval_options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--mode", choices=RETRIEVAL_MODES, help="retrieval mode (default: retrieval.mode)")
    parser.add_argument("--top-k", type=int, default=5)
    filter_option(
        parser,
        f"metadata filter, repeatable: {', '.join(FILTER_FIELDS)} (e.g. --filter company=Apple --filter "
        "fiscal_year=2023)",
    )
    parser.add_argument(
        "--no-auto-filters",
        action="store_true",
        help="do not turn companies and periods the question names into filters",
    )
    return parser


def filters_of(args: argparse.Namespace) -> dict:
    """``--filter company=Apple --filter fiscal_quarter=2 --filter fiscal_quarter=3`` as a filter object."""
    import yaml

    raw: dict = {}
    for text in args.filter:
        key, sep, value = text.partition("=")
        if not sep:
            raise ValueError(f"--filter {text!r} is not of the form field=value")
        raw.setdefault(key.strip(), []).append(yaml.safe_load(value))
    return {k: v[0] if k == "file_glob" or len(v) == 1 else v for k, v in raw.items()}


def print_retrieval(filters: dict, boosts: dict, matched: list[str]) -> None:
    if filters or boosts:
        print(f"filters {filters or '-'}  boosts {boosts or '-'}  (from: {', '.join(matched) or 'the request'})")
