"""What the server streams back for a push or pull query: rows as they arrive, then the end.

A :class:`StreamingQuery` wraps a running push query (rows from its buffer), a pull query's
answer (rows already known) or a PRINT; the server drains it into its HTTP response.
"""

from __future__ import annotations

from typing import Any

from ksqlpy.errors import KsqlpyError
from ksqlpy.runtime.query import PushQuery
from ksqlpy.runtime.rows import Row


class StreamingQuery:
    """A push or pull query as the server streams it (see ENGINE facade docs)."""

    def __init__(
        self,
        engine: Any,
        query_id: str,
        columns: tuple[Any, ...],
        *,
        runner: PushQuery | None = None,
        rows: list[Row] | None = None,
        key_columns: tuple[str, ...] = (),
        header_columns: tuple[tuple[str, str | None], ...] = (),
        is_pull: bool = False,
        is_print: bool = False,
        table_pull: bool = False,
    ) -> None:
        self.engine = engine
        self.query_id = query_id
        #: a pull query answered from materialized tables (its response has no final message)
        self.table_pull = table_pull
        self.columns = columns
        self.key_columns = key_columns
        #: columns a pull ``SELECT *`` reads from record headers, with their header keys: its
        #: schema lists them apart (see ``ksqlpy.server.entities.schema_text``)
        self.header_columns = header_columns
        self.is_pull = is_pull
        self.is_print = is_print
        self._runner = runner
        self._rows = list(rows or [])
        self._closed = False

    # rows ------------------------------------------------------------------

    def drain(self) -> list[Row]:
        if self._runner is None:
            out, self._rows = self._rows, []
            return out
        with self._runner.cond:
            out = list(self._runner.buffer)
            self._runner.buffer.clear()
            self._runner.cond.notify_all()  # a query waiting for room in its buffer goes on
        drained = getattr(self._runner, "drained", None)  # a PRINT's runner has none
        if out and drained is not None:
            drained()  # a hub that left the query out for want of room reads for it
        return out

    def poll(self, timeout: float) -> list[Row]:
        if self._runner is not None:
            with self._runner.cond:
                if not self._runner.buffer and not self._runner.ended:
                    self._runner.cond.wait(timeout)
        return self.drain()

    def set_listener(self, callback: Any) -> None:
        if self._runner is not None:
            self._runner.listener = callback
        callback()

    @property
    def done(self) -> bool:
        if self._runner is None:
            return not self._rows
        with self._runner.cond:
            return self._runner.ended and not self._runner.buffer

    @property
    def records_read(self) -> int:
        """Source records the query has read (it stops reading while its client is behind)."""
        return self._runner.records_in if self._runner is not None else 0

    @property
    def end_reason(self) -> str | None:
        if self._runner is None:
            return "COMPLETED"
        return self._runner.end_reason

    @property
    def error(self) -> KsqlpyError | None:
        return self._runner.error if self._runner is not None else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.engine.transient.pop(self.query_id, None)
        if self._runner is not None:
            if self._runner.end_reason is None:
                self._runner.end_reason = "COMPLETED"
            self._runner.stop()

    def __iter__(self) -> Any:
        while True:
            rows = self.poll(0.2)
            yield from rows
            if self.done:
                return
