"""What an ingestion asks of the cluster: the embedding pool fitted to it, and a watch on it while the job runs.

A node lost mid-run leaves Ray Data's actors to be restarted on the nodes that are left, where they can hold every
CPU and starve the parsing stage for good. The watch notices the cluster shrinking below what the running pool
needs, stops the execution, and the job reruns with a pool fitted to what is left, or fails saying why. A run that
stalls for another reason is ended by Ray Data's own no-progress guard (``ingest.stall_timeout_s``).
"""

from __future__ import annotations

import logging
import math
import threading

from ingest.periodic import Periodic
from rag.config import Settings
from rag.ray_runtime import pool_size

log = logging.getLogger(__name__)

POLL_S = 2.0


class PoolDoesNotFit(Exception):
    """Not even one embedding actor and a parsing task fit on the cluster."""


class ClusterShrank(Exception):
    """The cluster lost resources the running pool needs; the run was stopped to be fitted again."""


def cpus_needed(settings: Settings) -> float:
    pool = settings.ingest.embed
    return pool.fitted_actors() * pool.num_cpus + settings.ingest.parse_num_cpus


def gpus_needed(settings: Settings) -> float:
    pool = settings.ingest.embed
    return pool.fitted_actors() * pool.num_gpus


def sized_pool(settings: Settings, resources: dict[str, float]) -> Settings:
    """``settings`` with an ``auto`` pool fitted to ``resources``; a set size is kept, to be checked."""
    return fit_pool(settings, resources) if settings.ingest.embed.actors == "auto" else settings


def check_fits(settings: Settings, resources: dict[str, float]) -> None:
    """Raise PoolDoesNotFit where the configured pool would wait forever for resources the cluster lacks."""
    pool, parse = settings.ingest.embed, settings.ingest.parse_num_cpus
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if cpus_needed(settings) > cpus:
        raise PoolDoesNotFit(
            f"{pool.actors} embedding actors x {pool.num_cpus} CPUs plus {parse} CPU for a parsing task need "
            f"{cpus_needed(settings):g} CPUs, the cluster has {cpus:g}: lower ingest.embed.actors, "
            "ingest.embed.num_cpus or ingest.parse_num_cpus"
        )
    if gpus_needed(settings) > gpus:
        raise PoolDoesNotFit(
            f"{pool.actors} embedding actors x {pool.num_gpus} GPUs need {gpus_needed(settings):g} GPUs, the cluster "
            f"has {gpus:g}: lower ingest.embed.actors or ingest.embed.num_gpus"
        )


def fit_pool(settings: Settings, resources: dict[str, float]) -> Settings:
    """``settings`` with as many embedding actors as fit on ``resources`` (at most ``pool_size``)."""
    pool, parse = settings.ingest.embed, settings.ingest.parse_num_cpus
    fit = min(pool_size(pool, resources), math.floor((resources.get("CPU", 0) - parse) / pool.num_cpus + 1e-9))
    if pool.num_gpus:
        fit = min(fit, math.floor(resources.get("GPU", 0) / pool.num_gpus + 1e-9))
    fitted = settings.model_copy(deep=True)
    fitted.ingest.embed.actors = max(fit, 1)
    check_fits(fitted, resources)
    return fitted


def sized_for(settings: Settings, files: int) -> Settings:
    """``settings`` (a pool of a set size) with no more embedding actors than ``files``: a file is one block of the
    pipeline, and an actor without one would load its model for nothing."""
    if settings.ingest.embed.fitted_actors() <= max(files, 1):
        return settings
    sized = settings.model_copy(deep=True)
    sized.ingest.embed.actors = max(files, 1)
    return sized


def admit(settings: Settings, free: dict[str, float], files: int) -> Settings:
    """``settings`` for a job over ``files`` files started on the ``free`` resources: the pool sized for them and
    fitted to what is free, and ``ingest.max_cpus`` that pool plus parsing tasks for up to ``files`` files out of what
    is left (a file is one parsing task)."""
    fitted = sized_for(fit_pool(settings, free), files)
    pool, parse = fitted.ingest.embed, fitted.ingest.parse_num_cpus
    spare = free.get("CPU", 0) - pool.fitted_actors() * pool.num_cpus
    parse_tasks = max(1, min(files, math.floor(spare / parse + 1e-9)))
    fitted.ingest.max_cpus = pool.fitted_actors() * pool.num_cpus + parse_tasks * parse
    return fitted


def min_cpus(settings: Settings) -> float:
    """What the smallest run needs: one embedding actor and one parsing task."""
    return settings.ingest.embed.num_cpus + settings.ingest.parse_num_cpus


def alive_resources() -> dict[str, float]:
    """The resources of the nodes alive now (the GCS drops a dead node's within its health-check period)."""
    import ray

    return ray.cluster_resources()


class RunWatch(Periodic):
    """A thread that stops ``dataset``'s execution when the cluster can no longer hold the pool.

    After its loop ends (a stopped execution ends it early, without an error) the consumer calls
    ``raise_if_stopped()``."""

    def __init__(self, dataset, settings: Settings):
        super().__init__("ingest-watch", POLL_S)
        self.dataset, self.settings = dataset, settings
        self.reason: ClusterShrank | None = None

    def raise_if_stopped(self) -> None:
        if self.reason is not None:
            raise self.reason

    def tick(self) -> bool:
        self.reason = self._check()
        if self.reason is None:
            return False
        executor = running_executor(self.dataset)
        if executor is not None:
            executor.shutdown(force=True)  # the consumer's loop then ends; its actors and tasks are released
        return True

    def _check(self) -> ClusterShrank | None:
        resources = alive_resources()
        cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
        if cpus < cpus_needed(self.settings) or gpus < gpus_needed(self.settings):
            return ClusterShrank(
                f"the cluster now has {cpus:g} CPUs and {gpus:g} GPUs, the pool needs "
                f"{cpus_needed(self.settings):g} and {gpus_needed(self.settings):g}"
            )
        return None


def running_executor(dataset):
    """The streaming executor running ``dataset``, to stop it: Ray Data has no public way to stop an execution from
    another thread than its consumer's, so this is the one reach into its internals (tests/test_placement.py fails
    loudly when Ray Data moves them). It keeps the executor on the dataset only once the first output is out, so
    before that it is found among the threads (each executor is a thread named after its dataset)."""
    from ray.data._internal.execution.streaming_executor import StreamingExecutor

    if dataset._current_executor is not None:
        return dataset._current_executor
    name = dataset.get_dataset_id()
    return next((t for t in threading.enumerate() if isinstance(t, StreamingExecutor) and name in t.name), None)
