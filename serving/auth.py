"""Bearer keys and the collections each one reaches (serve.api_key and serve.scoped_keys, resolved by
rag.config.resolve_keys)."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request

UNKNOWN = object()  # the scope of a request with no valid key


def key_scope(request: Request):
    """The collections the request's bearer token reaches: None for all, ``UNKNOWN`` for no valid token."""
    keys = request.app.state.keys
    if not keys:
        return None
    header = request.headers.get("authorization", "").encode()
    # Every key is compared, so the time taken says nothing about which one came close.
    matches = [scope for key, scope in keys.items() if secrets.compare_digest(header, f"Bearer {key}".encode())]
    return (None if matches[0] is None else frozenset(matches[0])) if matches else UNKNOWN


def authorized(request: Request) -> bool:
    return key_scope(request) is not UNKNOWN


def check_api_key(request: Request) -> None:
    """The dependency of every route that needs a key."""
    if not authorized(request):
        raise HTTPException(
            status_code=401, detail="missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"}
        )
