"""Benchmark: the windowed aggregation on Kafka run by a cluster of 1, 2 and 3 servers, and failover.

    CREATE TABLE pageview_counts AS SELECT page, COUNT(*) AS views, SUM(duration) AS total_duration
      FROM pageviews WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY page EMIT CHANGES;

over a 6-partition topic on one Tansu broker. Each cluster size gets its own service id and fresh
``ksqlpy server`` processes (real processes, real HTTP, heartbeats on); N events are loaded
first, then the CTAS is issued and the figure is events/s from the statement's answer until the
query's consumer group has committed the end of every partition of the input and of the
repartition topic the GROUP BY goes through. All servers share one machine,
so more servers show the cluster's overhead, not a speed-up.

Failover (clusters of 2 and 3): once the load is processed, one server holding partitions is
killed with SIGKILL and a further batch of events is produced to every partition; the figure is
the time from the kill until the group has committed the end of every partition again (the
survivors noticed, took the partitions over, restored their state and processed the batch).

    python bench/cluster.py --events 200000
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
from common import PAGEVIEWS_DDL, kafka_client_settings, load_average, pageviews

from ksqlpy.runtime.engine import Engine

TOPIC = "pageviews"
PARTITIONS = 6
PAGES = 200
COUNTS_BY_PAGE = (
    "CREATE TABLE pageview_counts AS SELECT page, COUNT(*) AS views, SUM(duration) AS total_duration "
    "FROM pageviews WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY page EMIT CHANGES;"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One ``ksqlpy server`` process of the cluster."""

    def __init__(self, bootstrap: str, service_id: str, data_dir: Path) -> None:
        self.url = f"http://127.0.0.1:{_free_port()}"
        settings = {
            "bootstrap.servers": bootstrap,
            "ksql.service.id": service_id,
            "ksql.heartbeat.enable": "true",
            "ksql.streams.auto.offset.reset": "earliest",
            **kafka_client_settings(),
        }
        env = {**os.environ, **{"KSQL_" + k.upper().replace(".", "_"): v for k, v in settings.items()}}
        self.log = data_dir.with_suffix(".log")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ksqlpy", "server", "--listeners", self.url, "--data-dir", str(data_dir)],
                stdout=out, stderr=subprocess.STDOUT, env=env,
            )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthcheck", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"server did not start: {self.log.read_text()[-2000:]}")

    def ksql(self, statement: str) -> Any:
        response = httpx.post(f"{self.url}/ksql", json={"ksql": statement}, timeout=120)
        if response.status_code != 200:
            raise SystemExit(f"{statement} failed: {response.text}")
        return response.json()

    def active_partitions(self, query_id: str) -> set[int]:
        status = httpx.get(f"{self.url}/clusterStatus", timeout=10).json()["clusterStatus"]
        host = self.url.removeprefix("http://")
        entry = status.get(host, {}).get("activeStandbyPerQuery", {}).get(query_id, {})
        return {int(p["partition"]) for p in entry.get("activePartitions", []) if p["topic"] == TOPIC}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _committed_all(client: Engine, group: str, timeout: float) -> float:
    """Wait until ``group`` has committed the end of every partition of the input topic and of its
    repartition topic (the GROUP BY re-keys: records are aggregated once read back from there);
    when it had."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topics = [TOPIC] + [
            t.name for t in client.store.list_topics() if t.name.startswith(group) and t.name.endswith("-repartition")
        ]
        # the repartition topic is written in transactions: its last offset is a commit marker,
        # which a consumer's position does not pass
        if len(topics) > 1 and all(
            client.store.committed(group, topic).get(p, 0) >= end - (topic != TOPIC)
            for topic in topics
            for p, end in client.store.end_offsets(topic).items()
            if end > 0
        ):
            return time.perf_counter()
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {group} to commit the end of {TOPIC}")


def run(bootstrap: str, servers: int, events: int, extra: int, timeout: float) -> dict[str, Any]:
    service = f"bench_{uuid.uuid4().hex[:6]}_"
    with tempfile.TemporaryDirectory(prefix="ksqlpy-bench-cluster-") as tmp:
        # a client engine of its own service id loads the topic and reads the group's offsets
        client = Engine.open(
            {
                "bootstrap.servers": bootstrap,
                "ksql.service.id": f"{service}loader_",
                "ksql.streams.state.dir": str(Path(tmp) / "loader"),
                **kafka_client_settings(),
            }
        )
        cluster = [Server(bootstrap, service, Path(tmp) / f"s{i}") for i in range(servers)]
        try:
            for server in cluster:
                server.wait_ready()
            first = cluster[0]
            topic = f"{TOPIC}"
            first.ksql(PAGEVIEWS_DDL.format(topic=topic, partitions=PARTITIONS))
            for start in range(0, events, 50_000):
                client.store.produce(TOPIC, pageviews(start, min(50_000, events - start), pages=PAGES).records)
            started = time.perf_counter()
            (created,) = first.ksql(COUNTS_BY_PAGE)
            query_id = created["commandStatus"]["queryId"]
            group = f"_confluent-ksql-{service}query_{query_id}"
            done = _committed_all(client, group, timeout)
            result: dict[str, Any] = {
                "servers": servers,
                "events": events,
                "seconds": done - started,
                "events_per_s": events / (done - started),
                "failover_s": None,
            }
            if servers > 1:
                victim = next((s for s in cluster[1:] if s.active_partitions(query_id)), cluster[-1])
                victim.process.send_signal(signal.SIGKILL)
                killed = time.perf_counter()
                victim.process.wait(10)
                client.store.produce(TOPIC, pageviews(events, extra, pages=PAGES).records)
                result["failover_s"] = _committed_all(client, group, timeout) - killed
            return result
        finally:
            for server in cluster:
                server.stop()
            client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--failover-events", type=int, default=6_000, help="events produced after the kill")
    ap.add_argument("--servers", default="1,2,3", help="cluster sizes to run")
    ap.add_argument("--timeout", type=float, default=600.0)
    args = ap.parse_args()
    tests = Path(__file__).resolve().parent.parent / "tests"
    sys.path.insert(0, str(tests))
    from kafka_broker import running_broker

    rows = []
    for n in (int(x) for x in args.servers.split(",")):
        with running_broker() as broker:  # a fresh broker per size: no topic or group carries over
            rows.append(run(broker.bootstrap, n, args.events, args.failover_events, args.timeout))
        print(f"{n} server(s) done (load {load_average()})", file=sys.stderr, flush=True)
    print(f"\nwindowed aggregation on Kafka, {PARTITIONS} partitions, one machine (load {load_average()})")
    print(f"{'servers':>7}  {'events':>9}  {'seconds':>8}  {'events/s':>9}  {'kill -9 to processing again':>28}")
    for r in rows:
        failover = f"{r['failover_s']:.1f} s" if r["failover_s"] is not None else "-"
        print(f"{r['servers']:>7}  {r['events']:>9,}  {r['seconds']:>8.1f}  {r['events_per_s']:>9,.0f}  {failover:>28}")


if __name__ == "__main__":
    main()
