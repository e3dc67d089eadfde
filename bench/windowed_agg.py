"""Benchmark (issue #4): a 10-second tumbling-window COUNT and SUM per page, and pull queries.

    CREATE TABLE pageview_counts AS SELECT page, COUNT(*) AS views, SUM(duration) AS total_duration
      FROM pageviews WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY page EMIT CHANGES;

Phases (each runs in a fresh child process, so peak RSS is the phase's own):

* ``throughput``: N pageview events (1 ms apart: 10,000 events per window, 200 pages), events/s
  from the query's first poll to its last sink record, once with the record cache at its default
  (``ksql.streams.cache.max.bytes.buffering`` unset) and once with it off (``=0``, one output
  record per input record as in ksqlDB's tests).
  ``--window hopping`` (60 s every 10 s), ``session`` (30 s gap) or ``distinct`` (tumbling,
  with ``COUNT_DISTINCT(user_id)``, an aggregate without a vector form) runs the same table
  over another window or aggregate.
* ``keys``: the same aggregation grouped by user over 1 M distinct users in one window: 1 M
  keys of state. Reports the state's row count and size in the state database and the RSS.
* ``pull``: after the throughput run, starts the REST server on the same engine and runs a
  client process (httpx, ``/query-stream``) issuing key-lookup pull queries
  (``SELECT * FROM pageview_counts WHERE page = '/page/N';``) from several concurrent tasks:
  p50/p99 latency and queries/s.

    python bench/windowed_agg.py --events 1000000
    python bench/windowed_agg.py --phase throughput --cache off      # one phase only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from common import (
    BASE_TIME,
    PAGEVIEWS_DDL,
    REFERRER,
    FirstPoll,
    as_text,
    bench_engine,
    kafka_client_settings,
    load_average,
    load_pageviews,
    peak_rss_mib,
)

CACHE = "ksql.streams.cache.max.bytes.buffering"
#: Seconds a pull query may take before it counts as failed.
REQUEST_TIMEOUT = 10.0
PAGES = 200

COUNTS_BY_PAGE = (
    "CREATE TABLE pageview_counts AS SELECT page, COUNT(*) AS views, SUM(duration) AS total_duration "
    "FROM pageviews WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY page EMIT CHANGES;"
)
#: --window: the throughput phase's query, the same table over other windows and aggregates
VARIANTS = {
    "tumbling": COUNTS_BY_PAGE,
    "hopping": COUNTS_BY_PAGE.replace("TUMBLING (SIZE 10 SECONDS)", "HOPPING (SIZE 60 SECONDS, ADVANCE BY 10 SECONDS)"),
    "session": COUNTS_BY_PAGE.replace("TUMBLING (SIZE 10 SECONDS)", "SESSION (30 SECONDS)"),
    "distinct": COUNTS_BY_PAGE.replace(
        "SUM(duration) AS total_duration", "SUM(duration) AS total_duration, COUNT_DISTINCT(user_id) AS users"
    ),
}
COUNTS_BY_USER = (
    "CREATE TABLE user_counts AS SELECT user_id, COUNT(*) AS views, SUM(duration) AS total_duration "
    "FROM pageviews WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY user_id EMIT CHANGES;"
)


# -- measuring a running aggregation ---------------------------------------------------------------


def _query(engine: Any) -> Any:
    return next(iter(engine.queries.values()))


def run_to_end(engine: Any, events: int, timeout: float) -> tuple[float, Any]:
    """Wait until the engine's query consumed ``events`` records and went idle; the seconds from
    its first poll to its last sink record (the last change of its output count)."""
    query = _query(engine)
    last_out, last_change = -1, time.perf_counter()
    deadline = time.perf_counter() + timeout
    while True:
        if getattr(query, "error", None) is not None:
            raise SystemExit(f"the query failed: {query.error}")
        out = query.records_out
        now = time.perf_counter()
        if out != last_out:
            last_out, last_change = out, now
        if query.records_in >= events and query.is_idle() and query.records_out == last_out:
            return last_change, query
        if now > deadline:
            raise SystemExit(f"timed out: {query.records_in:,} of {events:,} events consumed")
        time.sleep(0.0005)


def state_figures(engine: Any) -> dict[str, Any]:
    """Rows and Arrow bytes of each aggregation and materialized table (``agg`` and ``mat``
    schemas of the state database), and the database file and write-ahead log sizes."""
    con = engine.store.state_cursor()
    names = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE schema_name IN ('agg', 'mat') ORDER BY ALL"
    ).fetchall()
    tables = {}
    for schema, table in names:
        data = con.sql(f'SELECT * FROM {schema}."{table}"').to_arrow_table()
        tables[f"{schema}.{table}"] = {"rows": data.num_rows, "arrow_bytes": data.nbytes}
    sizes = con.execute(
        "SELECT sum(total_blocks * block_size), string_agg(wal_size, ', ') FROM pragma_database_size()"
    ).fetchone()
    return {
        "tables": tables,
        "database_bytes": int(sizes[0]) if sizes and sizes[0] is not None else None,
        "wal": sizes[1] if sizes else None,
    }


def current_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# -- phases ----------------------------------------------------------------------------------------


def phase_throughput(args: argparse.Namespace) -> dict[str, Any]:
    extra: dict[str, Any] = kafka_client_settings() if args.store == "kafka" else {}
    if args.cache == "off":
        extra[CACHE] = "0"
    with bench_engine(args.store, extra) as engine:
        session = engine.session()
        session.execute_all(PAGEVIEWS_DDL.format(topic="pageviews", partitions=args.partitions))
        load_s, _ = load_pageviews(engine, "pageviews", args.events, pages=PAGES, late=args.late)
        print(f"loaded {args.events:,} events in {load_s:.2f}s", file=sys.stderr)
        first = FirstPoll(engine.store)
        session.execute_all(VARIANTS[args.window])
        end, query = run_to_end(engine, args.events, args.timeout)
        assert first.at is not None
        elapsed = end - first.at
        result: dict[str, Any] = {
            "phase": "throughput",
            "window": args.window,
            "store": args.store,
            "cache": args.cache,
            "late": args.late,
            "events": query.records_in,
            "sink_records": query.records_out,
            "seconds": round(elapsed, 3),
            "events_per_s": round(query.records_in / elapsed),
            "peak_rss_mib": round(peak_rss_mib()),
            "load": load_average(),
        }
        engine.wait_idle(timeout=120)  # the table's materializer catches up with the sink
        result["state"] = state_figures(engine)
        if args.pull_seconds > 0:
            result["pull"] = pull_benchmark(engine, args)
        return result


def one_window_users(start: int, n: int, users: int) -> pa.Table:
    """Events for users ``start .. start + n`` (one each), all inside the first 10 s window."""
    rng = np.random.default_rng(start)
    ids = np.arange(start, start + n)
    viewtime = BASE_TIME + (ids * 9_000 // max(users, 1)).astype(np.int64)
    value = pc.binary_join_element_wise(
        '{"PAGE":"/page/',
        as_text(rng.integers(0, PAGES, n)),
        '","DURATION":',
        as_text(rng.integers(1, 120, n)),
        f',"REFERRER":"{REFERRER}","VIEWTIME":',
        as_text(viewtime),
        "}",
        "",
    )
    key = pc.binary_join_element_wise("user_", as_text(ids), "")
    return pa.table(
        {"timestamp": pa.array(viewtime), "key": key.cast(pa.binary()), "value": value.cast(pa.binary())}
    )


def phase_keys(args: argparse.Namespace) -> dict[str, Any]:
    extra: dict[str, Any] = kafka_client_settings() if args.store == "kafka" else {}
    with bench_engine(args.store, extra) as engine:
        session = engine.session()
        session.execute_all(PAGEVIEWS_DDL.format(topic="pageviews", partitions=args.partitions))
        for start in range(0, args.keys, 50_000):
            engine.store.produce(
                "pageviews", one_window_users(start, min(50_000, args.keys - start), args.keys)
            )
        rss_loaded = current_rss_mib()
        first = FirstPoll(engine.store)
        session.execute_all(COUNTS_BY_USER)
        end, query = run_to_end(engine, args.keys, args.timeout)
        assert first.at is not None
        elapsed = end - first.at
        load = load_average()
        engine.wait_idle(timeout=120)
        return {
            "phase": "keys",
            "store": args.store,
            "keys": args.keys,
            "events": query.records_in,
            "sink_records": query.records_out,
            "seconds": round(elapsed, 3),
            "events_per_s": round(query.records_in / elapsed),
            "rss_after_load_mib": round(rss_loaded),
            "rss_mib": round(current_rss_mib()),
            "peak_rss_mib": round(peak_rss_mib()),
            "state": state_figures(engine),
            "load": load,
        }


# -- pull queries over REST ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pull_benchmark(engine: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Serve ``engine`` over REST on a free port (in this process, as ``ksqlpy server`` would)
    and measure pull queries from a separate client process, so the client does not compete
    with the server for this interpreter."""
    from ksqlpy.server.app import create_app
    from ksqlpy.server.config import ServerConfig
    from ksqlpy.server.main import serve_app

    port = _free_port()
    config = ServerConfig.load(environ={}, overrides={"listeners": f"http://127.0.0.1:{port}"})
    app = create_app(engine, config)
    loop = asyncio.new_event_loop()
    shutdown = asyncio.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve_app(app, config, shutdown))

    server = threading.Thread(target=serve, name="bench-server", daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        client = subprocess.run(
            [
                sys.executable,
                __file__,
                "--client",
                url,
                "--pull-seconds",
                str(args.pull_seconds),
                "--concurrency",
                str(args.concurrency),
            ],
            capture_output=True,
            text=True,
            timeout=args.pull_seconds + 120,
            check=False,
        )
        if client.returncode != 0:
            return {"error": client.stderr.strip()[-2000:]}
        return json.loads(client.stdout.strip().splitlines()[-1])
    finally:
        loop.call_soon_threadsafe(shutdown.set)
        server.join(10)


async def _pull_client(url: str, seconds: float, concurrency: int) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    failures: list[str] = []
    rows = 0
    headers = {"Accept": "application/vnd.ksqlapi.delimited.v1"}
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        for _ in range(100):  # the server is up once /info answers
            try:
                if (await client.get("/info")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        end = time.perf_counter() + seconds

        async def worker(seed: int) -> None:
            nonlocal rows
            rnd = random.Random(seed)
            while time.perf_counter() < end:
                sql = f"SELECT * FROM pageview_counts WHERE page = '/page/{rnd.randrange(PAGES)}';"
                t0 = time.perf_counter()
                try:
                    response = await client.post(
                        "/query-stream", json={"sql": sql, "properties": {}}, headers=headers
                    )
                except httpx.TimeoutException:
                    latencies.append(time.perf_counter() - t0)
                    failures.append(f"no answer within {REQUEST_TIMEOUT:.0f}s")
                    continue
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    failures.append(response.text[:300])
                else:
                    rows += max(0, len(response.text.strip().splitlines()) - 1)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    return {
        "queries": len(latencies),
        "failed": len(failures),
        "first_failure": failures[0] if failures else None,
        "rows_per_query": round(rows / max(1, len(latencies) - len(failures)), 2),
        "concurrency": concurrency,
        "queries_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


# -- driver ----------------------------------------------------------------------------------------


def _child(phase: str, args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    argv = [
        sys.executable,
        __file__,
        "--phase",
        phase,
        "--store",
        args.store,
        "--events",
        str(args.events),
        "--keys",
        str(args.keys),
        "--partitions",
        str(args.partitions),
        "--timeout",
        str(args.timeout),
        "--concurrency",
        str(args.concurrency),
        "--window",
        "tumbling" if args.window == "all" else args.window,
        "--late",
        str(args.late),
    ]
    for name, value in overrides.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"phase": phase, **overrides, "error": (done.stderr or done.stdout).strip()[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _report(result: dict[str, Any]) -> None:
    if "error" in result:
        print(f"{result.get('phase')} {result.get('cache', '')}: FAILED\n{result['error']}")
        return
    state = result.get("state", {})
    tables = state.get("tables", {})
    detail = ", ".join(
        f"{n}: {t['rows']:,} rows {t['arrow_bytes'] / 2**20:,.1f} MiB" for n, t in tables.items()
    )
    head = f"[{result['store']}] {result['phase']}"
    if result["phase"] == "throughput":
        head += f" {result['window']} cache={result['cache']}"
        if result.get("late"):
            head += f" late={result['late']:g}"
    else:
        head += f" keys={result['keys']:,}"
    print(
        f"{head}: events={result['events']:,} sink_records={result['sink_records']:,} "
        f"time={result['seconds']}s throughput={result['events_per_s']:,} events/s "
        f"peak_rss={result['peak_rss_mib']} MiB load={result['load']}"
    )
    extra = (
        f" rss_now={result['rss_mib']} MiB (after load {result['rss_after_load_mib']} MiB)"
        if "rss_mib" in result
        else ""
    )
    print(
        f"  state: {detail or 'no agg/mat tables'}; database file "
        f"{(state.get('database_bytes') or 0) / 2**20:,.0f} MiB + WAL {state.get('wal')}{extra}"
    )
    pull = result.get("pull")
    if pull:
        if "error" in pull:
            print(f"  pull queries FAILED: {pull['error']}")
        else:
            print(
                f"  pull queries: {pull['queries_per_s']:,} queries/s p50={pull['p50_ms']} ms "
                f"p99={pull['p99_ms']} ms ({pull['queries']:,} queries, {pull['failed']} failed, "
                f"{pull['rows_per_query']} rows each, {pull['concurrency']} concurrent)"
            )
            if pull["first_failure"]:
                print(f"  first failure: {pull['first_failure']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--store", choices=("embedded", "kafka"), default="embedded")
    ap.add_argument("--phase", choices=("all", "throughput", "keys"), default="all")
    ap.add_argument("--cache", choices=("default", "off"), default="default")
    ap.add_argument(
        "--window",
        choices=(*VARIANTS, "all"),
        default="tumbling",
        help="the throughput phase's window or aggregate (all: each in turn, with the default phases)",
    )
    ap.add_argument(
        "--late", type=float, default=0.0, help="fraction of events that arrive up to a minute late"
    )
    ap.add_argument("--pull-seconds", type=float, default=0.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--client", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        print(json.dumps(asyncio.run(_pull_client(args.client, args.pull_seconds, args.concurrency))))
        return
    if args.window == "all" and args.phase != "all":
        ap.error("--window all runs with --phase all")
    if args.phase == "throughput":
        print(json.dumps(phase_throughput(args)))
        return
    if args.phase == "keys":
        print(json.dumps(phase_keys(args)))
        return
    print(f"load before: {load_average()}  (cores: {os.cpu_count()})")
    windows = list(VARIANTS) if args.window == "all" else [args.window]
    for i, window in enumerate(windows):
        pull = {"pull_seconds": args.pull_seconds or 10} if i == 0 else {}
        _report(_child("throughput", args, cache="default", window=window, **pull))
        _report(_child("throughput", args, cache="off", window=window))
    _report(_child("keys", args))
    print(f"load after: {load_average()}")


if __name__ == "__main__":
    main()
