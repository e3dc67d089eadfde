"""The side-by-side benchmark against ksqlpy's peers, run from here, and the ratios the project tracks.

The harness lives next to the repository, in ``../shared/bench-peers/`` (its README says how it
works: a fresh Kafka-protocol broker per run, the same two queries on every system, every output
checked against DuckDB's answer). This runs its ``run_all.sh`` with ksqlpy's cases and their
variants, the peers they are compared with and the hardware limits, then prints each case's
median events/s and the ratios:

- ksqlpy / Bytewax on Q1, Q2 and Q2 without the result cache (``ksqlpy.q2-nocache``);
- ksqlpy on the embedded store / ``limit.duckdb-file`` (consume a file into DuckDB, no output)
  on Q1 and Q2.

Virtual environments and scratch files stay outside the repository (``--home``, default
``~/.cache/ksqlpy/bench-peers``; ``PEERS_VENV``, ``KSQLPY_VENV``, ``PEERS_WORK`` override them).
When ``../shared/bench-peers`` is not there (nor ``shared/bench-peers`` beside a parent folder,
nor ``$KSQLPY_BENCH_PEERS``), it says so and runs nothing.

    python bench/peers.py                                    # 1M events, 3 runs a case (~25 min)
    python bench/peers.py --n 100000 --runs 1 --cases ksqlpy.q1,bytewax.q1
    python bench/peers.py --n 10000000 --runs 1 --cases ksqlpy.q2 --rss-interval 0.2

``--rss-interval`` samples the resident memory (VmRSS) of every ``ksqlpy server`` the harness
starts, at that interval, into ``$PEERS_WORK/rss.csv`` (run, seconds since the server's first
sample, MiB) and prints each run's curve: its RSS at each tenth of the server's life and its
peak. Whether memory stays flat over a long run shows there (the harness itself reports only
the peak).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def find_peers() -> Path:
    """``$KSQLPY_BENCH_PEERS``, else ``shared/bench-peers`` beside the repository (``../shared``)
    or beside one of its parent folders (a git worktree kept in a subfolder)."""
    if os.environ.get("KSQLPY_BENCH_PEERS"):
        return Path(os.environ["KSQLPY_BENCH_PEERS"])
    for folder in ROOT.parents:
        if (folder / "shared" / "bench-peers" / "run_all.sh").is_file():
            return folder / "shared" / "bench-peers"
    return ROOT.parent / "shared" / "bench-peers"


PEERS = find_peers()

KSQLPY_CASES = ("ksqlpy.q1", "ksqlpy.q2", "ksqlpy.q2-nocache", "ksqlpy-embedded.q1", "ksqlpy-embedded.q2")
PEER_CASES = ("bytewax.q1", "bytewax.q2", "limit.duckdb-file.q1", "limit.duckdb-file.q2")

#: ratio name -> (numerator case, denominator case)
RATIOS = {
    "ksqlpy / Bytewax Q1": ("ksqlpy.q1", "bytewax.q1"),
    "ksqlpy / Bytewax Q2": ("ksqlpy.q2", "bytewax.q2"),
    "ksqlpy / Bytewax Q2-nocache": ("ksqlpy.q2-nocache", "bytewax.q2"),
    "embedded / limit.duckdb-file Q1": ("ksqlpy-embedded.q1", "limit.duckdb-file.q1"),
    "embedded / limit.duckdb-file Q2": ("ksqlpy-embedded.q2", "limit.duckdb-file.q2"),
}


def medians(results: list[dict[str, object]], n: int) -> dict[str, float]:
    """Median events/s of each case's runs that processed all ``n`` events."""
    runs: dict[str, list[float]] = {}
    for r in results:
        rate = r.get("events_per_s")
        processed = r.get("processed", 0)
        if (
            r.get("n") == n
            and isinstance(rate, int | float)
            and isinstance(processed, int)
            and processed >= n
        ):
            verify = r.get("verify")
            if isinstance(verify, dict) and not verify.get("ok"):
                continue  # a wrong answer does not count, however fast
            runs.setdefault(str(r["case"]), []).append(float(rate))
    return {case: statistics.median(rates) for case, rates in runs.items()}


def print_report(cases: list[str], rates: dict[str, float]) -> None:
    print(f"{'case':<24}  {'events/s (median)':>17}")
    for case in cases:
        rate = rates.get(case)
        print(f"{case:<24}  {(f'{rate:,.0f}' if rate is not None else 'failed / not run'):>17}")
    print()
    print(f"{'ratio':<34}  {'value':>6}")
    for name, (top, bottom) in RATIOS.items():
        if top in rates and bottom in rates:
            print(f"{name:<34}  {rates[top] / rates[bottom]:>5.2f}x")
        else:
            print(f"{name:<34}  {'-':>6}  (needs {top} and {bottom})")


