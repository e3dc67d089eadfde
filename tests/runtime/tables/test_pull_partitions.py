"""Where a pull query's rows live (for routing on a cluster) and reading only some partitions:
a key lookup's partition is the one Kafka's default partitioner put the key's record in, for
KAFKA and JSON keys alike, and a query given ``request.ksql.query.pull.partition`` reads only
those partitions."""

from __future__ import annotations

from ksqlpy.runtime.engine import Engine
from ksqlpy.runtime.materialize import table_ref
from ksqlpy.runtime.pull import PARTITIONS, pull_target

KEYS = [f"user_{i}" for i in range(40)]


def _setup(engine: Engine, key_format: str) -> None:
    session = engine.session()
    session.execute_all(
        f"CREATE STREAM views (uid STRING KEY, n INT) WITH (kafka_topic='views', partitions=4, "
        f"key_format='{key_format}', value_format='JSON');"
        "CREATE TABLE totals AS SELECT uid, COUNT(*) AS c, SUM(n) AS s FROM views GROUP BY uid;"
    )
    for key in KEYS:
        session.execute_all(f"INSERT INTO views (uid, n) VALUES ('{key}', 1);")


def _partitions_held(engine: Engine) -> dict[str, int]:
    cursor = engine.store.state_cursor()
    try:
        return {str(k): int(p) for k, p in cursor.execute(f'SELECT "UID", "__PARTITION" FROM {table_ref("TOTALS")}').fetchall()}
    finally:
        cursor.close()


def _rows(engine: Engine, text: str, properties: dict[str, str] | None = None) -> list[tuple[object, ...]]:
    query = engine.session(properties or {}).execute_query(text)
    try:
        return [r.values for r in query]
    finally:
        query.close()


def _check_lookups(engine: Engine) -> None:
    assert len(_rows(engine, "SELECT * FROM totals;")) == len(KEYS)  # caught up
    held = _partitions_held(engine)
    assert set(held) == set(KEYS) and len(set(held.values())) == 4
    for key in KEYS:
        target = pull_target(engine.session(), f"SELECT * FROM totals WHERE uid = '{key}';")
        assert target is not None and target.partitions == 4
        assert target.key_partitions == {held[key]}, key
    both = pull_target(engine.session(), f"SELECT * FROM totals WHERE uid IN ('{KEYS[0]}', '{KEYS[1]}');")
    assert both is not None and both.key_partitions == {held[KEYS[0]], held[KEYS[1]]}
    scan = pull_target(engine.session(), "SELECT * FROM totals;")
    assert scan is not None and scan.key_partitions is None


def test_a_kafka_keys_partition_is_where_its_record_is(engine: Engine) -> None:
    _setup(engine, "KAFKA")
    _check_lookups(engine)


def test_a_json_keys_partition_is_where_its_record_is(engine: Engine) -> None:
    _setup(engine, "JSON")
    _check_lookups(engine)


def test_a_forwarded_query_reads_only_its_partitions(engine: Engine) -> None:
    _setup(engine, "KAFKA")
    everything = _rows(engine, "SELECT * FROM totals;")
    held = _partitions_held(engine)
    parts = [_rows(engine, "SELECT * FROM totals;", {PARTITIONS: str(p)}) for p in range(4)]
    for p, rows in enumerate(parts):
        assert rows and {r[0] for r in rows} == {k for k, q in held.items() if q == p}
    assert sorted(r for rows in parts for r in rows) == sorted(everything)
    # a lookup restricted to a partition its key is not in finds nothing
    key = KEYS[0]
    other = (held[key] + 1) % 4
    assert _rows(engine, f"SELECT * FROM totals WHERE uid = '{key}';", {PARTITIONS: str(other)}) == []
    assert len(_rows(engine, f"SELECT * FROM totals WHERE uid = '{key}';", {PARTITIONS: str(held[key])})) == 1
