"""The service's own metrics, through Ray's metrics agent to each node's Prometheus endpoint (``ray_`` prefixed there).

Serve tags every one with its deployment, replica and application; route, status and collection are ours. Each
replica makes its own set once it is running (the tags need its Serve context). deploy/grafana/rag.json charts them.
"""

from __future__ import annotations

from ray.serve import metrics

# Seconds, from a cached search (milliseconds) to a long answer on a shared CPU (minutes).
LATENCY_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320]
TOKEN_GAP_S = [0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8]
NO_COLLECTION = "-"  # requests that name none (health, the page, models)


class IngressMetrics:
    def __init__(self):
        self.requests = metrics.Counter(
            "rag_requests",
            description="HTTP requests answered, by route template, status code and collection",
            # ray.serve.metrics.Counter annotates tag_keys as a 1-tuple; it takes any number of keys, as Ray's does.
            tag_keys=("route", "status", "collection"),  # type: ignore[arg-type]
        )
        self.latency = metrics.Histogram(
            "rag_request_seconds",
            description="Time to the end of the response (a stream's last byte), by route",
            boundaries=LATENCY_S,
            tag_keys=("route",),
        )

    def record(self, route: str, status: int, collection: str | None, seconds: float) -> None:
        self.requests.inc(tags={"route": route, "status": str(status), "collection": collection or NO_COLLECTION})
        self.latency.observe(seconds, tags={"route": route})


class RetrieverMetrics:
    def __init__(self):
        self.latency = metrics.Histogram(
            "rag_retrieval_seconds",
            description="A search: query embedding, FAISS and BM25, fusion, filters",
            boundaries=LATENCY_S,
            tag_keys=("collection",),
        )
        self.version = metrics.Gauge(
            "rag_index_version",
            description="The index version this replica serves (vNNNNNN as a number; -1: none)",
            tag_keys=("collection",),
        )
        self.chunks = metrics.Gauge(
            "rag_index_chunks", description="Chunks in the index version this replica serves", tag_keys=("collection",)
        )

    def serving(self, collection: str, version: str | None, chunks: int) -> None:
        self.version.set(int(version.lstrip("v")) if version else -1, tags={"collection": collection})
        self.chunks.set(chunks, tags={"collection": collection})


class GeneratorMetrics:
    def __init__(self):
        self.ttft = metrics.Histogram(
            "rag_time_to_first_token_seconds",
            description="From the prompt reaching the generator to its first text",
            boundaries=LATENCY_S,
        )
        self.token_gap = metrics.Histogram(
            "rag_inter_token_seconds",
            description="Between two pieces of one answer's streamed text",
            boundaries=TOKEN_GAP_S,
        )
        self.tokens = metrics.Counter("rag_generated_tokens", description="Completion tokens generated")
        self.batch = metrics.Gauge("rag_decode_batch_size", description="Sequences in the running decode batch")
        self.waiting = metrics.Gauge("rag_waiting_requests", description="Requests waiting to join the decode batch")

    def batching(self, running: int, waiting: int) -> None:
        self.batch.set(running)
        self.waiting.set(waiting)
