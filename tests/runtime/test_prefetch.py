"""Reading and decoding one batch ahead (``ksqlpy.runtime.prefetch``): batches come in order, the
positions are those of the batch handed out (never the one read ahead), and a query on the
embedded store that reads ahead commits exactly what it processed."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from ksqlpy.runtime import codec
from ksqlpy.runtime.codec import SourceDecoder
from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.prefetch import DecodeAhead
from ksqlpy.runtime.serde.registry import registry_for
from ksqlpy.runtime.store.base import TopicPartition

VIEWS = (
    "CREATE STREAM views (page VARCHAR KEY, ms INT) "
    "WITH (kafka_topic='views', value_format='JSON', partitions=1);"
)


def produce(engine: Engine, first: int, count: int) -> None:
    engine.store.produce(
        "views",
        pa.table(
            {
                "timestamp": pa.array([1000 * (first + i) for i in range(count)], pa.int64()),
                "key": pa.array([f"p{(first + i) % 3}".encode() for i in range(count)], pa.binary()),
                "value": pa.array(
                    [json.dumps({"ms": first + i}).encode() for i in range(count)], pa.binary()
                ),
            }
        ),
    )


def test_batches_in_order_with_the_positions_of_the_batch_handed_out(tmp_path: Path) -> None:
    engine = Engine.open({"ksql.streams.state.dir": str(tmp_path / "data")})
    try:
        engine.session().execute_all(VIEWS)
        produce(engine, 0, 25)
        decoder = SourceDecoder(engine.catalog.source("VIEWS"), registry_for(engine.store))
        tp = TopicPartition("views", 0)
        reader = DecodeAhead(engine.store.open_reader(["views"], group="g", start="earliest"), decoder, "t")
        try:
            assert reader.positions() == {tp: 0}
            seen: list[int] = []
            for _ in range(3):
                records = reader.poll(10, timeout=1.0)
                decoded = reader.decoded(records)
                assert decoded.table.column("MS").to_pylist() == records.column("offset").to_pylist()
                seen += records.column("offset").to_pylist()
                # the next batch is read ahead by now, yet the positions are this batch's end
                assert reader.positions() == {tp: seen[-1] + 1}
            assert seen == list(range(25))
            assert reader.poll(10, timeout=0.0).num_rows == 0
            assert reader.positions() == {tp: 25}
            produce(engine, 25, 5)  # records after an empty poll are waited for as usual
            assert reader.poll(10, timeout=1.0).column("offset").to_pylist() == [25, 26, 27, 28, 29]
            assert reader.positions() == {tp: 30}
        finally:
            reader.close()
    finally:
        engine.close()


def test_a_batch_not_read_ahead_is_read_short(tmp_path: Path) -> None:
    """The first batch, and the first after an empty poll, hold at most ``first_records``
    records; the batches read ahead of them are full."""
    engine = Engine.open({"ksql.streams.state.dir": str(tmp_path / "data")})
    try:
        engine.session().execute_all(VIEWS)
        produce(engine, 0, 25)
        decoder = SourceDecoder(engine.catalog.source("VIEWS"), registry_for(engine.store))
        reader = DecodeAhead(
            engine.store.open_reader(["views"], group="g", start="earliest"), decoder, "t", first_records=4
        )
        try:
            sizes = [reader.poll(10, timeout=1.0).num_rows for _ in range(4)]
            assert sizes == [4, 10, 10, 1]
            assert reader.poll(10, timeout=0.0).num_rows == 0
            produce(engine, 25, 12)
            records = reader.poll(10, timeout=1.0)
            assert records.column("offset").to_pylist() == [25, 26, 27, 28]
            assert reader.decoded(records).table.column("MS").to_pylist() == [25, 26, 27, 28]
            assert reader.poll(10, timeout=1.0).column("offset").to_pylist() == list(range(29, 37))
        finally:
            reader.close()
    finally:
        engine.close()


def test_records_written_after_an_empty_read_ahead_are_handed_out(tmp_path: Path) -> None:
    """The batch ahead is read on the decoding thread; when it found nothing, the next poll reads
    again rather than hand out that stale empty batch (an idle query would miss new records)."""
    engine = Engine.open({"ksql.streams.state.dir": str(tmp_path / "data")})
    try:
        engine.session().execute_all(VIEWS)
        produce(engine, 0, 5)
        decoder = SourceDecoder(engine.catalog.source("VIEWS"), registry_for(engine.store))
        tp = TopicPartition("views", 0)
        reader = DecodeAhead(engine.store.open_reader(["views"], group="g", start="earliest"), decoder, "t")
        try:
            assert reader.poll(10, timeout=1.0).column("offset").to_pylist() == [0, 1, 2, 3, 4]
            ahead = reader._ahead
            assert ahead is not None
            assert ahead.result().records.num_rows == 0  # read ahead before the next records came
            produce(engine, 5, 3)
            records = reader.poll(10, timeout=0.0)
            assert records.column("offset").to_pylist() == [5, 6, 7]
            assert reader.decoded(records).table.column("MS").to_pylist() == [5, 6, 7]
            assert reader.positions() == {tp: 8}
        finally:
            reader.close()
    finally:
        engine.close()


def test_a_large_batch_is_decoded_in_pieces_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch read ahead of more than ``codec.DECODE_BYTES`` bytes of values is decoded a piece
    at a time: its rows come in record order and the malformed records of every piece are
    reported."""
    monkeypatch.setattr(codec, "DECODE_BYTES", 40)
    engine = Engine.open({"ksql.streams.state.dir": str(tmp_path / "data")})
    try:
        engine.session().execute_all(VIEWS)
        produce(engine, 0, 10)
        engine.store.produce(
            "views",
            pa.table(
                {
                    "timestamp": pa.array([10_000, 11_000, 12_000], pa.int64()),
                    "key": pa.array([b"p0", b"p1", b"p2"], pa.binary()),
                    "value": pa.array([b"{not json", b'{"ms": 11}', b"[1"], pa.binary()),
                }
            ),
        )
        decoder = SourceDecoder(engine.catalog.source("VIEWS"), registry_for(engine.store))
        reader = DecodeAhead(engine.store.open_reader(["views"], group="g", start="earliest"), decoder, "t")
        try:
            records = reader.poll(20, timeout=1.0)
            assert records.num_rows == 13
            decoded = reader.decoded(records)
            assert decoded.table.column("MS").to_pylist() == [*range(10), 11]
            assert decoded.table.column("ROWOFFSET").to_pylist() == [*range(10), 11]
            assert [e.offset for e in decoded.errors] == [10, 12]
        finally:
            reader.close()
    finally:
        engine.close()


