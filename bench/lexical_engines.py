"""BM25 over a large index by this project's own engine (bm25s's stored scores, memory-mapped, searched by
rag.store.lexical.Lexical.top) against Tantivy (Rust, Lucene's design: block-max WAND skips the postings that
cannot enter the top), on the same terms of the same chunks.

    python -m bench.lexical_engines --index DIR/index --out DIR/tantivy [--queries 200] [--runs 3]
                                    [--results bench/results] [--name lexical_engines]

The Tantivy index is built once into --out (reused when it is there) from each chunk's search terms
(rag.languages.search_terms, the words BM25 reads here, jieba's for Chinese), joined by spaces and split again by
Tantivy's whitespace tokenizer, so both engines see the same terms. The queries are the SEC questions, unfiltered,
top 100 (retrieval.depth). Each run times every query on both engines in turn, in one process and one thread; it
reports the median and p95 per engine, their ratio, and how many of the top 100 (and top 10) they share: the two
differ in BM25's parameters (Tantivy k1 1.2, bm25s 1.5) and Tantivy scores each of its segments by the whole
index's statistics. Writes lexical_engines.json and lexical_engines.png (--name names them otherwise). Needs
`pip install '.[bench]'` (tantivy).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.harness import bar_spread, spread
from bench.paths import DATASETS, RESULTS

DEPTH = 100
FIELD = "terms"


def build(store, out: Path) -> float:
    """The Tantivy index of ``store``'s chunks in ``out``; returns the seconds it took."""
    import tantivy

    from rag.languages import search_terms
    from rag.store.files import search_texts

    schema = _schema()
    out.mkdir(parents=True)
    index = tantivy.Index(schema, str(out))
    writer = index.writer(512_000_000, 2)
    started = time.perf_counter()
    terms_of: dict[str, str] = {}  # resampled chunks repeat their texts: tokenized once each
    for start in range(0, len(store.chunks), 200_000):
        rows = np.arange(start, min(start + 200_000, len(store.chunks)))
        texts = search_texts(store.read(rows, ["header", "text"]))
        for row, text in zip(rows.tolist(), texts, strict=True):
            if text not in terms_of:
                terms_of[text] = " ".join(search_terms(text))
            writer.add_document(tantivy.Document(row=row, **{FIELD: terms_of[text]}))
        print(f"{rows[-1] + 1:,} of {len(store.chunks):,} chunks, {time.perf_counter() - started:.0f} s")
    writer.commit()
    writer.wait_merging_threads()
    return time.perf_counter() - started


def _schema():
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field(FIELD, tokenizer_name="whitespace", index_option="freq")
    builder.add_integer_field("row", stored=False, fast=True)
    return builder.build()


def tantivy_top(index, searcher, terms: list[str]) -> list[int]:
    import tantivy

    query = tantivy.Query.boolean_query(
        [(tantivy.Occur.Should, tantivy.Query.term_query(index.schema, FIELD, t)) for t in terms]
    )
    hits = searcher.search(query, DEPTH, count=False).hits
    return searcher.fast_field_values("row", [address for _, address in hits])


def measure(store, index, questions: list[str], runs: int) -> dict:
    from rag.languages import search_terms

    lexical = store.lexical()
    searcher = index.searcher()
    ours_ms, theirs_ms, shared_100, shared_10 = [], [], [], []
    for _ in range(runs):
        mine, other = [], []
        for question in questions:
            t = time.perf_counter()
            rows, _ = lexical.top(question, DEPTH)
            mine.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            found = tantivy_top(index, searcher, search_terms(question))
            other.append((time.perf_counter() - t) * 1000)
            shared_100.append(len(set(rows.tolist()) & set(found)) / max(1, min(len(rows), len(found))))
            shared_10.append(len(set(rows[:10].tolist()) & set(found[:10])) / max(1, min(10, len(rows))))
        ours_ms.append(mine)
        theirs_ms.append(other)
    return {
        "ours_p50_ms": spread([float(np.percentile(m, 50)) for m in ours_ms]),
        "ours_p95_ms": spread([float(np.percentile(m, 95)) for m in ours_ms]),
        "tantivy_p50_ms": spread([float(np.percentile(m, 50)) for m in theirs_ms]),
        "tantivy_p95_ms": spread([float(np.percentile(m, 95)) for m in theirs_ms]),
        "p50_ratio": spread(
            [float(np.percentile(a, 50) / np.percentile(b, 50)) for a, b in zip(ours_ms, theirs_ms, strict=True)]
        ),
        "shared_of_top_100": float(np.mean(shared_100)),
        "shared_of_top_10": float(np.mean(shared_10)),
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    bars = {
        "ours p50": result["ours_p50_ms"],
        "ours p95": result["ours_p95_ms"],
        "Tantivy p50": result["tantivy_p50_ms"],
        "Tantivy p95": result["tantivy_p95_ms"],
    }
    for x, f in enumerate(bars.values()):
        bar_spread(ax, x, f, "tab:blue" if x < 2 else "tab:orange")
    ax.set_xticks(range(len(bars)), list(bars))
    ax.set_ylabel(f"ms for the top {DEPTH} by BM25 (one thread)")
    ax.set_title(
        f"{result['chunks']:,} chunks; the two share {result['shared_of_top_100']:.0%} of the top {DEPTH} "
        f"(median, min-max of {result['runs']} runs)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, required=True, help="an index directory (bench.scale's DIR/index)")
    parser.add_argument("--out", type=Path, required=True, help="the Tantivy index's folder, built when missing")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--name", default="lexical_engines", help="of the JSON and PNG written in --results")
    args = parser.parse_args()
    try:
        import tantivy
    except ImportError:
        raise SystemExit("this benchmark needs Tantivy: pip install tantivy") from None

    from eval.datasets import load_dataset
    from rag.store.versions import open_index

    store = open_index(args.index)
    build_s = None if args.out.exists() else round(build(store, args.out), 1)
    index = tantivy.Index.open(str(args.out))
    questions = [q.question for q in load_dataset(DATASETS / "sec-10q" / "qna_data.csv")]
    questions = [questions[i % len(questions)] for i in range(args.queries)]
    result = {
        "chunks": len(store.chunks),
        "queries": len(questions),
        "runs": args.runs,
        "tantivy": tantivy.__version__ if hasattr(tantivy, "__version__") else "",
        "tantivy_build_s": build_s,
        "tantivy_bytes_on_disk": sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file()),
        "bm25s_bytes_on_disk": sum(
            f.stat().st_size for s in store.segments.values() for f in (s.path / "bm25").rglob("*") if f.is_file()
        ),
        **measure(store, index, questions, args.runs),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.results / f"{args.name}.png")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