class RssSampler(threading.Thread):
    """Samples VmRSS of the ``ksqlpy server`` processes whose command line names ``work`` (the
    harness passes each its properties file under ``<work>/runs/<case>-n<N>-r<run>/``)."""

    def __init__(self, work: Path, interval: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.mark = str(work)
        self.interval = interval
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self._servers: dict[int, tuple[str, float]] = {}  # pid -> (run, time of its first sample)
        self._done = threading.Event()

    def _label(self, pid: int) -> str | None:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        words = [a.decode("utf-8", "replace") for a in args]
        if "ksqlpy" not in words or "server" not in words:
            return None
        for word in words:
            if word.startswith(self.mark) and "/runs/" in word:
                return word.split("/runs/", 1)[1].split("/", 1)[0]
        return None

    def _sample(self) -> None:
        now = time.monotonic()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid not in self._servers:
                label = self._label(pid)
                if label is None:
                    continue
                self._servers[pid] = (f"{label} (pid {pid})", now)
            run, first = self._servers[pid]
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    self.samples.setdefault(run, []).append((now - first, int(line.split()[1]) / 1024))

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self._sample()

    def stop(self) -> None:
        self._done.set()
        self.join()

    def write(self, path: Path) -> None:
        with path.open("w") as f:
            f.write("run,seconds,rss_mib\n")
            for run, points in self.samples.items():
                f.writelines(f"{run},{t:.2f},{mib:.1f}\n" for t, mib in points)

    def report(self) -> None:
        """Each run's RSS at every tenth of its server's sampled life, and its peak."""
        print(
            f"{'RSS MiB of the server':<40}  " + " ".join(f"{p:>4}%" for p in range(10, 101, 10)) + "   peak"
        )
        for run, points in self.samples.items():
            if not points:
                continue
            end = points[-1][0]
            tenths = []
            for p in range(10, 101, 10):
                at = [mib for t, mib in points if t <= end * p / 100]
                tenths.append(f"{at[-1] if at else points[0][1]:>5.0f}")
            peak = max(mib for _, mib in points)
            print(f"{run:<40}  {' '.join(tenths)}  {peak:>5.0f}  ({end:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="events per run")
    ap.add_argument("--runs", type=int, default=3, help="runs per case (the median counts)")
    ap.add_argument(
        "--cases", default=",".join(KSQLPY_CASES + PEER_CASES), help="comma-separated harness cases"
    )
    ap.add_argument("--home", default=str(Path.home() / ".cache" / "ksqlpy" / "bench-peers"))
    ap.add_argument(
        "--rss-interval",
        type=float,
        default=0.0,
        help="seconds between VmRSS samples of the ksqlpy servers (default 0: none); into $PEERS_WORK/rss.csv",
    )
    args = ap.parse_args()
    if not (PEERS / "run_all.sh").is_file():
        print(f"{PEERS} is absent (it sits next to the repository in the project's shared folder):")
        print("the side-by-side cases and their ratios were not run.")
        return
    home = Path(args.home)
    home.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("PEERS_WORK", home / "work"))
    work.mkdir(parents=True, exist_ok=True)
    results = work / "results.jsonl"
    seen = results.read_text().count("\n") if results.exists() else 0
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    env = {
        **os.environ,
        "PEERS_VENV": os.environ.get("PEERS_VENV", str(home / "peers-venv")),
        "KSQLPY_VENV": os.environ.get("KSQLPY_VENV", str(home / "ksqlpy-venv")),
        "KSQLPY_SRC": str(ROOT),
        "PEERS_WORK": str(work.resolve()),
        "PEERS_N": str(args.n),
        "PEERS_RUNS": str(args.runs),
        "PEERS_CASES": ",".join(cases),
    }
    env.pop("PYTHONPATH", None)  # the harness's interpreters import from their own environments
    print(
        f"running {PEERS / 'run_all.sh'}: {len(cases)} cases x {args.runs} runs of {args.n:,} events",
        flush=True,
    )
    sampler = RssSampler(work.resolve(), args.rss_interval) if args.rss_interval > 0 else None
    if sampler is not None:
        sampler.start()
    done = subprocess.run(["bash", str(PEERS / "run_all.sh")], cwd=ROOT, env=env, check=False)
    lines = results.read_text().splitlines()[seen:] if results.exists() else []
    print()
    print_report(cases, medians([json.loads(line) for line in lines if line.strip()], args.n))
    if sampler is not None:
        sampler.stop()
        sampler.write(work / "rss.csv")
        print()
        sampler.report()
        print(f"samples: {work / 'rss.csv'}")
    if done.returncode != 0:
        sys.exit(f"run_all.sh exited with {done.returncode}")


if __name__ == "__main__":
    main()
