"""Benchmark: how long ``ksqlpy server`` takes from exec to its first 200 answer on ``GET /info``.

Each run spawns a fresh ``python -m ksqlpy server`` process (imports included, as a user starts
it) on a free loopback port and polls ``/info`` every 5 ms; the figure is the time from spawn
to the first 200, best of N runs, plus the server's CPU seconds up to that moment. Two
settings: the embedded store (a fresh data directory) and Kafka, on a Tansu broker started once
for all its runs (each run with its own service id)::

    python bench/startup.py --runs 5
    python bench/startup.py --runs 5 --store embedded

It also reports the server's resident memory (VmRSS) once /info answers, which is what an idle
server costs.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from contextlib import closing
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.kafka_broker import running_broker

#: Seconds a server may take to answer before the run counts as failed.
STARTUP_TIMEOUT = 60.0


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_run(bootstrap: str | None) -> tuple[float, float, float]:
    """(seconds from spawn to the first 200 on /info, CPU seconds by then, RSS MiB by then)."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="ksqlpy-startup-") as data_dir:
        command = [
            sys.executable,
            "-m",
            "ksqlpy",
            "server",
            "--listeners",
            f"http://127.0.0.1:{port}",
            "--data-dir",
            data_dir,
            "--log-level",
            "WARNING",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KSQL_")}
        if bootstrap is not None:
            command += ["--bootstrap-servers", bootstrap]
            env["KSQL_KSQL_SERVICE_ID"] = f"startup{uuid.uuid4().hex[:8]}"
        start = time.perf_counter()
        server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
        try:
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"the server exited with status {server.returncode}")
                if time.perf_counter() - start > STARTUP_TIMEOUT:
                    raise RuntimeError("the server did not answer /info in time")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/info", timeout=2) as r:
                        if r.status == 200:
                            elapsed = time.perf_counter() - start
                            return elapsed, _cpu_s(server.pid), _rss_mib(server.pid)
                except (TimeoutError, urllib.error.URLError, ConnectionError):
                    pass
                time.sleep(0.005)
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def report(name: str, runs: list[tuple[float, float, float]]) -> None:
    walls = sorted(r[0] for r in runs)
    best = min(runs)
    print(
        f"{name:9s} best {best[0]:.3f} s (CPU {best[1]:.2f} s, RSS {best[2]:.0f} MiB)"
        f"   median {walls[len(walls) // 2]:.3f} s   runs: {' '.join(f'{w:.2f}' for w in walls)}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--store", choices=("embedded", "kafka", "both"), default="both")
    args = parser.parse_args()
    if args.store in ("embedded", "both"):
        report("embedded", [one_run(None) for _ in range(args.runs)])
    if args.store in ("kafka", "both"):
        with running_broker() as broker:
            report("kafka", [one_run(broker.bootstrap) for _ in range(args.runs)])


if __name__ == "__main__":
    main()
