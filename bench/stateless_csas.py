"""Benchmark (issue #2): a stateless CSAS, a filter and a projection over pageview events.

Loads N JSON pageview events (~120 bytes, key = user id) into a topic, then runs::

    CREATE STREAM long_views AS SELECT user_id, page, duration * 1000 AS duration_ms, viewtime
      FROM pageviews WHERE duration > 60;

and reports events/s from the query's first poll to the moment its last sink record is
committed, plus this process's peak RSS. ``--query functions`` runs a projection of scalar
functions instead (TIMESTAMPTOSTRING in UTC and at an offset, MASK, EXTRACTJSONFIELD, a MAP),
``--query all`` both. ``--store kafka`` runs it on a Tansu broker started for
the run (see tests/kafka_broker.py); ``--store both`` runs both, one after the other.

    python bench/stateless_csas.py --events 1000000 --store both
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PAGEVIEWS_DDL,
    FirstPoll,
    bench_engine,
    cpu_seconds,
    kafka_client_settings,
    load_average,
    load_pageviews,
    peak_rss_mib,
    wait_for,
)

#: --query: the CSAS run, and whether it keeps only the views longer than 60 (else every event)
QUERIES: dict[str, tuple[str, bool]] = {
    "filter": (
        "CREATE STREAM long_views AS SELECT user_id, page, duration * 1000 AS duration_ms, viewtime "
        "FROM pageviews WHERE duration > 60;",
        True,
    ),
    # scalar functions people put in projections: formatting a time, masking, JSON, a MAP value
    "functions": (
        "CREATE STREAM views_out AS SELECT user_id, "
        "TIMESTAMPTOSTRING(viewtime, 'yyyy-MM-dd HH:mm:ss.SSS') AS at_utc, "
        "TIMESTAMPTOSTRING(viewtime, 'dd MMM yyyy HH:mm', '+02:00') AS at_local, "
        "MASK(page) AS masked_page, EXTRACTJSONFIELD(referrer, '$.q') AS q, "
        "MAP('page' := page, 'referrer' := referrer) AS tags FROM pageviews;",
        False,
    ),
}


def run(store: str, events: int, partitions: int, timeout: float, query_name: str = "filter") -> dict[str, float]:
    csas, filtered = QUERIES[query_name]
    extra = kafka_client_settings() if store == "kafka" else {}
    with bench_engine(store, extra) as engine:
        topic = f"pageviews_{int(time.time())}"
        session = engine.session()
        session.execute_all(PAGEVIEWS_DDL.format(topic=topic, partitions=partitions))
        load_s, expected = load_pageviews(engine, topic, events)
        expected = expected if filtered else events
        print(
            f"[{store}] loaded {events:,} events in {load_s:.2f}s ({events / load_s:,.0f} events/s produce)"
        )
        first = FirstPoll(engine.store)
        cpu0 = cpu_seconds()
        session.execute_all(csas)
        query = next(iter(engine.queries.values()))
        done = wait_for(lambda: query.records_out >= expected or query.error is not None, timeout)
        if query.error is not None:
            raise SystemExit(f"the query failed: {query.error}")
        cpu = cpu_seconds() - cpu0
        assert first.at is not None
        elapsed = done - first.at
        figures = {
            "events": query.records_in,
            "sink_records": query.records_out,
            "seconds": elapsed,
            "events_per_s": query.records_in / elapsed,
            "cpu_us_per_event": cpu / query.records_in * 1e6,
            "peak_rss_mib": peak_rss_mib(),
        }
        print(
            f"[{store}] query={query_name} events={query.records_in:,} sink_records={query.records_out:,} "
            f"time={elapsed:.2f}s throughput={figures['events_per_s']:,.0f} events/s "
            f"cpu={figures['cpu_us_per_event']:.2f} us/event "
            f"peak_rss={figures['peak_rss_mib']:,.0f} MiB load={load_average()}"
        )
        return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--store", choices=("embedded", "kafka", "both"), default="embedded")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--query", choices=(*QUERIES, "all"), default="filter")
    args = ap.parse_args()
    stores = ("embedded", "kafka") if args.store == "both" else (args.store,)
    names = tuple(QUERIES) if args.query == "all" else (args.query,)
    for store in stores:
        for name in names:
            run(store, args.events, args.partitions, args.timeout, name)


if __name__ == "__main__":
    main()
