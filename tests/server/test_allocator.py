"""The server's Arrow allocator: the C library's malloc unless ``ARROW_DEFAULT_MEMORY_POOL``
names one (mimalloc, Arrow's default, keeps freed batches' pages and raised the peak)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

PROBE = (
    "import pyarrow as pa\n"
    "from ksqlpy.server.main import use_system_allocator\n"
    "use_system_allocator()\n"
    "print(pa.default_memory_pool().backend_name)\n"
)


def _backend(env_pool: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if env_pool is not None:
        env["ARROW_DEFAULT_MEMORY_POOL"] = env_pool
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env)
    return out.stdout.strip()


def test_server_uses_the_system_allocator() -> None:
    assert _backend(None) == "system"


NUMPY_PROBE = (
    "from ksqlpy.server.main import use_system_allocator\n"
    "use_system_allocator()\n"
    "import numpy as np, pyarrow as pa\n"
    "mask = np.asarray(pa.array([True, False] * 100_000))\n"
    "print(pa.mimalloc_memory_pool().bytes_allocated(), pa.system_memory_pool().bytes_allocated() >= mask.nbytes)\n"
)


def test_conversions_to_numpy_use_the_system_allocator_too() -> None:
    if "mimalloc" not in pa.supported_memory_backends():
        pytest.skip("this pyarrow has no mimalloc")
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    out = subprocess.run([sys.executable, "-c", NUMPY_PROBE], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["0", "True"]


@pytest.mark.parametrize("pool", ["mimalloc", "jemalloc"])
def test_an_allocator_named_in_the_environment_is_kept(pool: str) -> None:
    if pool not in pa.supported_memory_backends():
        pytest.skip(f"this pyarrow has no {pool}")
    assert _backend(pool) == pool


MALLOC_PROBE = "from ksqlpy.runtime.memory import tune_malloc\nprint(tune_malloc())\n"


def _tuned(extra_env: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    out = subprocess.run(
        [sys.executable, "-c", MALLOC_PROBE],
        capture_output=True,
        text=True,
        check=True,
        env={**env, **extra_env},
    )
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_malloc_is_tuned_unless_glibc_tunables_say_otherwise() -> None:
    assert _tuned({}) == "True"
    assert _tuned({"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}) == "False"


TRIM_PROBE = """
from ksqlpy.runtime.memory import MallocTrimmer, anon_rss
trimmer = MallocTrimmer(interval=0)
trimmer.trim_now(force=True)
blocks = [bytearray(1000) for _ in range(100_000)]  # ~100 MiB from malloc's arenas
grown = anon_rss()
del blocks
held = anon_rss()
print(trimmer.trim_now(), trimmer.trim_now(), grown >> 20, held >> 20, anon_rss() >> 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_the_trimmer_gives_freed_heap_pages_back_once() -> None:
    out = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, check=True)
    first, second, grown, held, after = out.stdout.split()
    assert (first, second) == ("True", "False")  # the second finds nothing grown since the first
    assert int(held) > int(grown) - 16  # freed, but still held by the arenas
    assert int(after) < int(held) - 64  # given back


def test_the_trim_interval_is_a_server_setting() -> None:
    from ksqlpy.server.config import ConfigError, ServerConfig

    assert ServerConfig.load(environ={}).malloc_trim_interval == 0.5
    config = ServerConfig.load(environ={}, overrides={"ksqlpy.memory.trim.interval.ms": "0"})
    assert config.malloc_trim_interval == 0.0
    with pytest.raises(ConfigError, match="ksqlpy.memory.trim.interval.ms: must be a non-negative integer"):
        ServerConfig.load(environ={}, overrides={"ksqlpy.memory.trim.interval.ms": "-5"})


PAGEOUT_PROBE = """
import ctypes, os, sys
from ksqlpy.runtime.memory import release_library_pages
lib = sys.argv[1]
ctypes.CDLL(lib)  # loading it touches its headers, symbol tables and start-up code
def resident():
    total, mine = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
                mine = line.rstrip().endswith(lib)
            elif mine and line.startswith("Rss:"):
                total += int(line.split()[1])
    return total
before = resident()
released = release_library_pages()
print(before, resident(), released)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's madvise(MADV_PAGEOUT)")
def test_library_pages_leave_the_resident_set(tmp_path: Path) -> None:
    import _ctypes

    # A copy of a library, mapped by this process alone: the kernel keeps pages other
    # processes map too, and any Python test run shares the installed ones.
    lib = tmp_path / "libcopy.so"
    shutil.copyfile(_ctypes.__file__, lib)
    with open(lib, "rb+") as f:
        os.fsync(f.fileno())
    out = subprocess.run([sys.executable, "-c", PAGEOUT_PROBE, str(lib)], capture_output=True, text=True, check=True)
    before, after, released = (int(x) for x in out.stdout.split())
    if released == 0:
        pytest.skip("this kernel has no MADV_PAGEOUT")
    assert before > 0
    assert after < before


def test_library_mappings_are_the_read_only_ones_of_shared_objects() -> None:
    from ksqlpy.runtime.memory import _library_mappings

    maps = """\
7f0000000000-7f0000001000 r--p 00000000 08:01 1 /usr/lib/libfoo.so.1
7f0000001000-7f0000003000 r-xp 00001000 08:01 1 /usr/lib/libfoo.so.1
7f0000003000-7f0000004000 rw-p 00003000 08:01 1 /usr/lib/libfoo.so.1
7f0000004000-7f0000005000 r-xp 00000000 08:01 2 /site-packages/_duckdb.cpython-311-x86_64-linux-gnu.so
7f0000005000-7f0000006000 r--p 00000000 08:01 3 /usr/share/locale/locale-archive
7f0000006000-7f0000007000 rw-p 00000000 00:00 0 [heap]
7f0000007000-7f0000008000 r--p 00000000 00:00 0
"""
    assert _library_mappings(maps) == [
        (0x7F0000000000, 0x7F0000001000),
        (0x7F0000001000, 0x7F0000003000),
        (0x7F0000004000, 0x7F0000005000),
    ]
