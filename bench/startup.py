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

With ``--first-record`` each run then times a new persistent query's first output, as a user
sees it: a stream holding one record gets a ``CREATE STREAM ... AS SELECT`` reading from the
earliest offset, and the figure is the time from sending the statement to the output record
being readable downstream (a ``read_committed`` consumer on Kafka, a pull query over the sink
stream on the embedded store). A second figure is one more record's trip, ``INSERT INTO`` to
readable output, through the query now running. Two more are how long the server's first
``CREATE STREAM`` and the ``CREATE STREAM ... AS SELECT`` took to be answered. On Kafka the
first output waits for the query's consumer group join; the test broker holds a join for about
half the consumer session timeout (``--session-timeout-ms``, passed to the server as
``kafka.session.timeout.ms``).
"""

from __future__ import annotations

import argparse
import json
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


def _ksql(port: int, sql: str, properties: dict[str, str] | None = None) -> object:
    body = json.dumps({"ksql": sql, "streamsProperties": properties or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/ksql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def _pull_rows(port: int, sql: str) -> int:
    body = json.dumps({"ksql": sql, "streamsProperties": {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/query", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        return sum(1 for row in json.loads(r.read()) if "row" in row)


class _Output:
    """Counts the records readable on the sink topic, the way a downstream reader sees them."""

    def __init__(self, port: int, bootstrap: str | None, topic: str) -> None:
        self.port, self.topic = port, topic
        self.consumer = None
        self.seen = 0
        if bootstrap is not None:
            from confluent_kafka import Consumer, TopicPartition

            self.consumer = Consumer(
                {
                    "bootstrap.servers": bootstrap,
                    "group.id": f"startup-reader-{uuid.uuid4().hex[:8]}",
                    "isolation.level": "read_committed",
                    "enable.auto.commit": False,
                    "fetch.wait.max.ms": 5,
                }
            )
            self.partition = TopicPartition(topic, 0, 0)
            self.assigned = False

    def count(self) -> int:
        if self.consumer is None:
            try:
                return _pull_rows(self.port, f"SELECT * FROM {self.topic};")
            except urllib.error.HTTPError:
                return 0  # the sink does not exist yet
        if not self.assigned:
            self.consumer.assign([self.partition])
            self.assigned = True
        for message in self.consumer.consume(100, timeout=0.005):
            if message.error() is None:
                self.seen += 1
        return self.seen

    def wait_for(self, n: int, start: float) -> float:
        while self.count() < n:
            if time.perf_counter() - start > STARTUP_TIMEOUT:
                raise RuntimeError(f"no output record {n} in {STARTUP_TIMEOUT:.0f} s")
            time.sleep(0.005)
        return time.perf_counter() - start

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()


def first_record(port: int, bootstrap: str | None) -> tuple[float, float, float, float]:
    """(statement sent → first output readable, INSERT sent → next output readable, the server's
    first CREATE STREAM answered, the CREATE STREAM AS SELECT answered), seconds."""
    topic = f"fr_src_{uuid.uuid4().hex[:8]}"  # a new topic, as a new stream's usually is
    start = time.perf_counter()
    _ksql(port, f"CREATE STREAM fr_src (k STRING KEY, v INT) WITH (kafka_topic='{topic}', value_format='JSON', partitions=1);")
    created = time.perf_counter() - start
    _ksql(port, "INSERT INTO fr_src (k, v) VALUES ('a', 1);")
    sink = f"FR_OUT_{uuid.uuid4().hex[:8].upper()}"  # a topic no earlier run on this broker wrote
    output = _Output(port, bootstrap, sink)
    try:
        start = time.perf_counter()
        _ksql(port, f"CREATE STREAM {sink} AS SELECT k, v * 2 AS v2 FROM fr_src;", {"auto.offset.reset": "earliest"})
        answered = time.perf_counter() - start
        first = output.wait_for(1, start)
        start = time.perf_counter()
        _ksql(port, "INSERT INTO fr_src (k, v) VALUES ('b', 2);")
        return first, output.wait_for(2, start), created, answered
    finally:
        output.close()


def one_run(
    bootstrap: str | None, with_first_record: bool = False, session_timeout_ms: int | None = None
) -> tuple[float, ...]:
    """(seconds from spawn to the first 200 on /info, CPU seconds by then, RSS MiB by then),
    then, ``with_first_record``, :func:`first_record`'s two figures."""
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
            if session_timeout_ms is not None:
                env["KSQL_KAFKA_SESSION_TIMEOUT_MS"] = str(session_timeout_ms)
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
                            up = (elapsed, _cpu_s(server.pid), _rss_mib(server.pid))
                            return up + first_record(port, bootstrap) if with_first_record else up
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


def report(name: str, runs: list[tuple[float, ...]]) -> None:
    walls = sorted(r[0] for r in runs)
    best = min(runs)
    print(
        f"{name:9s} best {best[0]:.3f} s (CPU {best[1]:.2f} s, RSS {best[2]:.0f} MiB)"
        f"   median {walls[len(walls) // 2]:.3f} s   runs: {' '.join(f'{w:.2f}' for w in walls)}",
        flush=True,
    )
    if len(runs[0]) > 3:
        for index, what in (
            (5, "first CREATE STREAM answered"),
            (6, "CREATE STREAM AS SELECT answered"),
            (3, "new query → first output"),
            (4, "insert → output, query running"),
        ):
            times = [r[index] for r in runs]
            ordered = sorted(times)
            print(
                f"{'':9s} {what}: worst {ordered[-1]:.3f} s   median {ordered[len(times) // 2]:.3f} s"
                f"   runs in order: {' '.join(f'{t:.2f}' for t in times)}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--store", choices=("embedded", "kafka", "both"), default="both")
    parser.add_argument(
        "--first-record", action="store_true", help="also time a new persistent query's first output record"
    )
    parser.add_argument(
        "--session-timeout-ms", type=int, default=None, help="the server's consumer session timeout (Kafka)"
    )
    args = parser.parse_args()
    if args.store in ("embedded", "both"):
        report("embedded", [one_run(None, args.first_record) for _ in range(args.runs)])
    if args.store in ("kafka", "both"):
        with running_broker() as broker:
            report(
                "kafka",
                [one_run(broker.bootstrap, args.first_record, args.session_timeout_ms) for _ in range(args.runs)],
            )


if __name__ == "__main__":
    main()
