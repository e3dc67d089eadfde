"""Changelog topics: how a stateful query's state survives the loss of its local copy.

On the embedded store state commits in the log's own database, so it can never fall behind. On
Kafka, records live in the cluster and state in a local DuckDB file, committed right after each
Kafka transaction. There every change a stateful operator makes to one of its state stores
(:mod:`ksqlpy.runtime.state`: an aggregation's groups, a join's table sides and window buffers)
is recorded by the store's :class:`TableLog` and written, inside the batch's Kafka transaction,
to the store's compacted changelog topic (keyed by the store's key columns, a null value for a
deleted row), as Kafka Streams logs a state store. A changelog has as many partitions as the
query's input, and a change goes to the partition its row belongs to (the store's partition
column: the input partition it was processed in); a store whose rows name no partition logs to
one. A server whose local state is behind the query's committed positions (a lost or fresh state
directory, a crash between the Kafka commit and the local one, or a partition that another
server processed since) rebuilds the tables from their changelogs before it reads input, and so
needs no input record again: :mod:`ksqlpy.runtime.partitions` does it per partition as the
query's consumer group assigns them.

Record layout (what :func:`latest_rows` reads back):

* key: the row's key columns as a JSON object (DuckDB's ``to_json``, the same bytes for the same
  key, which is what compaction needs; ``{}`` for a store of one row);
* value: the whole row. A table whose columns are all integers, booleans and strings has it as a
  JSON object of its columns (DuckDB's ``to_json``, exact for those types and made for a whole
  batch in one statement); any other table as one Arrow IPC record batch in the table's Arrow
  schema (exact for every SQL type, decimals and nested values included, but made one row at a
  time). The first byte tells them apart (``{`` or IPC's continuation marker ``0xFF``);
* header ``ksqlpy.state.schema``: a fingerprint of the table's columns. A record written for a
  different shape of the table (before ``CREATE OR REPLACE`` changed the query) is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy.runtime.serde.base import combine
from ksqlpy.runtime.store.base import HEADER_TYPE, TopicSpec, TopicStore

log = logging.getLogger("ksqlpy.changelog")

SCHEMA_HEADER = "ksqlpy.state.schema"


@dataclass(frozen=True, slots=True)
class StateTable:
    """One state table of a query and its changelog topic."""

    table: str  # the DuckDB table, schema-qualified and quoted
    keys: tuple[str, ...]  # its key columns
    topic: str  # its changelog topic
    #: the column holding the source partition a row belongs to; None: every row is logged to
    #: (and restored with) partition 0
    partition: str | None = None


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Shape:
    """A state table's Arrow schema (the values' layout) and its fingerprint."""

    def __init__(self, con: duckdb.DuckDBPyConnection, table: StateTable) -> None:
        self.schema = con.sql(f"SELECT * FROM {table.table} LIMIT 0").to_arrow_table().schema
        described = ";".join(f"{f.name}:{f.type}" for f in self.schema)
        self.fingerprint = hashlib.sha256(described.encode()).hexdigest()[:16].encode()
        #: DuckDB types of the columns when every one round-trips exactly through JSON
        types = [_JSON_EXACT.get(f.type) for f in self.schema]
        self.json_types: list[str] | None = None if None in types else [t for t in types if t is not None]


class TableLog:
    """One state table's changelog: collects a batch's changes to the table, in order, and
    turns them into changelog records."""

    def __init__(
        self,
        table: StateTable,
        con: duckdb.DuckDBPyConnection,
        state: duckdb.DuckDBPyConnection,
        partitions: int = 1,
    ) -> None:
        """``con`` runs the key encoding; ``state`` holds the table (which must exist);
        ``partitions``: the changelog topic's partitions."""
        self.table = table
        self.shape = _Shape(state, table)
        self.partitions = max(1, partitions)
        self._con = con
        self._pending: list[tuple[pa.Table, bool]] = []

    @property
    def topic(self) -> str:
        return self.table.topic

    def upserted(self, rows: pa.Table) -> None:
        if rows.num_rows:
            self._pending.append((rows, False))

    def deleted(self, keys: pa.Table) -> None:
        if keys.num_rows:
            self._pending.append((keys, True))

    def drain(self) -> pa.Table | None:
        """The batch's changelog records (:data:`PRODUCE_SCHEMA`) in change order, if any."""
        pending, self._pending = self._pending, []
        if not pending:
            return None
        now = int(time.time() * 1000)
        return pa.concat_tables([self._records(rows, is_delete, now) for rows, is_delete in pending])

    def _records(self, rows: pa.Table, is_delete: bool, now: int) -> pa.Table:
        table, shape = self.table, self.shape
        n = rows.num_rows
        if not is_delete and table.keys and shape.json_types is not None:
            # keys and values in one statement (the keys are columns of the values)
            key_bytes, values = _json_keys_values(
                self._con, rows.select(shape.schema.names).cast(shape.schema), table.keys
            )
            return self._record_table(rows, key_bytes, values, now)
        keys = rows.select(list(table.keys)).cast(pa.schema([shape.schema.field(k) for k in table.keys]))
        key_bytes = _key_bytes(self._con, keys, table.keys, n)
        if is_delete:
            values = pa.nulls(n, pa.binary())
        elif shape.json_types is not None:
            values = _json_values(self._con, rows.select(shape.schema.names).cast(shape.schema))
        else:
            (batch,) = rows.select(shape.schema.names).cast(shape.schema).combine_chunks().to_batches()
            # One IPC message per row: a changelog record must stand alone for compaction.
            values = pa.array([batch.slice(i, 1).serialize().to_pybytes() for i in range(n)], pa.binary())
        return self._record_table(rows, key_bytes, values, now)

    def _record_table(self, rows: pa.Table, key_bytes: pa.Array, values: pa.Array, now: int) -> pa.Table:
        n = rows.num_rows
        return pa.table(
            {
                "partition": self._partition_of(rows),
                "timestamp": pa.array(np.full(n, now, dtype=np.int64)),
                "key": key_bytes,
                "value": values,
                "headers": self._headers(n),
            }
        )

    def _headers(self, n: int) -> pa.Array:
        """The schema header of ``n`` records, built column-wise (every record has the same)."""
        one = pa.array([{"key": SCHEMA_HEADER, "value": self.shape.fingerprint}], HEADER_TYPE.value_type)
        offsets = pa.array(np.arange(n + 1, dtype=np.int32))
        return pa.ListArray.from_arrays(
            offsets, one.take(pa.array(np.zeros(n, dtype=np.int32))), type=HEADER_TYPE
        )

    def _partition_of(self, rows: pa.Table) -> pa.Array:
        """Each change's changelog partition: that of the source partition its row belongs to
        (Kafka Streams' rule: a task's store logs to the changelog partition of the task)."""
        column = self.table.partition
        if column is None or self.partitions == 1 or column not in rows.column_names:
            return pa.array(np.zeros(rows.num_rows, dtype=np.int32))
        parts = pc.fill_null(rows.column(column).combine_chunks().cast(pa.int32()), 0)
        # A changelog made with fewer partitions (before it followed the input) takes them modulo.
        return pa.array(np.mod(parts.to_numpy(zero_copy_only=False), self.partitions).astype(np.int32))


