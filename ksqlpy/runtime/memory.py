"""Process memory settings for a long-running engine: the C library's malloc arenas.

Arrow batches come from the C library's malloc (the server uses Arrow's system pool), as do
librdkafka's buffers and Python's larger objects. glibc gives each thread that allocates its own
arena, up to eight per core (the query loops, the Kafka clients' threads, the workers), and each
arena keeps the freed memory of its own batches for reuse. :func:`tune_malloc` caps them at two:
a windowed count over 1 M events on Kafka peaked ~14 MiB lower (426 vs 440 MiB) at the same
throughput within the noise of a shared machine.

A fixed mmap threshold (1 MiB: a freed batch buffer goes back to the system at once) took
another ~20 MiB off that peak but cost a third of its throughput (page faults on every fresh
buffer), so glibc's dynamic threshold stays. Settings already given through glibc's environment
(``MALLOC_ARENA_MAX``, ``GLIBC_TUNABLES``) are kept; other C libraries (musl, macOS) are left
alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("ksqlpy.memory")

#: glibc's ``mallopt`` parameter (malloc.h).
_M_ARENA_MAX = -8

#: Arenas at most: the query loops and the Kafka clients' threads share them.
ARENA_MAX = 2


def tune_malloc() -> bool:
    """Cap this process's glibc malloc at :data:`ARENA_MAX` arenas; whether it was done. Call it
    before the engine starts its threads (arenas already created stay)."""
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
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    if mallopt(_M_ARENA_MAX, ARENA_MAX) != 1:
        log.debug("mallopt(M_ARENA_MAX, %d) was refused", ARENA_MAX)
        return False
    return True
