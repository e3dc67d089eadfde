"""Process memory settings for a long-running engine: the C library's malloc arenas, and a thread
that gives their free pages back to the system.

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

Freed memory stays in the arenas: glibc only gives back the free space at the top of its main
heap, and its dynamic mmap threshold soon serves batch-sized buffers from the arenas too. A
server that has run a burst of batches holds their high-water mark for good; :class:`MallocTrimmer`
calls ``malloc_trim(0)`` (which also releases free pages in the middle of every arena) whenever the
arenas hold more than a few MiB free, so RSS follows what is in use.

DuckDB allocates its own memory (vectors, hash tables, buffer pages) through the jemalloc it bundles
(two arenas, dirty pages purged after a second), which neither setting here reaches. At the peak of
a windowed count over 1 M events on Kafka it held ~25-35 MiB live and ~20-30 MiB of dirty pages.
DuckDB's ``allocator_flush_threshold``, ``allocator_bulk_deallocation_flush_threshold``,
``allocator_background_threads``, ``threads=1`` and a lower state ``memory_limit`` left that peak
where it was; only purging at once (a 0 ms decay) lowered it, by ~15 MiB, at ~30 % more CPU, as
trimming glibc's arenas every 0.1 s did (~25 MiB for ~25 % more CPU): what is resident at the peak
is mostly what the batches in flight use.

Start-up also touches code it runs only once: importing the libraries, DuckDB registering its
thousands of built-in functions in each database it opens, Arrow registering its compute
kernels. Those pages of the shared libraries stay resident (~85 MiB of a Kafka server's ~190 MiB
at idle) though a query runs a small part of that code. :func:`release_library_pages` has the
kernel reclaim the resident pages of every library's read-only mappings once the server has
started; what a query then runs comes back on first use. An idle server on Kafka holds ~125
instead of ~190 MiB. Over 1 M events on Kafka (the peers harness, two rounds back to back) a
filter query peaked at 235-236 vs 273-293 MiB, a windowed count at 327-334 vs 369-380 MiB and
the same without its cache at 360 vs 412-424 MiB, at the same events/s and CPU time within the
noise of a shared machine.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import threading
from typing import Any

log = logging.getLogger("ksqlpy.memory")

#: glibc's ``mallopt`` parameter (malloc.h).
_M_ARENA_MAX = -8
#: ``madvise`` advice: reclaim these pages now (Linux 5.4+, any C library).
_MADV_PAGEOUT = 21

#: Arenas at most: the query loops and the Kafka clients' threads share them.
ARENA_MAX = 2


#: Free bytes the arenas may hold before :class:`MallocTrimmer` trims them.
TRIM_MIN_FREE = 8 << 20


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (2.33+): totals over every arena, in bytes."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _open_glibc(name: str | None) -> ctypes.CDLL | None:
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (and these functions)
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc, else None. By its usual name first: ``find_library`` runs
    ``ldconfig`` in a subprocess (tens of milliseconds of start-up)."""
    return _open_glibc("libc.so.6") or _open_glibc(ctypes.util.find_library("c"))


def anon_rss() -> int:
    """Bytes of this process's resident memory that no file backs (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
    except OSError:
        return 0
    return (int(fields[1]) - int(fields[2])) * _PAGE


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class MallocTrimmer:
    """A daemon thread that, every ``interval`` seconds, gives the arenas' free pages back to the
    system (``malloc_trim(0)``) when the process's anonymous memory grew by ``min_free`` bytes
    since the last trim and the arenas hold at least that much free: after a burst of batches,
    not on every tick of a server whose memory is in use. A trim takes a few milliseconds for
    the free chunks a busy server has, and holds each arena's lock only while it walks it."""

    def __init__(self, interval: float, min_free: int = TRIM_MIN_FREE) -> None:
        self.interval = interval
        self.min_free = min_free
        self.trims = 0
        self._after_last = 0  # anonymous bytes resident just after the last trim
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mallinfo2: Any = None
        self._trim: Any = None
        libc = _glibc()
        if libc is not None:
            try:
                mallinfo2, trim = libc.mallinfo2, libc.malloc_trim
            except AttributeError:  # glibc older than 2.33
                return
            mallinfo2.restype = _MallInfo2
            mallinfo2.argtypes = ()
            trim.argtypes = (ctypes.c_size_t,)
            trim.restype = ctypes.c_int
            self._mallinfo2, self._trim = mallinfo2, trim

    @property
    def supported(self) -> bool:
        return self._trim is not None

    def free_bytes(self) -> int:
        """Free bytes the arenas hold, released to the system or not (0 where unknown)."""
        if self._mallinfo2 is None:
            return 0
        info = self._mallinfo2()
        return int(info.fordblks) + int(info.fsmblks)

    def trim_now(self, *, force: bool = False) -> bool:
        """Trim if memory grew since the last trim and the arenas hold ``min_free`` free (or
        always, with ``force``); whether it did."""
        if self._trim is None:
            return False
        if not force:
            grown = anon_rss() - self._after_last
            if grown < self.min_free or self.free_bytes() < self.min_free:
                return False
        self._trim(0)
        self.trims += 1
        self._after_last = anon_rss()
        return True

    def start(self) -> bool:
        """Start the thread (not on other C libraries, nor with a non-positive interval); whether
        it runs."""
        if self._trim is None or self.interval <= 0 or self._thread is not None:
            return False
        self._after_last = anon_rss()
        self._thread = threading.Thread(target=self._run, name="ksqlpy-malloc-trim", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.trim_now()


def tune_malloc() -> bool:
    """Cap this process's glibc malloc at :data:`ARENA_MAX` arenas; whether it was done. Call it
    before the engine starts its threads (arenas already created stay)."""
    if os.environ.get("GLIBC_TUNABLES"):
        return False
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    if mallopt(_M_ARENA_MAX, ARENA_MAX) != 1:
        log.debug("mallopt(M_ARENA_MAX, %d) was refused", ARENA_MAX)
        return False
    return True


def _library_mappings(maps: str) -> list[tuple[int, int]]:
    """The (start, end) of each read-only mapping of a shared library in ``/proc/self/maps``
    text: code and constants, which the kernel can read back from the file at any time."""
    found = []
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "w" in fields[1] or not fields[5].startswith("/"):
            continue
        name = fields[5].rsplit("/", 1)[-1]
        if not (name.endswith(".so") or ".so." in name):
            continue
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        found.append((start, end))
    return found


def release_library_pages() -> int:
    """Have the kernel reclaim the resident pages of the shared libraries' read-only mappings;
    the bytes of mappings it took the advice for (0 where /proc or ``MADV_PAGEOUT`` is missing).

    Only this process's pages go: the kernel leaves pages that other processes map too. A page
    used again is read back from the page cache, or from the file."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            mappings = _library_mappings(f.read())
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    released = 0
    for start, end in mappings:
        if madvise(start, end - start, _MADV_PAGEOUT) == 0:
            released += end - start
        elif ctypes.get_errno() == 22:  # EINVAL: a kernel without MADV_PAGEOUT
            break
    return released
