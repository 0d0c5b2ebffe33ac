"""Page-level gold for questions that have gold files only: the pages of the gold filing that hold the gold answer's
figures.

For each single-document question, the figures of its gold answer ("$81,797 million", "21.3%",
"(1,234)") are looked up on every page of its one gold file, as the index stores them; the pages
holding the most of them are its gold pages. Years, quarter numbers and figures of one or two
digits are not figures (they are on every page), unless they are percentages ("18%"). A question whose answer has no
figure, or whose
figures are on no page, gets no gold pages and keeps its file-level gold. The output is the JSONL
``rag eval`` reads (``question``, ``answer``, ``gold_files``, ``gold_pages``, ...), in the same
dev/test split, since the split follows the question's text.

    python -m eval.page_gold --dataset ../shared/datasets/sec-10q/qna_data.csv --index ./index --out sec-pages.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

from eval.datasets import Question, load_dataset
from rag.store.versions import open_index

SINGLE_DOC = "Single-Doc"
_FIGURE = re.compile(
    r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d])|(?<![\w.,])\d+\.\d+(?![\d])|(?<![\w.,])\d{3,}(?![\d,])|"
    r"(?<![\w.,])\d{1,2}%"
)
_YEAR = re.compile(r"(?:19|20)\d{2}")


def figures(text: str) -> set[str]:
    """The figures a text states, as written without thousands separators: "81,797" -> "81797"; years left out."""
    found = {m.group(0).replace(",", "") for m in _FIGURE.finditer(text)}
    return {f for f in found if not _YEAR.fullmatch(f)}


def page_texts(index_dir: Path) -> dict[str, dict[int, str]]:
    """Each indexed file's pages as the index stores them (its chunks joined)."""
    chunks = open_index(index_dir).read(columns=["file", "page", "text"])
    pages: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for file, page, text in zip(chunks["file"], chunks["page"], chunks["text"], strict=True):
        pages[file][int(page)].append(text)
    return {f: {p: " ".join(t) for p, t in by_page.items()} for f, by_page in pages.items()}


def gold_pages(q: Question, pages: dict[str, dict[int, str]]) -> list[tuple[str, int]]:
    """The pages of the question's one gold file that hold the most of its answer's figures; [] where none can be
    told."""
    files = [f for f in pages if q.is_gold_file(f)]
    wanted = figures(q.answer)
    if SINGLE_DOC not in q.question_type or len(files) != 1 or not wanted:
        return []
    counts = {page: len(wanted & figures(text)) for page, text in pages[files[0]].items()}
    best = max(counts.values(), default=0)
    return [(files[0], page) for page, n in sorted(counts.items()) if best and n == best]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--index", type=Path, required=True, help="an index holding the gold files")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    pages = page_texts(args.index)
    with_pages = 0
    with args.out.open("w", encoding="utf-8") as f:
        for q in load_dataset(args.dataset):
            gold = gold_pages(q, pages)
            with_pages += bool(gold)
            f.write(
                json.dumps(
                    {
                        "id": q.id,
                        "question": q.question,
                        "answer": q.answer,
                        "gold_files": q.gold_files,
                        "gold_pages": [{"file": file, "page": page} for file, page in gold],
                        "question_type": q.question_type,
                        "chunk_type": q.chunk_type,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    print(f"{args.out}: {with_pages} questions with gold pages")


if __name__ == "__main__":
    main()
