"""What every request to the ingress passes through before and after its route: the header limit (431) and the
request's log line and metrics."""

from __future__ import annotations

import json
import logging
import time
import uuid

from fastapi.responses import JSONResponse

from serving.telemetry import IngressMetrics

# One JSON line per request in the ingress replica's Serve log: ids, route, status, collection, stage timings and
# tokens; never the question, the documents' text or a key.
_access = logging.getLogger("ray.serve")

# Request headers past this are refused with 431 before any route runs (nginx's default allows 32 KB, uvicorn's h11
# 16 KB; Serve's proxy let a 1 MB header through): docs/serving.md.
MAX_HEADER_BYTES = 16 * 1024


class RequestLog:
    """The request's line, under the id Serve's proxy gives every request: the client's X-Request-ID, or one it made
    up, returned in the response either way. Plain ASGI, so a streamed answer and a client going away pass through
    untouched. A route adds its own fields to ``request.state.log``."""

    def __init__(self, inner):
        self.inner = inner
        self.metrics = IngressMetrics()  # built with the middleware stack: in the replica, on its first request

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1") or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["log"] = {}
        started, status = time.perf_counter(), 500

        async def send_and_see(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.inner(scope, receive, send_and_see)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None)
            # json.dumps quotes whatever the client sent as its id: no line can be forged into the log.
            _access.info(
                json.dumps(
                    {
                        "request_id": request_id[:128],
                        "method": scope["method"],
                        "route": route or scope["path"],
                        "status": status,
                        "ms": round(seconds * 1000, 1),
                        **state["log"],
                    }
                )
            )
            # A path no route matched is the client's text: one label for all of them keeps the series bounded.
            self.metrics.record(route or "unmatched", status, state["log"].get("collection"), seconds)


class HeaderLimit:
    """431 for a request whose headers together pass MAX_HEADER_BYTES: a megabyte of headers is no client's need."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            response = JSONResponse(
                {"detail": f"the request's headers are over the limit of {MAX_HEADER_BYTES // 1024} KB"},
                status_code=431,
            )
            return await response(scope, receive, send)
        return await self.inner(scope, receive, send)
