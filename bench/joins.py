"""Benchmark: joins — stream–table enrichment and a stream–stream join within one minute.

``enrich``: a 100 k-row table of users (``users``, keyed by user id) is loaded first, then N
pageview events (keyed by user id, 100 k distinct users, so every event finds its user) are
enriched by::

    CREATE STREAM enriched AS SELECT v.user_id, v.page, u.country, u.tier
      FROM pageviews v JOIN users u ON v.user_id = u.user_id;

``window``: N pageviews joined with N clicks of the same users, each click 0–60 s after its
view::

    CREATE STREAM view_clicks AS SELECT v.user_id, v.page, c.target
      FROM pageviews v JOIN clicks c WITHIN 1 MINUTE ON v.user_id = c.user_id;

``tables``: the same views and clicks read as two tables keyed by user (each user's latest view
and latest click, each click 0–1 ms after its view), joined as they change; their updates
interleave by timestamp record by record::

    CREATE TABLE view_click AS SELECT v.user_id, v.page, c.target
      FROM last_views v JOIN last_clicks c ON v.user_id = c.user_id;

``--join left-grace`` makes the window case ``LEFT JOIN ... WITHIN 1 MINUTE GRACE PERIOD 1 MINUTE``: views
without a click are held until their window and grace pass, then emitted with null click
columns. ``--users`` sets how many distinct users the views and clicks have (fewer: more
records per key within a window).

Both report events/s from the query's first poll until its sink records are committed, CPU per
event, the process's peak RSS and the joined count (enrichment: every one of the N events
finds its user, as the join reads the users, all at timestamp 1 ms, before the events that need
them), on the embedded store or a Tansu broker (``--store kafka``). Several runs each get a
process of their own, so each peak RSS is that run's.

    python bench/joins.py --events 1000000 --case all --store both
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    PAGEVIEWS_DDL,
    FirstPoll,
    as_text,
    bench_engine,
    cpu_seconds,
    kafka_client_settings,
    load_average,
    load_pageviews,
    peak_rss_mib,
    wait_for,
)

USERS = 100_000
BATCH = 100_000

USERS_DDL = (
    "CREATE TABLE users (user_id VARCHAR PRIMARY KEY, country VARCHAR, tier INT) "
    "WITH (kafka_topic='{topic}', value_format='JSON', partitions={partitions});"
)
CLICKS_DDL = (
    "CREATE STREAM clicks (user_id VARCHAR KEY, target VARCHAR) "
    "WITH (kafka_topic='{topic}', value_format='JSON', partitions={partitions});"
)
ENRICH = (
    "CREATE STREAM enriched AS SELECT v.user_id, v.page, u.country, u.tier "
    "FROM pageviews v JOIN users u ON v.user_id = u.user_id;"
)
WINDOWED = (
    "CREATE STREAM view_clicks AS SELECT v.user_id, v.page, c.target "
    "FROM pageviews v {join} clicks c WITHIN 1 MINUTE{grace} ON v.user_id = c.user_id;"
)
TABLES_DDL = (
    "CREATE TABLE last_views (user_id VARCHAR PRIMARY KEY, page VARCHAR, duration INT) "
    "WITH (kafka_topic='{views}', value_format='JSON');"
    "CREATE TABLE last_clicks (user_id VARCHAR PRIMARY KEY, target VARCHAR) "
    "WITH (kafka_topic='{clicks}', value_format='JSON');"
)
TABLES = (
    "CREATE TABLE view_click AS SELECT v.user_id, v.page, c.target "
    "FROM last_views v JOIN last_clicks c ON v.user_id = c.user_id;"
)
JOINS = {"inner": ("JOIN", ""), "left-grace": ("LEFT JOIN", " GRACE PERIOD 1 MINUTE")}


def load_users(engine: object, topic: str, users: int) -> None:
    ids = np.arange(users)
    rng = np.random.default_rng(11)
    countries = np.array(["de", "fr", "us", "jp", "br", "in"])[rng.integers(0, 6, users)]
    value = pc.binary_join_element_wise(
        '{"COUNTRY":"', pa.array(countries), '","TIER":', as_text(rng.integers(1, 4, users)), "}", ""
    )
    key = pc.binary_join_element_wise("user_", as_text(ids), "")
    records = pa.table(
        {
            # before every event; 1, not 0: librdkafka stamps a record of timestamp 0 with the time
            # it is produced, which would put the users after the events on the Kafka store
            "timestamp": pa.array(np.ones(users, dtype=np.int64)),
            "key": key.cast(pa.binary()),
            "value": value.cast(pa.binary()),
        }
    )
    engine.store.produce(topic, records)  # type: ignore[attr-defined]


def load_clicks(engine: object, topic: str, events: int, users: int, lag_ms: int = 60_000) -> None:
    """One click per pageview, by the same user (same seed as the views), up to ``lag_ms`` later."""
    from common import pageviews

    for start in range(0, events, BATCH):
        views = pageviews(start, min(BATCH, events - start), users=users)
        n = views.records.num_rows
        rng = np.random.default_rng(start + 99)
        ts = pc.add(views.records.column("timestamp"), pa.array(rng.integers(0, lag_ms, n)))
        value = pc.binary_join_element_wise('{"TARGET":"/t/', as_text(rng.integers(0, 50, n)), '"}', "")
        engine.store.produce(  # type: ignore[attr-defined]
            topic, pa.table({"timestamp": ts, "key": views.records.column("key"), "value": value.cast(pa.binary())})
        )


def run(
    case: str, store: str, events: int, partitions: int, timeout: float, join: str = "inner", users: int = USERS
) -> dict[str, float]:
    extra = kafka_client_settings() if store == "kafka" else {}
    with bench_engine(store, extra) as engine:
        session = engine.session({"auto.offset.reset": "earliest"})
        suffix = int(time.time())
        views = f"pageviews_{suffix}"
        session.execute_all(PAGEVIEWS_DDL.format(topic=views, partitions=partitions))
        t0 = time.perf_counter()
        if case == "enrich":
            users_topic = f"users_{suffix}"
            session.execute_all(USERS_DDL.format(topic=users_topic, partitions=partitions))
            load_users(engine, users_topic, users)
            load_pageviews(engine, views, events, users=users)
            statement, inputs = ENRICH, events + users
        else:
            clicks = f"clicks_{suffix}"
            session.execute_all(CLICKS_DDL.format(topic=clicks, partitions=partitions))
            load_pageviews(engine, views, events, users=users)
            # the tables' clicks 0-1 ms after their views: the two inputs interleave record by record
            load_clicks(engine, clicks, events, users, 2 if case == "tables" else 60_000)
            if case == "tables":
                session.execute_all(TABLES_DDL.format(views=views, clicks=clicks))
                statement, inputs = TABLES, 2 * events
            else:
                kind, grace = JOINS[join]
                statement, inputs = WINDOWED.format(join=kind, grace=grace), 2 * events
        label = f"{case} {join}, {users:,} users" if case == "window" else case
        print(f"[{store} {label}] loaded {inputs:,} records in {time.perf_counter() - t0:.2f}s")
        first = FirstPoll(engine.store)
        cpu0 = cpu_seconds()
        session.execute_all(statement)
        query = next(iter(engine.queries.values()))
        done = wait_for(lambda: query.records_in >= inputs and engine.wait_idle(0.5) or query.error is not None, timeout)
        if query.error is not None:
            raise SystemExit(f"the query failed: {query.error}")
        cpu = cpu_seconds() - cpu0
        assert first.at is not None
        elapsed = done - first.at
        expected = events if case == "enrich" else None
        figures = {
            "events": query.records_in,
            "sink_records": query.records_out,
            "joined": query.records_out,
            "seconds": elapsed,
            "events_per_s": query.records_in / elapsed,
            "cpu_us_per_event": cpu / max(1, query.records_in) * 1e6,
            "peak_rss_mib": peak_rss_mib(),
        }
        print(
            f"[{store} {label}] events={query.records_in:,} joined={query.records_out:,}"
            + (f" of {expected:,}" if expected is not None else "")
            + " "
            f"time={elapsed:.2f}s throughput={figures['events_per_s']:,.0f} events/s "
            f"cpu={figures['cpu_us_per_event']:.2f} us/event peak_rss={figures['peak_rss_mib']:,.0f} MiB "
            f"load={load_average()}"
        )
        return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--case", choices=("enrich", "window", "tables", "all"), default="all")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--store", choices=("embedded", "kafka", "both"), default="embedded")
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--join", choices=tuple(JOINS), default="inner", help="the window case's join")
    ap.add_argument("--users", type=int, default=USERS, help="distinct users (keys) of the events")
    args = ap.parse_args()
    stores = ("embedded", "kafka") if args.store == "both" else (args.store,)
    cases = ("enrich", "window", "tables") if args.case == "all" else (args.case,)
    runs = [(store, case) for store in stores for case in cases]
    if len(runs) == 1:
        run(runs[0][1], runs[0][0], args.events, args.partitions, args.timeout, args.join, args.users)
        return
    for store, case in runs:
        command = [sys.executable, __file__, "--store", store, "--case", case, "--events", str(args.events)]
        command += ["--partitions", str(args.partitions), "--timeout", str(args.timeout)]
        command += ["--join", args.join, "--users", str(args.users)]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
