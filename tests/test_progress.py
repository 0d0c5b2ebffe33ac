"""What a watcher of an ingestion is told: the line, and the time left estimated from the counts so far."""

from __future__ import annotations

from ingest.progress import Progress, estimate_left


def counts(**kw) -> dict:
    return {
        "files": 0,
        "pages": 0,
        "chunks_made": 0,
        "chunks_embedded": 0,
        "bytes_parsed": 0,
        "first_embedded_at": None,
        **kw,
    }


def test_time_left_is_the_chunks_still_expected_at_the_rate_so_far():
    assert estimate_left(counts(), bytes_total=1000, now=100.0) is None  # nothing to go on yet
    assert estimate_left(counts(bytes_parsed=100, chunks_made=50), bytes_total=1000, now=100.0) is None
    # A tenth of the bytes gave 50 chunks: 500 expected; 50 embedded in 10 s, so 450 more take 90 s.
    seen = counts(bytes_parsed=100, chunks_made=50, chunks_embedded=50, first_embedded_at=90.0)
    assert estimate_left(seen, bytes_total=1000, now=100.0) == 90.0
    # Never below zero, when more was embedded than the scaled estimate expected.
    done = counts(bytes_parsed=1000, chunks_made=40, chunks_embedded=60, first_embedded_at=90.0)
    assert estimate_left(done, bytes_total=1000, now=100.0) == 0.0


def test_the_line_says_the_stage_and_the_counts():
    assert Progress(0).summary().startswith("planning")
    line = Progress(20, "running", 3, 150, 1024, 130.0).summary()
    assert line == "running, 3/20 files read, 150 pages, 1,024 chunks embedded, about 2 min left"
