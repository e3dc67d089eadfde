"""Evaluating a select step over a batch of input rows in DuckDB.

The batch is registered as the relation ``input``; the step's filter and projections run as one
DuckDB query. ksqlDB evaluates expressions per record and an error in one record (a bad CAST, a
UDF failure) only affects that record: its failing column becomes null, or, in WHERE, the record
is dropped, and the error goes to the processing log. We keep that: a batch runs as one query,
and only when that query fails are its rows evaluated one by one, failing expressions under
DuckDB's ``TRY``.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy import sqltypes
from ksqlpy.planner.expressions import duckdb_name
from ksqlpy.planner.physical import SelectStep, StepKind
from ksqlpy.runtime.codec import HEADERS, NULL_KEY, TOMBSTONE
from ksqlpy.runtime.processing_log import RECORD_PROCESSING_ERROR, ProcessingError
from ksqlpy.runtime.relations import from_duckdb, to_duckdb

TS = "__TS"
DELETE = "__DELETE"


@dataclass
class Evaluated:
    rows: pa.Table  # the step's output columns, then TS (and DELETE for table steps)
    errors: list[ProcessingError]


#: result columns carrying a windowed source record's window to a windowed sink's key
WINDOW_START = "__WINDOWSTART"
WINDOW_END = "__WINDOWEND"


class StepEvaluator:
    def __init__(
        self,
        step: SelectStep,
        con: duckdb.DuckDBPyConnection,
        *,
        window_bounds: bool = False,
        drop_unmatched: bool = False,
    ) -> None:
        """``window_bounds``: the input is a windowed source's decoded records, and each result
        row carries its record's window (:data:`WINDOW_START`, :data:`WINDOW_END`).
        ``drop_unmatched``: a table row the WHERE clause rejects is left out rather than made a
        tombstone (a push query over a table: ksqlDB's client sees only its source's deletes)."""
        self.step = step
        self.con = con
        self.window_bounds = window_bounds
        self.drop_unmatched = drop_unmatched
        self.sql = self._with_timestamp_check(self._query(safe=False))
        self.safe_sql = self._with_timestamp_check(self._query(safe=True))
        self._schema: pa.Schema | None = None

    def _query(self, *, safe: bool) -> str:
        step = self.step

        def guard(sql: str) -> str:
            return f"TRY({sql})" if safe else sql

        items = [f"{guard(c.sql)} AS {_q(c.name)}" for c in step.columns]
        items.append(f"{step.timestamp_sql} AS {TS}")
        items.append(f'"{HEADERS}"')
        if self.window_bounds:
            items += [f'"WINDOWSTART" AS {WINDOW_START}', f'"WINDOWEND" AS {WINDOW_END}']
        keys = step.source.key_columns
        if keys and not step.rekeyed:
            # the record's own key, passed through: a null key stays null (see the encoder)
            items.append("(" + " AND ".join(f"{_q(k.name)} IS NULL" for k in keys) + f") AS {NULL_KEY}")
        where = step.where_sql
        if step.kind is StepKind.TABLE_SELECT:
            match = f"COALESCE({guard(where)}, FALSE)" if where else "TRUE"
            conditions = []
            if self.drop_unmatched and where:
                items.append(f'"{TOMBSTONE}" AS {DELETE}')
                conditions.append(f'("{TOMBSTONE}" OR {match})')
            else:
                items.append(f'("{TOMBSTONE}" OR NOT {match}) AS {DELETE}')
            sql = f"SELECT {', '.join(items)} FROM input"
            keys = step.source.key_columns
            if keys:  # a table record without a key is dropped, as ksqlDB's table source does
                conditions.append("NOT (" + " AND ".join(f"{_q(k.name)} IS NULL" for k in keys) + ")")
            if conditions:
                sql += " WHERE " + " AND ".join(conditions)
            return sql
        if not step.source.null_values:
            sql = f"SELECT {', '.join(items)} FROM input"
            if where:
                sql += f" WHERE COALESCE({guard(where)}, FALSE)"
            return sql
        # A stream record without a value goes on as one without a value (ksqlDB's select
        # mapper returns null for null), keyed by the key expressions; a WHERE clause or a table
        # function drops it, as ksqlDB's filter and flat-map do.
        items.append(f'"{TOMBSTONE}" AS {DELETE}')
        conditions = [f"COALESCE({guard(where)}, FALSE)"] if where else []
        if where or step.multiplies_rows:
            conditions.append(f'NOT "{TOMBSTONE}"')
        sql = f"SELECT {', '.join(items)} FROM input"
        if conditions:
            sql += " WHERE " + " AND ".join(conditions)
        return sql

    def _with_timestamp_check(self, sql: str) -> str:
        # A timestamp from a column (the sink's TIMESTAMP property) that is missing or negative
        # drops the record, as ksqlDB's timestamp extractor does.
        if self.step.timestamp_sql == '"ROWTIME"':
            return sql
        return f"SELECT * FROM ({sql}) WHERE {TS} >= 0"

    def evaluate(self, batch: pa.Table, logger: str) -> Evaluated:
        try:
            return Evaluated(self._run(self.sql, batch), [])
        except duckdb.Error:
            return self._row_by_row(batch, logger)

    def _run(self, sql: str, batch: pa.Table) -> pa.Table:
        self.con.register("input", to_duckdb(batch))
        try:
            result = from_duckdb(self.con.sql(sql).to_arrow_table())
        finally:
            self.con.unregister("input")
        return result.cast(self._schema_for(result)) if result.schema != self._schema_for(result) else result

    def _schema_for(self, result: pa.Table) -> pa.Schema:
        """The result's Arrow schema in ksqlpy's types (DuckDB hands back e.g. microsecond
        timestamps where ksqlDB's TIMESTAMP is milliseconds)."""
        if self._schema is None:
            fields = [pa.field(c.name, sqltypes.to_arrow(c.type)) for c in self.step.columns]
            fields += [result.schema.field(i) for i in range(len(fields), result.num_columns)]
            self._schema = pa.schema(fields)
        return self._schema

    def _row_by_row(self, batch: pa.Table, logger: str) -> Evaluated:
        parts: list[pa.Table] = []
        errors: list[ProcessingError] = []
        for i in range(batch.num_rows):
            row = batch.slice(i, 1)
            try:
                parts.append(self._run(self.sql, row))
            except duckdb.Error as e:
                errors.append(
                    ProcessingError(
                        type=RECORD_PROCESSING_ERROR,
                        message=_clean(str(e)),
                        topic=self.step.source.topic,
                        partition=_get(batch, "ROWPARTITION", i),
                        offset=_get(batch, "ROWOFFSET", i),
                    )
                )
                # A row that multiplies (table functions) cannot be re-run under TRY: DuckDB
                # refuses TRY(unnest(...)). ksqlDB's table-function step drops such a record.
                if not self.step.multiplies_rows:
                    parts.append(self._run(self.safe_sql, row))
        result = pa.concat_tables(parts) if parts else self._run(self.sql, batch.slice(0, 0))
        return Evaluated(result, errors)


def _get(batch: pa.Table, name: str, i: int) -> int | None:
    return batch.column(name)[i].as_py() if name in batch.column_names else None


def _clean(message: str) -> str:
    return message.split("\n", 1)[0].removeprefix("Conversion Error: ").removeprefix("Invalid Input Error: ")


def _q(name: str) -> str:
    """The quoted DuckDB column of the ksqlDB column ``name`` (see :mod:`ksqlpy.runtime.relations`)."""
    return '"' + duckdb_name(name).replace('"', '""') + '"'



def deletes_of(result: pa.Table) -> pa.Array | None:
    if DELETE not in result.column_names:
        return None
    return pc.fill_null(result.column(DELETE), True).combine_chunks()
