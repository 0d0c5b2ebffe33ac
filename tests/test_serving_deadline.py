"""The generator's per-request deadline over real HTTP: an app of its own, with a deadline short enough to reach."""

from __future__ import annotations

import concurrent.futures
import json

import httpx
import pytest

from tests.conftest import start_app

pytestmark = pytest.mark.slow  # a Serve application of its own: about a minute

DEADLINE_S = 6
RAMBLE = "Write a very long essay on everything Apple reports, section by section."


@pytest.fixture(scope="module")
def url(small_index):
    from ray import serve

    yield start_app(small_index, [f"serve.generator.deadline_s={DEADLINE_S}"])
    serve.shutdown()


def test_an_answer_past_the_deadline_gets_504_and_a_stream_an_error_event(url):
    """An answer still running after the deadline is ended: 504 when nothing has gone out yet, an error event once the
    stream has started. Either way its row leaves the batch and the service answers the next request."""
    plain_body = {"question": RAMBLE, "top_k": 1, "max_tokens": 400, "auto_filters": False}
    chat_body = {
        "messages": [{"role": "user", "content": RAMBLE}],
        "top_k": 1,
        "max_tokens": 400,
        "stream": True,
        "auto_filters": False,
    }
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        plain = pool.submit(httpx.post, f"{url}/query", json=plain_body, timeout=120)
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=chat_body, timeout=120) as r:
            status, events = r.status_code, [line for line in r.iter_lines() if line.startswith("data: ")]
        plain = plain.result()
    assert plain.status_code == 504 and f"deadline of {DEADLINE_S} s" in plain.json()["detail"], plain.text
    assert status == 200
    tokens = [json.loads(e[6:]) for e in events[:-1]]
    assert len(tokens) > 5 and all("choices" in t for t in tokens)  # it was streaming
    error = json.loads(events[-1][6:])["error"]
    assert error["code"] == 504 and f"deadline of {DEADLINE_S} s" in error["message"]
    details = httpx.get(f"{url}/readyz", params={"verbose": "true"}, timeout=30).json()
    assert details["generator"]["batching"]["running"] == 0 and details["generator"]["batching"]["timed_out"] == 2
    r = httpx.post(
        f"{url}/query",
        json={"question": "What were Apple's total net sales?", "top_k": 1, "max_tokens": 4},
        timeout=120,
    )
    assert r.status_code == 200, r.text
