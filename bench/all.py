"""Run every benchmark, one after the other, each in a process of its own; their tables print as
they come. ``--quick`` runs each at a size that finishes in a minute or two (a smoke run, not
figures to quote); ``--only`` picks some by name. ``peers`` runs the side-by-side harness of
``../shared/bench-peers`` (ksqlpy's cases, Bytewax and the hardware limits) and prints the ratios
the project tracks; it says so and runs nothing when that folder is absent.

    python bench/all.py
    python bench/all.py --quick --only pull_security,stateless_csas
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> (full-size arguments, quick arguments)
BENCHMARKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "stateless_csas": (("--store", "both", "--query", "all"), ("--events", "100000", "--query", "all")),
    "windowed_agg": (("--window", "all"), ("--events", "100000", "--keys", "100000", "--window", "all")),
    "json_shapes": ((), ("--events", "20000")),
    "joins": (("--store", "both"), ("--events", "100000")),
    "pull_security": ((), ("--seconds", "2", "--users", "200")),
    "cluster": ((), ("--events", "20000", "--servers", "1,2")),
    "peers": (("--n", "1000000", "--runs", "3"), ("--n", "100000", "--runs", "1")),
    "startup": (
        ("--runs", "5", "--first-record", "--session-timeout-ms", "6000"),
        ("--runs", "1", "--first-record", "--session-timeout-ms", "6000"),
    ),
    "ingest_push": (
        (),
        (
            "--rows",
            "20000",
            "--push-rows",
            "5000",
            "--fanout-rows",
            "500",
            "--seconds",
            "2",
            "--users",
            "200",
        ),
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmark names")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    failed = []
    for name in names:
        full, quick = BENCHMARKS[name]
        command = [sys.executable, str(HERE / f"{name}.py"), *(quick if args.quick else full)]
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        t0 = time.perf_counter()
        if subprocess.run(command, check=False).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.perf_counter() - t0:.0f}s\n", flush=True)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
