"""The one HTTP client of the commands that talk to a running service (``docs``, ``ask --endpoint``)."""

from __future__ import annotations

import argparse
import os
import sys


class ServiceError(Exception):
    """The service could not be reached or refused the request; the message says which and why."""


def call(args: argparse.Namespace, method: str, path: str, **kwargs):
    """A request to the service at ``args.endpoint`` with the key from ``args.api_key_env``; the response when it
    succeeded, else ServiceError."""
    import httpx

    key = os.environ.get(args.api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.request(method, f"{args.endpoint.rstrip('/')}{path}", headers=headers, timeout=300, **kwargs)
    except httpx.HTTPError as err:
        raise ServiceError(f"{args.endpoint}: {err}") from None
    if response.status_code >= 400:
        detail = response.json().get("detail") if "json" in response.headers.get("content-type", "") else response.text
        raise ServiceError(f"{response.status_code} {detail}")
    return response


def reported(command):
    """A command that talks to the service: a ServiceError is printed and exits 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ServiceError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1

    return run