#: Arrow types whose values DuckDB's JSON writes and reads back exactly, with their DuckDB names
_JSON_EXACT: dict[pa.DataType, str] = {
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.bool_(): "BOOLEAN",
    pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR",
}


def _json_values(con: duckdb.DuckDBPyConnection, rows: pa.Table) -> pa.Array:
    """Each row as a JSON object of its columns, for the whole batch in one statement."""
    packed = ", ".join(f"{_q(k)} := {_q(k)}" for k in rows.column_names)
    con.register("__changelog_rows", rows)
    try:
        out = con.sql(
            f"SELECT encode(to_json(struct_pack({packed}))::VARCHAR) FROM __changelog_rows"
        ).to_arrow_table()
    finally:
        con.unregister("__changelog_rows")
    return combine(out.column(0))


def _json_keys_values(
    con: duckdb.DuckDBPyConnection, rows: pa.Table, keys: Sequence[str]
) -> tuple[pa.Array, pa.Array]:
    """:func:`_key_bytes` and :func:`_json_values` of rows whose columns include the keys, in
    one statement."""
    key = ", ".join(f"{_q(k)} := {_q(k)}" for k in keys)
    packed = ", ".join(f"{_q(k)} := {_q(k)}" for k in rows.column_names)
    con.register("__changelog_rows", rows)
    try:
        out = con.sql(
            f"SELECT to_json(struct_pack({key}))::BLOB, encode(to_json(struct_pack({packed}))::VARCHAR) "
            "FROM __changelog_rows"
        ).to_arrow_table()
    finally:
        con.unregister("__changelog_rows")
    return combine(out.column(0)), combine(out.column(1))


