"""Partial datetime strings as ksqlDB reads them in comparisons with time columns.

``'2020-02-23T23:45'`` means 2020-02-23T23:45:00.000: missing trailing parts take their lowest
value (month and day 1, time 0). An optional zone suffix (``Z``, ``+01:00``, ``-0100``) shifts
the instant; without one the string is UTC. Like Java's lenient parsing, hour 24 is midnight of
the next day.
"""

from __future__ import annotations

import datetime as dt
import re

from ksqlpy.errors import AnalysisError

_FORMAT = re.compile(
    r"(?P<stamp>\d{4}(?:-\d\d(?:-\d\d(?:T\d\d(?::\d\d(?::\d\d(?:\.\d{1,3})?)?)?)?)?)?)"
    r"(?P<zone>Z|[+-]\d\d(?::?\d\d)?)?"
)
_TEMPLATE = "0000-01-01T00:00:00.000"
_EPOCH = dt.datetime(1970, 1, 1)


def parse_partial_timestamp(text: str) -> int:
    """Epoch milliseconds of a (partial) ``yyyy-MM-dd'T'HH:mm:ss.SSS`` string with optional zone."""
    m = _FORMAT.fullmatch(text.strip())
    if m is None:
        raise AnalysisError(
            f"Failed to parse timestamp '{text}': expected yyyy-MM-dd'T'HH:mm:ss.SSS, optionally "
            "partial and with a time zone such as Z or +01:00"
        )
    stamp = m.group("stamp")
    full = stamp + _TEMPLATE[len(stamp) :]
    if len(full) < len(_TEMPLATE):  # fewer than 3 millisecond digits given
        full = full.ljust(len(_TEMPLATE), "0")
    try:
        day = dt.datetime(int(full[0:4]), int(full[5:7]), int(full[8:10]))
    except ValueError as e:
        raise AnalysisError(f"Failed to parse timestamp '{text}': {e}") from e
    at = day + dt.timedelta(
        hours=int(full[11:13]), minutes=int(full[14:16]), seconds=int(full[17:19]), milliseconds=int(full[20:23])
    )
    zone = m.group("zone")
    if zone and zone != "Z":
        digits = zone[1:].replace(":", "")
        offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        at -= offset if zone[0] == "+" else -offset
    return (at - _EPOCH) // dt.timedelta(milliseconds=1)
