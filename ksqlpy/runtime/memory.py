"""Process memory settings for a long-running engine: the C library's malloc.

Arrow batches come from the C library's malloc (the server uses Arrow's system pool), as do
librdkafka's buffers and Python's larger objects. glibc's defaults suit short programs, not a
server that allocates and frees a micro-batch's buffers many times a second on several threads:

* up to eight arenas per core, one per thread that allocates (the query loops, librdkafka's
  threads, DuckDB's), each keeping the freed memory of its own batches;
* a mmap threshold that rises to 32 MiB as large blocks are freed, after which a batch's
  buffers come from the heap, whose freed top is only returned past the trim threshold.

:func:`tune_malloc` caps the arenas at two and fixes the mmap threshold at 1 MiB, so a freed
batch buffer goes back to the system at once. Settings already given through glibc's environment
variables (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES``) are kept. On other
C libraries (musl, macOS) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("ksqlpy.memory")

#: glibc's ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

#: Arenas at most: the query loop and the Kafka client threads share them.
ARENA_MAX = 2
#: Blocks from this size up are mapped on their own and unmapped when freed.
MMAP_THRESHOLD = 1 << 20
#: Freed memory at the heap's top kept for reuse before it is returned.
TRIM_THRESHOLD = 8 << 20


def tune_malloc() -> bool:
    """Apply the settings above to this process's glibc malloc; whether they were applied.
    Call it before the engine starts its threads (arenas already created stay)."""
    if os.environ.get("GLIBC_TUNABLES"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (and these parameters)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    settings = (
        ("MALLOC_ARENA_MAX", _M_ARENA_MAX, ARENA_MAX),
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        ("MALLOC_TRIM_THRESHOLD_", _M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    )
    applied = False
    for variable, parameter, value in settings:
        if os.environ.get(variable):
            continue
        if mallopt(parameter, value) == 1:
            applied = True
        else:
            log.debug("mallopt(%d, %d) was refused", parameter, value)
    return applied