def _from_json(con: duckdb.DuckDBPyConnection, values: pa.Array, shape: _Shape) -> pa.Table:
    """Rows written by :func:`_json_values`, back in the table's schema."""
    assert shape.json_types is not None
    structure = json.dumps(dict(zip(shape.schema.names, shape.json_types, strict=True)))
    con.register("__changelog_values", pa.table({"v": values}))
    try:
        table = con.sql(
            "SELECT unnest(json_transform(decode(v), $s), recursive := false) FROM __changelog_values",
            params={"s": structure},
        ).to_arrow_table()
    finally:
        con.unregister("__changelog_values")
    return table.rename_columns(shape.schema.names).cast(shape.schema)


def _key_bytes(con: duckdb.DuckDBPyConnection, keys: pa.Table, names: Sequence[str], n: int) -> pa.Array:
    if not names:
        # a table of one row (a step's stream time): one key, so compaction keeps its last value
        return pa.array([b"{}"] * n, pa.binary())
    packed = ", ".join(f"{_q(k)} := {_q(k)}" for k in names)
    con.register("__changelog_keys", keys)
    try:
        out = con.sql(f"SELECT to_json(struct_pack({packed}))::BLOB FROM __changelog_keys").to_arrow_table()
    finally:
        con.unregister("__changelog_keys")
    return combine(out.column(0))


def create_topics(store: TopicStore, topics: Sequence[str], partitions: int = 1) -> None:
    """Create the changelog topics (compacted) that do not exist yet, with ``partitions``
    partitions: as many as the query's input, one per task."""
    for topic in topics:
        store.create_topic(
            TopicSpec(name=topic, partitions=max(1, partitions), config={"cleanup.policy": "compact"}),
            exist_ok=True,
        )


def delete_topics(store: TopicStore, topics: Sequence[str]) -> None:
    for topic in topics:
        if store.describe_topic(topic) is not None:
            store.delete_topic(topic)


def seed(store: TopicStore, logs: Sequence[TableLog]) -> None:
    """Start changelogs that did not exist yet with their tables' current rows: state kept
    before its store had a changelog (a server upgraded with a query running) must be in the
    changelog too, or a later restore would rebuild only what changed since."""
    cursor = store.state_cursor()
    try:
        for changes in logs:
            changes.upserted(cursor.sql(f"SELECT * FROM {changes.table.table}").to_arrow_table())
    finally:
        cursor.close()
    records = {changes.topic: changes.drain() for changes in logs}
    seeded = {topic: r for topic, r in records.items() if r is not None}
    if not seeded:
        return
    with store.transaction() as tx:
        for topic, r in seeded.items():
            tx.produce(topic, r)
    log.info(
        "Changelog topic(s) %s started with the %d row(s) kept before them.",
        ", ".join(seeded),
        sum(r.num_rows for r in seeded.values()),
    )


def latest_rows(records: pa.Table, shape: _Shape) -> pa.Table:
    """The table's rows as changelog ``records`` (``offset``, ``key``, ``value``, ``headers``)
    left them: the last record of each key, deleted keys left out."""
    if records.num_rows == 0:
        return shape.schema.empty_table()
    current = _schema_matches(records.column("headers"), shape.fingerprint)
    records = records.filter(current).drop_columns(["headers"])
    con = duckdb.connect()
    try:
        con.register("records", records)
        latest = con.sql(
            'SELECT value FROM records QUALIFY row_number() OVER (PARTITION BY key ORDER BY "offset" DESC) = 1'
        ).to_arrow_table()
        values = latest.column(0).combine_chunks()
        values = values.filter(pc.is_valid(values))
        is_json = pc.starts_with(values.cast(pa.binary()), b"{")
        parts: list[pa.Table] = []
        if shape.json_types is not None and pc.any(is_json).as_py():
            parts.append(_from_json(con, values.filter(is_json), shape))
    finally:
        con.close()
    ipc = values.filter(pc.invert(is_json)).to_pylist()
    parts += [pa.Table.from_batches([pa.ipc.read_record_batch(pa.py_buffer(v), shape.schema)]) for v in ipc]
    return pa.concat_tables(parts) if parts else shape.schema.empty_table()


def _schema_matches(headers: pa.ChunkedArray, fingerprint: bytes) -> pa.Array:
    found = [
        any(h["key"] == SCHEMA_HEADER and h["value"] == fingerprint for h in hs or ())
        for hs in headers.to_pylist()
    ]
    return pa.array(found, pa.bool_())
