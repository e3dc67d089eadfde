"""The server's Arrow allocator: the C library's malloc unless ``ARROW_DEFAULT_MEMORY_POOL``
names one (mimalloc, Arrow's default, keeps freed batches' pages and raised the peak)."""

from __future__ import annotations

import os
import subprocess
import sys

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