def test_an_aggregation_reading_ahead_commits_what_it_processed(tmp_path: Path) -> None:
    def opened() -> Engine:
        return Engine.open(
            {"ksql.streams.state.dir": str(tmp_path / "data"), "ksql.streams.auto.offset.reset": "earliest"}
        )

    engine = opened()
    try:
        session = engine.session()
        session.execute_all(VIEWS)
        session.execute_all(
            "CREATE TABLE totals AS SELECT page, COUNT(*) AS n, SUM(ms) AS s FROM views GROUP BY page;"
        )
        for first in range(0, 120, 30):
            produce(engine, first, 30)
        assert engine.wait_idle()
        query = next(iter(engine.queries.values()))
        assert isinstance(query._reader, DecodeAhead)
        assert engine.store.committed(query.group, "views") == {0: 120}
    finally:
        engine.close()
    engine = opened()  # a restart counts nothing twice
    try:
        produce(engine, 120, 30)
        assert engine.wait_idle()
        cursor = engine.store.state_cursor()
        rows = {
            page: (n, s) for page, n, s in cursor.execute('SELECT PAGE, N, S FROM mat."TOTALS"').fetchall()
        }
        cursor.close()
        assert rows == {f"p{k}": (50, sum(i for i in range(150) if i % 3 == k)) for k in range(3)}
    finally:
        engine.close()
