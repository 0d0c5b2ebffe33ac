"""Joining Ray: an existing cluster when one is named, a local one started on demand otherwise."""

from __future__ import annotations

import logging
import math
import os

from rag.config import RayConfig

log = logging.getLogger(__name__)


def ensure_ray(cfg: RayConfig, min_cpus: float = 0) -> None:
    """Connect once per process. Inside ``ray job submit`` RAY_ADDRESS is set and ray.init() joins that cluster.

    ``min_cpus``: a local Ray declares at least this many logical CPUs, so that work which must run side by side (the
    service's replicas and an ingestion job it starts) can be placed on a machine with fewer cores; it then shares
    them. A cluster's resources are its own."""
    import ray

    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address is None:
        cores = os.cpu_count() or 1
        num_cpus = max(cores, math.ceil(min_cpus))
        log.info("starting a local Ray with %d logical CPUs on %d cores", num_cpus, cores)
        ray.init(num_cpus=num_cpus, log_to_driver=True, configure_logging=False)
    else:
        log.info("joining the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True, configure_logging=False)
