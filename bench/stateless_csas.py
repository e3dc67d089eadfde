"""Benchmark: a stateless CSAS (filter + projection) over pageview events.

Loads N JSON pageview events (~120 bytes, key = user id) into a topic, starts
``CREATE STREAM ... AS SELECT ... WHERE ...`` and measures events/s from the query's start to the
last sink record, plus peak RSS. Runs on the embedded store by default; ``--bootstrap-servers``
runs it on Kafka (e.g. the Tansu test broker).

    python bench/stateless_csas.py --events 1000000
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time

import orjson
import pyarrow as pa

from ksqlpy.runtime.engine import Engine

PAGES = [f"/page/{i}" for i in range(200)]


def make_batch(start: int, n: int) -> pa.Table:
    rnd = random.Random(start)
    keys, values = [], []
    for i in range(start, start + n):
        user = f"user_{rnd.randrange(100_000)}"
        keys.append(user.encode())
        values.append(
            orjson.dumps(
                {"PAGE": rnd.choice(PAGES), "DURATION": rnd.randrange(1, 120), "REFERRER": "https://example.com/x",
                 "VIEWTIME": 1_700_000_000_000 + i}
            )
        )
    return pa.table(
        {
            "timestamp": pa.array(range(start, start + n), pa.int64()),
            "key": pa.array(keys, pa.binary()),
            "value": pa.array(values, pa.binary()),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--bootstrap-servers", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = {"ksql.streams.state.dir": tmp, "ksql.streams.auto.offset.reset": "earliest"}
        if args.bootstrap_servers:
            config["bootstrap.servers"] = args.bootstrap_servers
            config["ksql.service.id"] = f"bench_{int(time.time())}_"
        engine = Engine.open(config)
        topic = f"pageviews_{int(time.time())}"
        s = engine.session()
        s.execute_all(
            f"CREATE STREAM pv (user_id VARCHAR KEY, page VARCHAR, duration INT, referrer VARCHAR, viewtime BIGINT) "
            f"WITH (kafka_topic='{topic}', value_format='JSON', partitions=1);"
        )
        t0 = time.perf_counter()
        step = 50_000
        for start in range(0, args.events, step):
            engine.store.produce(topic, make_batch(start, min(step, args.events - start)))
        load_s = time.perf_counter() - t0
        print(f"loaded {args.events:,} events in {load_s:.2f}s ({args.events / load_s:,.0f} events/s produce)")
        t1 = time.perf_counter()
        s.execute_all("CREATE STREAM slow AS SELECT user_id, page, duration * 1000 AS duration_ms, viewtime FROM pv WHERE duration > 60;")
        engine.wait_idle(timeout=600)
        elapsed = time.perf_counter() - t1
        query = next(iter(engine.queries.values()))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"store={engine.store_kind} events={query.records_in:,} sink_records={query.records_out:,} "
            f"time={elapsed:.2f}s throughput={query.records_in / elapsed:,.0f} events/s peak_rss={rss:,.0f} MiB"
        )
        engine.close()


if __name__ == "__main__":
    main()
