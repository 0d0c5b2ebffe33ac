"""Host memory a long-running model process hands back: buffers in mappings of their own, freed heap returned to the
OS."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import mmap


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
