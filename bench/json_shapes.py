"""Benchmark: the same filter/projection over records of different shapes, on the embedded store.

Real JSON rarely spells field names as ksqlDB's upper-case columns; ksqlDB matches them
case-insensitively, and so must the decoder, without leaving its fast path. Each shape loads N
pageview-like events and runs::

    CREATE STREAM out AS SELECT userid, pageid, duration * 2 AS dur2, viewtime
      FROM src WHERE duration > 5000;

(half the events pass), reporting events/s from the query's first poll until its last sink
record is written, and the peak RSS of a process that ran that shape alone (each shape runs in
its own child process, so one shape's peak does not hide the next one's).

Shapes (``--shapes``, comma-separated; all by default):

* ``upper``: ``{"VIEWTIME":..,"USERID":"User_1","PAGEID":"Page_2","REGION":"Region_3","DURATION":..}``
* ``lower``: the same names in lower case, as most real JSON has them
* ``camel``: ``viewTime``, ``userId``, ``pageId``, ``region``, ``duration``
* ``mixed``: each record spells its names one of the three ways above
* ``nested``: ``{"viewtime":..,"user":{"id":..,"region":..},"page":{"id":..,"duration":..}}`` read
  as STRUCT columns, the query using ``user->id`` and ``page->duration``
* ``structs``: the nested events, the query writing the STRUCT columns themselves
  (``SELECT userid, user, page, viewtime ... WHERE page->duration > 5000``)
* ``wide``: 30 lower-case columns (ints, doubles, strings) of which the query uses four
* ``delimited``: the upper/lower event as DELIMITED (CSV) values
* ``avro``: the flat event as AVRO values (Confluent's framing, the schema ksqlDB registers),
  written with ksqlpy's own serializer
* ``partitions``: the lower-case event in a topic of 24 partitions, spread by key

    python bench/json_shapes.py --events 200000
    python bench/json_shapes.py --events 200000 --shapes lower,camel
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BASE_TIME, FirstPoll, as_text, bench_engine, cpu_seconds, peak_rss_mib, wait_for

#: Events per produce call while loading.
LOAD_BATCH = 50_000
#: Wide records: this many columns in all, the first five the usual ones.
WIDE_COLUMNS = 30

FLAT_COLUMNS = "userid VARCHAR KEY, viewtime BIGINT, pageid VARCHAR, region VARCHAR, duration INT"
FLAT_QUERY = "SELECT userid, pageid, duration * 2 AS dur2, viewtime FROM {src} WHERE duration > 5000"
NESTED_COLUMNS = (
    "userid VARCHAR KEY, viewtime BIGINT, user STRUCT<id VARCHAR, region VARCHAR>, "
    "page STRUCT<id VARCHAR, duration INT>"
)
NESTED_QUERY = (
    "SELECT userid, page->id AS pageid, page->duration * 2 AS dur2, viewtime FROM {src} "
    "WHERE page->duration > 5000"
)

STRUCTS_QUERY = "SELECT userid, user, page, viewtime FROM {src} WHERE page->duration > 5000"


@dataclass(frozen=True, slots=True)
class Events:
    """The columns of one batch of events, as Arrow text (numbers already printed)."""

    viewtime: pa.Array
    userid: pa.Array
    pageid: pa.Array
    region: pa.Array
    duration: pa.Array
    long_views: int  # events with duration > 5000
    rng: np.random.Generator


def events(start: int, n: int, seed: int = 42) -> Events:
    rng = np.random.default_rng(seed + start)
    duration = rng.integers(0, 10_001, n)
    viewtime = np.arange(BASE_TIME + start, BASE_TIME + start + n, dtype=np.int64)
    return Events(
        viewtime=as_text(viewtime),
        userid=pc.binary_join_element_wise("User_", as_text(rng.integers(0, 10_000, n)), ""),
        pageid=pc.binary_join_element_wise("Page_", as_text(rng.integers(0, 1_000, n)), ""),
        region=pc.binary_join_element_wise("Region_", as_text(rng.integers(1, 10, n)), ""),
        duration=as_text(duration),
        long_views=int((duration > 5000).sum()),
        rng=rng,
    )


def flat_json(e: Events, names: tuple[str, str, str, str, str]) -> pa.Array:
    viewtime, userid, pageid, region, duration = names
    return pc.binary_join_element_wise(
        f'{{"{viewtime}":', e.viewtime, f',"{userid}":"', e.userid, f'","{pageid}":"', e.pageid,
        f'","{region}":"', e.region, f'","{duration}":', e.duration, "}", "",
    )


UPPER = ("VIEWTIME", "USERID", "PAGEID", "REGION", "DURATION")
LOWER = ("viewtime", "userid", "pageid", "region", "duration")
CAMEL = ("viewTime", "userId", "pageId", "region", "duration")


def mixed_json(e: Events) -> pa.Array:
    spelling = pa.array(e.rng.integers(0, 3, len(e.viewtime)))
    variants = [flat_json(e, names) for names in (UPPER, LOWER, CAMEL)]
    return pc.case_when(
        pc.make_struct(pc.equal(spelling, 0), pc.equal(spelling, 1)), variants[0], variants[1], variants[2]
    )


def nested_json(e: Events) -> pa.Array:
    return pc.binary_join_element_wise(
        '{"viewtime":', e.viewtime, ',"user":{"id":"', e.userid, '","region":"', e.region,
        '"},"page":{"id":"', e.pageid, '","duration":', e.duration, "}}", "",
    )


def wide_json(e: Events) -> pa.Array:
    n = len(e.viewtime)
    parts: list[pa.Array | str] = [
        '{"viewtime":', e.viewtime, ',"userid":"', e.userid, '","pageid":"', e.pageid,
        '","region":"', e.region, '","duration":', e.duration,
    ]
    for i in range(5, WIDE_COLUMNS):
        match i % 3:
            case 0:
                parts += [f',"c{i}":', as_text(e.rng.integers(0, 1_000_000, n))]
            case 1:
                parts += [f',"c{i}":', as_text(np.round(e.rng.random(n) * 1000, 3))]
            case _:
                parts += [f',"c{i}":"v', as_text(e.rng.integers(0, 1000, n)), '"']
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")


def wide_columns() -> str:
    extra = []
    for i in range(5, WIDE_COLUMNS):
        extra.append(f"c{i} " + ("BIGINT", "DOUBLE", "VARCHAR")[i % 3])
    return FLAT_COLUMNS + ", " + ", ".join(extra)


def delimited(e: Events) -> pa.Array:
    return pc.binary_join_element_wise(e.viewtime, e.pageid, e.region, e.duration, ",")


@dataclass(frozen=True, slots=True)
class Shape:
    columns: str
    #: the value bytes of a batch; ``None``: the source's own serializer writes the flat event
    value: Callable[[Events], pa.Array] | None
    query: str = FLAT_QUERY
    value_format: str = "JSON"
    partitions: int = 1


SHAPES: dict[str, Shape] = {
    "upper": Shape(FLAT_COLUMNS, lambda e: flat_json(e, UPPER)),
    "lower": Shape(FLAT_COLUMNS, lambda e: flat_json(e, LOWER)),
    "camel": Shape(FLAT_COLUMNS, lambda e: flat_json(e, CAMEL)),
    "mixed": Shape(FLAT_COLUMNS, mixed_json),
    "nested": Shape(NESTED_COLUMNS, nested_json, NESTED_QUERY),
    "structs": Shape(NESTED_COLUMNS, nested_json, STRUCTS_QUERY),
    "wide": Shape(wide_columns(), wide_json),
    "delimited": Shape(FLAT_COLUMNS, delimited, value_format="DELIMITED"),
    "avro": Shape(FLAT_COLUMNS, None, value_format="AVRO"),
    "partitions": Shape(FLAT_COLUMNS, lambda e: flat_json(e, LOWER), partitions=24),
}


def encoded(engine: object, e: Events, timestamps: pa.Array) -> pa.Table:
    """The flat events as records, keys and values written by the source's own serializers."""
    from ksqlpy.runtime.codec import SinkEncoder
    from ksqlpy.runtime.serde.registry import registry_for

    source = engine.catalog.source("SRC")  # type: ignore[attr-defined]
    rows = pa.table(
        {
            "USERID": e.userid.cast(pa.string()),
            "VIEWTIME": e.viewtime.cast(pa.int64()),
            "PAGEID": e.pageid.cast(pa.string()),
            "REGION": e.region.cast(pa.string()),
            "DURATION": e.duration.cast(pa.int32()),
        }
    )
    records, errors = SinkEncoder(source, registry_for(engine.store)).encode(rows, timestamps)  # type: ignore[attr-defined]
    if errors:
        raise SystemExit(f"encoding the events failed: {errors[0]}")
    return records


