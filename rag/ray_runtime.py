"""Joining Ray: an existing cluster when one is named, a local one started on demand otherwise."""

from __future__ import annotations

import logging
import os

from rag.config import RayConfig

log = logging.getLogger(__name__)


def ensure_ray(cfg: RayConfig) -> None:
    """Connect once per process. Inside ``ray job submit`` RAY_ADDRESS is set and ray.init() joins that cluster."""
    import ray

    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    log.info("starting a local Ray" if address is None else f"joining the Ray cluster at {address}")
    ray.init(address=address, log_to_driver=True, configure_logging=False)
