"""Pull queries: a SELECT without EMIT, answered from what exists now and then finished.

Over a stream, a pull query is a bounded read: every record from the beginning of the topic up to
the end offsets at the time the query starts. Pull queries over tables read materialized state,
which arrives with table materialization; until then they are refused with a clear message.
"""

from __future__ import annotations

import time
from typing import Any

from ksqlpy import sqltypes
from ksqlpy.errors import AnalysisError
from ksqlpy.parser import ast
from ksqlpy.planner.catalog import Source
from ksqlpy.planner.physical import QueryPlan, SelectStep
from ksqlpy.runtime.query import PushQuery


def start_pull(session: Any, stmt: ast.QueryStatement, source: Source, step: SelectStep) -> Any:
    from ksqlpy.runtime.engine import StreamingQuery

    engine = session.engine
    if source.is_table:
        raise AnalysisError(
            f"The `{source.name}` table isn't queryable. To derive a queryable table, you can do "
            f"'CREATE TABLE QUERYABLE_{source.name} AS SELECT * FROM {source.name}'. "
            "See https://cnfl.io/queries for more info.\n"
            "Add EMIT CHANGES if you intended to issue a push query.",
            pos=stmt.pos,
        )
    query_id = f"query_{int(time.time() * 1000)}"
    plan = QueryPlan(query_id=query_id, step=step, sink=None, limit=stmt.query.limit, statement=stmt.text)
    runner = PushQuery(plan, engine.store, engine.plog, group=None, start="earliest")
    runner.stop_at = {p: end for p, end in engine.store.end_offsets(source.topic).items() if end > 0}
    columns = tuple(sqltypes.Field(c.name, c.type) for c in step.columns)
    sq = StreamingQuery(engine, query_id, columns, runner=runner, is_pull=True)
    engine.transient[query_id] = sq
    runner.start()
    return sq