def load(engine: object, topic: str, shape: Shape, n: int) -> tuple[float, int, int]:
    """Produce ``n`` events: (seconds, events the filter keeps, bytes of values)."""
    t0 = time.perf_counter()
    kept = size = 0
    for start in range(0, n, LOAD_BATCH):
        e = events(start, min(LOAD_BATCH, n - start))
        timestamps = pa.array(np.arange(BASE_TIME + start, BASE_TIME + start + len(e.viewtime), dtype=np.int64))
        if shape.value is None:
            records = encoded(engine, e, timestamps)
        else:
            records = pa.table(
                {"timestamp": timestamps, "key": e.userid.cast(pa.binary()), "value": shape.value(e).cast(pa.binary())}
            )
        kept += e.long_views
        size += int(pc.sum(pc.binary_length(records.column("value"))).as_py())
        engine.store.produce(topic, records)  # type: ignore[attr-defined]
    return time.perf_counter() - t0, kept, size


def run_shape(name: str, n: int, timeout: float) -> None:
    shape = SHAPES[name]
    with bench_engine("embedded") as engine:
        topic = f"{name}_{int(time.time())}"
        session = engine.session()
        session.execute_all(
            f"CREATE STREAM src ({shape.columns}) WITH (kafka_topic='{topic}', "
            f"value_format='{shape.value_format}', partitions={shape.partitions});"
        )
        load_s, expected, size = load(engine, topic, shape, n)
        first = FirstPoll(engine.store)
        cpu0 = cpu_seconds()
        session.execute_all(f"CREATE STREAM out AS {shape.query.format(src='src')};")
        query = next(iter(engine.queries.values()))
        done = wait_for(lambda: query.records_out >= expected or query.error is not None, timeout)
        if query.error is not None:
            raise SystemExit(f"[{name}] the query failed: {query.error}")
        assert first.at is not None
        elapsed = done - first.at
        cpu = cpu_seconds() - cpu0
        print(
            f"{name:<10} events={query.records_in:>9,} out={query.records_out:>9,} "
            f"bytes/event={size / n:5.0f} time={elapsed:6.2f}s "
            f"throughput={query.records_in / elapsed:>10,.0f} events/s "
            f"cpu={cpu / query.records_in * 1e6:6.2f} us/event peak_rss={peak_rss_mib():,.0f} MiB "
            f"(load {n / load_s:,.0f} events/s)",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--in-process", action="store_true", help="run the shapes in this process")
    args = ap.parse_args()
    names = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in names if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shapes {unknown}; choose from {', '.join(SHAPES)}")
    for name in names:
        if args.in_process:
            run_shape(name, args.events, args.timeout)
            continue
        # one process per shape: peak RSS is a process-wide high-water mark
        cmd = [sys.executable, __file__, "--events", str(args.events), "--shapes", name,
               "--timeout", str(args.timeout), "--in-process"]
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
