"""Timestamps the project writes (manifests, lock files, jobs): UTC, ISO 8601."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now(timespec: str = "seconds") -> str:
    return datetime.now(timezone.utc).isoformat(timespec=timespec)
