"""Joining Ray: an existing cluster when one is named, a local one started on demand otherwise."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from rag.config import ActorPoolConfig, RayConfig

log = logging.getLogger(__name__)

RAY_DATA_LOGGING = Path(__file__).with_name("ray_data_logging.yaml")


def own_message(exc: BaseException) -> str:
    """The last line of an exception's message: its own words where it was raised in another process (a replica, an
    actor), whose traceback Ray puts above them."""
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.strip().splitlines()[-1] if text.strip() else type(exc).__name__


def ensure_ray(cfg: RayConfig, min_cpus: float = 0) -> None:
    """Connect once per process. Inside ``ray job submit`` RAY_ADDRESS is set and ray.init() joins that cluster.

    ``min_cpus``: a local Ray declares at least this many logical CPUs, so that work which must run side by side (the
    service's replicas and an ingestion job it starts) can be placed on a machine with fewer cores; it then shares
    them. A cluster's resources are its own."""
    # Read when Ray Data is first imported, here and by the workers of a Ray this process starts.
    os.environ.setdefault("RAY_DATA_LOGGING_CONFIG", str(RAY_DATA_LOGGING))
    import ray

    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS") or None
    if address in (None, "local"):
        # Its notice that a new local Ray uses token authentication (Ray's default, and the safe one) is for whoever
        # chose none; this one chose it.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        cores = os.cpu_count() or 1
        num_cpus = max(cores, math.ceil(min_cpus))
        log.info("starting a local Ray with %d logical CPUs on %d cores", num_cpus, cores)
        # "local" explicitly: given no address, ray.init would join any Ray it finds running on this machine.
        ray.init(address="local", num_cpus=num_cpus, log_to_driver=True, configure_logging=False)
    else:
        log.info("joining the Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True, configure_logging=False)


def pool_size(pool: ActorPoolConfig, resources: dict[str, float]) -> int:
    """The configured number of actors, or for ``auto`` the number ``resources`` keep busy without sharing: one per
    GPU share where actors take GPUs, else one per whole CPU's worth of their torch threads (an actor runs
    ``num_cpus`` rounded up)."""
    if pool.actors != "auto":
        return pool.actors
    if pool.num_gpus:
        return max(1, math.floor(resources.get("GPU", 0) / pool.num_gpus + 1e-9))
    return max(1, math.floor(resources.get("CPU", 0) / math.ceil(pool.num_cpus) + 1e-9))
