"""The status each failure of the answer path, the documents API or a replica is answered with."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray.exceptions import RayActorError

from rag.ray_runtime import own_message
from rag.store.versions import NoIndex
from rag.types import DeadlineExceeded, DecodeLoopStopped
from serving.clients import Overloaded
from serving.refusals import ChangeRefused, NotFound

log = logging.getLogger(__name__)


def stream_status(err: Exception) -> int:
    """The status a failure would have had, for a stream whose status line has gone out already."""
    return 504 if isinstance(err, DeadlineExceeded) else 503 if isinstance(err, RayActorError) else 500


def _retry_later(request: Request, detail: str) -> JSONResponse:
    """503 with the Retry-After the service advertises: the condition passes without the client changing anything."""
    return JSONResponse(
        {"detail": detail},
        status_code=503,
        headers={"Retry-After": str(max(1, round(request.app.state.retry_after_s)))},
    )


def _replica_lost(request: Request, exc: RayActorError) -> JSONResponse:
    # The replica holding the request died (its node went away); Serve starts another on the nodes that are left.
    log.warning("a replica was lost under a request: %s", type(exc).__name__)
    return _retry_later(request, "a replica serving this request was lost; retry")


def _detail(status: int):
    return lambda request, exc: JSONResponse({"detail": own_message(exc)}, status_code=status)


def _async(make):
    """A handler Starlette awaits on the event loop (a plain function it would send to a thread pool)."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return make(request, exc)

    return handler


def install_handlers(app: FastAPI) -> None:
    handlers = {
        Overloaded: lambda request, exc: _retry_later(request, "the service is at capacity; retry later"),
        DecodeLoopStopped: lambda request, exc: _retry_later(
            request, "the generator replica failed and is being replaced; retry"
        ),
        RayActorError: _replica_lost,
        DeadlineExceeded: _detail(504),
        ChangeRefused: lambda request, exc: JSONResponse({"detail": own_message(exc)}, status_code=exc.status),
        NotFound: _detail(404),
        NoIndex: _detail(409),
    }
    for exc_type, handler in handlers.items():
        app.add_exception_handler(exc_type, _async(handler))
