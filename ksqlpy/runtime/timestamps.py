"""Record timestamps taken from a column (the TIMESTAMP and TIMESTAMP_FORMAT properties).

A STRING timestamp column is parsed with its Java pattern into epoch milliseconds; a value that
is missing or does not parse gives NULL, and the caller drops that record as ksqlDB does.
"""

from __future__ import annotations

import pyarrow as pa

from ksqlpy.planner.functions import javafmt


def parse_timestamps(values: pa.Array | pa.ChunkedArray, pattern: str) -> pa.Array:
    """Epoch milliseconds of each formatted timestamp (UTC unless the pattern has a zone)."""
    out: list[int | None] = []
    for text in values.to_pylist():
        if text is None:
            out.append(None)
            continue
        try:
            out.append(javafmt.parse_timestamp_millis(text, pattern, "UTC"))
        except (ValueError, OverflowError):
            out.append(None)
    return pa.array(out, pa.int64())
