"""``rag ask`` (one question, from a running service or in-process) and ``rag eval`` (a question set, scored)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from cli.client import call, reported
from cli.options import (
    cluster_options,
    config_options,
    config_sources,
    filter_option,
    filters_of,
    print_retrieval,
    retrieval_options,
    service_options,
    settings_of,
)
from rag.config import RETRIEVAL_MODES
from rag.figures import WHY


def _print_figures(checks: list[dict]) -> None:
    """Each figure of the answer and where it stands in the sources (rag.figures)."""
    if not checks:
        return
    found = sum(c["status"] == "supported" for c in checks)
    print(f"\nfigures: {found} of {len(checks)} found in the sources")
    for c in checks:
        if c["status"] == "cut_off":
            where = "cut off by the length limit"
        elif c["status"] == "unsupported":
            where = f"NOT FOUND in the sources: {WHY[c['why']]}"
        elif c["derived_from"]:
            *parts, last = c["derived_from"]
            where = f"computed from {', '.join(parts)} and {last}"
        else:
            where = f"{c['file']} p.{c['page']}: {c['span']}"
        print(f"  {c['text']}  {where}")


def _ask_service(args: argparse.Namespace) -> list[tuple[str, int, float]]:
    body = {
        "question": args.question,
        "top_k": args.top_k,
        "file_glob": args.file_glob,
        "filters": filters_of(args),
        "retrieval_mode": args.mode,
        "auto_filters": False if args.no_auto_filters else None,
    }
    data = call(args, "POST", "/query", json=body).json()
    print_retrieval(data["retrieval"]["filters"], data["retrieval"]["boosts"], data["retrieval"]["matched"])
    print(data["answer"])
    _print_figures(data["checks"])
    return [(c["file"], c["page"], c["score"]) for c in data["citations"]]


def _ask_here(args: argparse.Namespace) -> list[tuple[str, int, float]]:
    import asyncio

    from rag.answering import local_pipeline
    from rag.filters import parse_filters
    from rag.llm.engines import load_engine
    from rag.search import Searcher
    from rag.types import AnswerRequest

    settings = settings_of(args)
    raw = filters_of(args)
    if args.file_glob:
        raw.setdefault("file_glob", args.file_glob)
    pipeline = local_pipeline(
        Searcher.from_index_dir(args.index, settings),
        load_engine(settings.llm),
        settings.answers.unsupported_figures,
    )
    request = AnswerRequest(
        args.question,
        top_k=args.top_k,
        max_tokens=settings.llm.max_new_tokens,
        filters=parse_filters(raw),
        mode=args.mode,
        auto_filters=False if args.no_auto_filters else None,
    )
    answer = asyncio.run(pipeline.answer(request))
    print_retrieval(answer.search.filters, answer.search.boosts, answer.search.matched)
    print(answer.text)
    _print_figures([asdict(c) for c in answer.figures.checks])
    return [(c.file, c.page, c.score) for c in answer.chunks]


@reported
def cmd_ask(args: argparse.Namespace) -> int:
    if not args.endpoint and args.index is None:
        print("error: give --endpoint URL of a running service, or --index DIR to answer in-process", file=sys.stderr)
        return 2
    citations = _ask_service(args) if args.endpoint else _ask_here(args)
    print("\nretrieved:")
    for file, page, score in citations:
        print(f"  {file} p.{page} ({score:.3f})")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from eval.datasets import DatasetError
    from eval.job import run_eval

    if args.sweep:
        from eval.sweep import run_sweep

        config, overrides = config_sources(args)
        points = run_sweep(args.sweep, args.dataset, args.out, config, overrides, limit=args.limit, docs=args.docs)
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
            args.dataset,
            args.index,
            args.out,
            settings_of(args),
            endpoint=args.endpoint,
            retrievers=tuple(args.retrievers.split(",")),
            answer_retriever=args.answer_retriever,
            generate=not args.no_generate,
            limit=args.limit,
            concurrency=args.concurrency,
            api_key=os.environ.get(args.api_key_env),
            judge=args.judge_url
            and {
                "base_url": args.judge_url,
                "model": args.judge_model,
                "api_key": os.environ.get(args.judge_api_key_env),
            },
            filters=filters_of(args),
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


def cmd_tune(args: argparse.Namespace) -> int:
    from eval.tune import FEWEST, table, tune
    from rag.tuning import clear_tuned, write_tuned

    if args.clear:
        clear_tuned(args.index)
        print(f"{args.index}: searched with the config's retrieval settings again")
        return 0
    if args.dataset is None:
        print("error: give --dataset FILE (or --clear)", file=sys.stderr)
        return 2
    report = tune(args.index, args.dataset, settings_of(args), FEWEST if args.fewest is None else args.fewest)
    print(table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    chosen = report["retrieval"].get("mode_by_language", {})
    if args.dry_run:
        print(f"dry run: {args.index} is left as it was")
    elif chosen:
        path = write_tuned(args.index, report["retrieval"], report["chosen_by"])
        modes = ", ".join(f"{language}: {mode}" for language, mode in chosen.items())
        print(f"{path}: every reader of the collection now searches with {modes} (rag tune --clear undoes it)")
    else:
        clear_tuned(args.index)
        print(f"{args.index}: the config's modes stand; nothing written")
    return 0


def add_parsers(sub) -> None:
    ask = sub.add_parser(
        "ask",
        help="answer a question with citations, from a running service or in-process",
        parents=[retrieval_options(), service_options(endpoint_required=False), config_options()],
    )
    ask.add_argument("question")
    ask.add_argument("--index", type=Path, help="answer in-process over this index instead")
    ask.add_argument("--file-glob", help="only files matching this glob")
    ask.set_defaults(func=cmd_ask)

    ev = sub.add_parser(
        "eval",
        help="score retrieval and answers on a question set",
        parents=[service_options(endpoint_required=False), cluster_options()],
    )
    ev.add_argument("--dataset", required=True, help="the SEC qna_data.csv, or a JSONL of question/answer/gold_files")
    ev.add_argument("--index", type=Path, help="the index to evaluate (not with --sweep)")
    ev.add_argument("--out", type=Path, required=True)
    ev.add_argument("--sweep", type=Path, help="a grid file (configs/sweep.yaml): re-ingests where needed")
    ev.add_argument("--docs", type=Path, help="with --sweep: the documents to ingest, instead of the file's 'docs'")
    ev.add_argument("--retrievers", default=",".join(RETRIEVAL_MODES), help="batch mode: retrieval modes to compare")
    ev.add_argument(
        "--answer-retriever", help="the mode whose chunks answers are generated from (default: retrieval.mode)"
    )
    ev.add_argument("--no-generate", action="store_true", help="score retrieval only")
    ev.add_argument("--limit", type=int, help="only the first N questions")
    ev.add_argument("--concurrency", type=int, default=8, help="online mode: requests in flight")
    ev.add_argument(
        "--judge-url", help="OpenAI-compatible endpoint (…/v1) of an LLM judge scoring answers 1-5; off by default"
    )
    ev.add_argument("--judge-model", help="the judge's model name at that endpoint")
    ev.add_argument("--judge-api-key-env", default="OPENAI_API_KEY")
    filter_option(ev, "metadata filter sent with every question (a JSONL question's own 'filters' win)")
    ev.set_defaults(func=cmd_eval)

    tune = sub.add_parser(
        "tune",
        help="choose a collection's retrieval mode per language on its own questions' dev split",
        parents=[config_options()],
    )
    tune.add_argument("--index", type=Path, required=True, help="the collection's index directory")
    tune.add_argument("--dataset", help="questions with gold files (and gold pages, where known): the eval's formats")
    tune.add_argument(
        "--fewest", type=int, help="development questions a language needs before its mode is chosen (default: 10)"
    )
    tune.add_argument("--out", type=Path, help="also write every mode's figures and the choice here (JSON)")
    tune.add_argument("--dry-run", action="store_true", help="report the choice without writing it")
    tune.add_argument("--clear", action="store_true", help="remove the collection's tuning")
    tune.set_defaults(func=cmd_tune)
