"""Which device a model runs on, in which dtype, and how much of the machine it may take: the GPU memory share of a
fractional GPU, the CPU threads of the CPUs Ray reserved."""

from __future__ import annotations

import logging
import math
import os

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> str:
    """``cuda`` when asked for (or ``auto``) and CUDA is there; the CPU otherwise.

    Ray hands an actor with ``num_gpus`` a GPU id even when the GPUs are only logical (a CPU machine
    started with ``ray.init(num_gpus=N)``), so the actor must look at CUDA itself before using it.
    """
    import torch

    if requested == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if requested == "cuda":
        log.warning("CUDA was asked for but is not available here; running on the CPU")
    return "cpu"


def _cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:  # not Linux: stay on the safe side
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def pick_dtype(requested: str, device: str) -> str:
    """``auto`` is bfloat16 where the device multiplies it natively (3-4x faster on such CPUs, cosine to
    float32 above 0.9999 for MiniLM), float32 elsewhere: emulated bfloat16 is slower than float32."""
    if requested != "auto":
        return requested
    import torch

    if device == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if _cpu_has_native_bf16() else "float32"


def cap_gpu_memory(device: str, fraction: float) -> None:
    """Keep a process holding a fraction of a GPU inside that fraction of its memory.

    With several replicas or actors sharing one GPU, one of them running out of memory must fail
    alone instead of starving its neighbours.
    """
    if device != "cuda" or not 0 < fraction < 1:
        return
    import torch

    torch.cuda.set_per_process_memory_fraction(fraction)


def set_cpu_threads(num_cpus: float) -> None:
    """Match torch's thread pool to the CPUs Ray reserved, so actors sharing a node do not oversubscribe it."""
    import torch

    threads = max(1, math.ceil(num_cpus))
    torch.set_num_threads(threads)
    # An OpenMP runtime loaded after this call (by a library imported later) sizes its pool from the variable.
    os.environ["OMP_NUM_THREADS"] = str(threads)
