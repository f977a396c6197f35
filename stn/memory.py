"""Keep freed memory in the process for the next training step, instead of handing it back to the OS.

glibc's ``malloc`` serves large blocks (a batch's activations: 19 MB for 256 crops of 32 channels
at 24×24) with ``mmap`` and returns them to the kernel when freed, or trims them off its heap; the
next step then touches fresh pages, one page fault per 4 kB. On this project's 2-core CPU that was
a fifth of a training step on R (``stn train``: 12 700 minor faults a step; bench/README.md, issue 7).
:func:`keep_freed_memory` turns both off for the process: memory freed by one step is reused by the
next, and the process keeps its high-water mark.

A process-wide choice, so the library never makes it: ``stn train`` and ``stn eval`` do, and the
benchmarks. A long-running server (``app.py``) does not.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

# mallopt(3) parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Ask glibc's ``malloc`` never to ``mmap`` large blocks nor trim its heap (``mallopt``).

    Returns whether it took effect: ``False`` off Linux, or with another C library.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
