"""ksqlDB's date, time and timestamp functions.

Values: DATE is a DuckDB DATE (days since the epoch in ksqlDB), TIME a DuckDB TIME (ms after
midnight), TIMESTAMP a DuckDB TIMESTAMP read as UTC (epoch milliseconds in ksqlDB); the deprecated
functions work on BIGINT epoch milliseconds and INT epoch days instead.

Arithmetic (DATEADD, TIMESTAMPADD, UNIX_TIMESTAMP, FROM_DAYS, ...) compiles to DuckDB SQL.
Formatting and parsing follow Java's ``DateTimeFormatter``/``SimpleDateFormat`` patterns through
:mod:`ksqlpy.planner.functions.javafmt` in row-wise Python UDFs (patterns are cached); a value
that does not parse, or an unknown zone, gives NULL as ksqlDB does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlglot import exp

from ksqlpy.errors import AnalysisError
from ksqlpy.planner.functions import javafmt
from ksqlpy.planner.functions.misc import fn, sql, udf
from ksqlpy.planner.functions.registry import (
    REGISTRY,
    Call,
    Category,
    CompileRule,
    ScalarFunction,
    Variant,
    sql_template,
)

D = Category.DATE_TIME
_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DATE = dt.date(1970, 1, 1)


def _register(name: str, description: str, *variants: Variant) -> None:
    REGISTRY.register(ScalarFunction(name=name, category=D, description=description, variants=variants))


# ---------------------------------------------------------------------------------------------
# Epoch conversions

_register("unix_timestamp", "Gets the Unix timestamp in milliseconds, of now or of the given TIMESTAMP.",
          Variant("", returns="BIGINT", compile=sql_template("epoch_ms(get_current_timestamp())")),
          Variant("timestamp TIMESTAMP", returns="BIGINT", compile=sql_template("epoch_ms(CAST({0} AS TIMESTAMP))")))
_register("unix_date", "Gets the number of days since 1970-01-01, of today or of the given DATE.",
          Variant("", returns="INT", compile=sql_template("CAST(current_date - DATE '1970-01-01' AS INTEGER)")),
          Variant("date DATE", returns="INT", compile=sql_template("CAST({0} - DATE '1970-01-01' AS INTEGER)")))
_register("from_unixtime", "Converts milliseconds since the epoch into a TIMESTAMP.",
          Variant("milliseconds BIGINT", returns="TIMESTAMP", compile=sql_template("epoch_ms({0})")))
_register("from_days", "Converts a number of days since the epoch into a DATE.",
          Variant("days INT", returns="DATE", compile=sql_template("CAST(DATE '1970-01-01' + {0} AS DATE)")))

# ---------------------------------------------------------------------------------------------
# DATEADD, DATESUB, TIMEADD, TIMESUB, TIMESTAMPADD, TIMESTAMPSUB

# java.util.concurrent.TimeUnit, which ksqlDB's interval units are.
_UNIT_MS: dict[str, float] = {
    "NANOSECONDS": 1e-6, "MICROSECONDS": 1e-3, "MILLISECONDS": 1, "SECONDS": 1000, "MINUTES": 60_000,
    "HOURS": 3_600_000, "DAYS": 86_400_000,
}


def _unit_ms(call: Call) -> float:
    unit = (call.args[0].unit or "").upper()
    if unit not in _UNIT_MS:
        raise AnalysisError(f"Unknown time unit: {unit}")
    return _UNIT_MS[unit]


def _delta_us(call: Call, sign: int) -> str:
    """The interval in microseconds, as SQL (a NULL interval gives NULL)."""
    micros = _unit_ms(call) * 1000 * sign
    factor = int(micros) if micros == int(micros) else micros
    return f"CAST(CAST({call.sql[1].sql('duckdb')} AS BIGINT) * {factor} AS BIGINT)"


def _timestamp_shift(sign: int) -> CompileRule:
    def compile_call(call: Call) -> exp.Expression:
        return sql(
            f"make_timestamp(epoch_us(CAST({call.sql[2].sql('duckdb')} AS TIMESTAMP)) + {_delta_us(call, sign)})")

    return compile_call


def _date_shift(sign: int) -> CompileRule:
    # ksqlDB adds the interval to the date's epoch millis and truncates back to whole days.
    def compile_call(call: Call) -> exp.Expression:
        date = call.sql[2].sql("duckdb")
        micros = f"(CAST({date} - DATE '1970-01-01' AS BIGINT) * 86400000000 + {_delta_us(call, sign)})"
        return sql(f"CAST(DATE '1970-01-01' + CAST(trunc({micros} / 86400000000) AS INTEGER) AS DATE)")

    return compile_call


def _time_shift(sign: int) -> CompileRule:
    # TIME arithmetic wraps around midnight.
    def compile_call(call: Call) -> exp.Expression:
        time = call.sql[2].sql("duckdb")
        micros = f"((epoch_us(DATE '1970-01-01' + CAST({time} AS TIME)) + {_delta_us(call, sign)}) % 86400000000 + 86400000000) % 86400000000"
        return sql(f"CAST(make_timestamp({micros}) AS TIME)")

    return compile_call


for _name, _sign in (("add", 1), ("sub", -1)):
    _verb = "Adds an interval to" if _sign > 0 else "Subtracts an interval from"
    _register(f"date{_name}", f"{_verb} a date.",
              Variant("unit INTERVALUNIT, interval INT, date DATE", returns="DATE", compile=_date_shift(_sign)))
    _register(f"time{_name}", f"{_verb} a time.",
              Variant("unit INTERVALUNIT, interval INT, time TIME", returns="TIME", compile=_time_shift(_sign)))
    _register(f"timestamp{_name}", f"{_verb} a timestamp.",
              Variant("unit INTERVALUNIT, interval INT, timestamp TIMESTAMP", returns="TIMESTAMP",
                      compile=_timestamp_shift(_sign)))

# ---------------------------------------------------------------------------------------------
# Formatting and parsing with Java patterns


def _zoned(value: dt.datetime, zone: str) -> dt.datetime:
    return value.replace(tzinfo=_UTC).astimezone(javafmt.zone_of(zone))


def _format_timestamp(value: dt.datetime, pattern: str, zone: str = "UTC") -> str:
    return javafmt.format_value(pattern, _zoned(value, zone))


def _millis_to_string(millis: int, pattern: str, zone: str = "UTC") -> str:
    value = _EPOCH + dt.timedelta(milliseconds=millis)
    return javafmt.format_value(pattern, _zoned(value, zone))


def _parse_timestamp(text: str, pattern: str, zone: str = "UTC") -> dt.datetime:
    millis = javafmt.parse_timestamp_millis(text, pattern, zone)
    return _EPOCH + dt.timedelta(milliseconds=millis)


def _string_to_millis(text: str, pattern: str, zone: str = "UTC") -> int:
    return javafmt.parse_timestamp_millis(text, pattern, zone)


def _format_date(value: dt.date, pattern: str) -> str:
    return javafmt.format_value(pattern, value)


def _days_to_string(days: int, pattern: str) -> str:
    return javafmt.format_value(pattern, _EPOCH_DATE + dt.timedelta(days=days))


def _parse_date(text: str, pattern: str) -> dt.date:
    return _EPOCH_DATE + dt.timedelta(days=javafmt.parse_date_days(text, pattern))


def _format_time(value: dt.time, pattern: str) -> str:
    return javafmt.format_value(pattern, value)


def _parse_time(text: str, pattern: str) -> dt.time:
    millis = javafmt.parse_time_millis(text, pattern)
    return (_EPOCH + dt.timedelta(milliseconds=millis)).time()


def _convert_tz(value: dt.datetime, from_zone: str, to_zone: str) -> dt.datetime:
    # ksqlDB shifts the instant by the difference of the two zones' offsets at that instant.
    instant = value.replace(tzinfo=_UTC)
    offset = instant.astimezone(javafmt.zone_of(to_zone)).utcoffset() or dt.timedelta(0)
    offset -= instant.astimezone(javafmt.zone_of(from_zone)).utcoffset() or dt.timedelta(0)
    return value + offset


def _v(params: str, returns: str, name: str, duck_params: tuple[str, ...], duck_returns: str, func: Any) -> Variant:
    return Variant(params, returns=returns, compile=udf(name, duck_params, duck_returns, func))


# Formatting instants in DuckDB: a constant pattern whose every field has a ``strftime`` form, in a
# zone of one fixed offset, formats a whole column at once; other patterns and zones, and instants
# outside years 1-9999 (which Java pads and signs its own way), go through the row-wise UDF.

#: (letter, count) -> DuckDB strftime, for the fields whose text strftime gives exactly (Locale.US)
_STRFTIME: dict[tuple[str, int], str] = {
    ("y", 2): "%y", ("y", 4): "%Y", ("u", 2): "%y", ("u", 4): "%Y",
    ("M", 1): "%-m", ("M", 2): "%m", ("M", 3): "%b", ("M", 4): "%B",
    ("L", 1): "%-m", ("L", 2): "%m", ("L", 3): "%b", ("L", 4): "%B",
    ("d", 1): "%-d", ("d", 2): "%d", ("D", 1): "%-j", ("D", 3): "%j",
    ("E", 1): "%a", ("E", 2): "%a", ("E", 3): "%a", ("E", 4): "%A",
    ("a", 1): "%p", ("h", 1): "%-I", ("h", 2): "%I", ("H", 1): "%-H", ("H", 2): "%H",
    ("m", 1): "%-M", ("m", 2): "%M", ("s", 1): "%-S", ("s", 2): "%S",
    ("S", 3): "%g", ("S", 6): "%f", ("S", 9): "%n",
}
#: letters whose text depends only on the zone: constant in a zone of one fixed offset
_ZONE_LETTERS = frozenset("VvzOXxZ")
#: the instants (epoch ms, in the zone's local time) of years 1 to 9999
_FIRST_YEAR_MS = int((dt.datetime(1, 1, 1) - _EPOCH).total_seconds()) * 1000
_PAST_LAST_YEAR_MS = int((dt.datetime(9999, 12, 31) - _EPOCH).total_seconds() + 86_400) * 1000


def _fixed_offset_ms(zone: str) -> int | None:
    """The offset of a zone that has one offset at every instant (UTC, ``+02:00``), in ms."""
    try:
        tz = javafmt.zone_of(zone)
    except javafmt.PatternError:
        return None
    if isinstance(tz, dt.timezone) or getattr(tz, "key", None) == "UTC":
        offset = tz.utcoffset(None) if isinstance(tz, dt.timezone) else dt.timedelta(0)
        assert offset is not None
        return int(offset.total_seconds() * 1000)
    return None


def strftime_of(pattern: str, zone: str) -> str | None:
    """DuckDB's ``strftime`` format that writes instants (of years 1-9999, in local time) as Java's
    ``pattern`` does in ``zone``; None when a field, or the zone, has no such form."""
    if _fixed_offset_ms(zone) is None:
        return None
    try:
        tokens = javafmt.compile_pattern(pattern).tokens
        sample = _zoned(_EPOCH, zone)
        out: list[str] = []
        for tok in tokens:
            if isinstance(tok, javafmt.Literal):
                out.append(tok.text.replace("%", "%%"))
            elif isinstance(tok, javafmt.FieldToken) and (tok.letter, tok.count) in _STRFTIME:
                out.append(_STRFTIME[(tok.letter, tok.count)])
            elif isinstance(tok, javafmt.FieldToken) and tok.letter in _ZONE_LETTERS:
                out.append(javafmt.format_value(tok.letter * tok.count, sample).replace("%", "%%"))
            else:
                return None
    except javafmt.PatternError:
        return None
    return "".join(out)


def _instant_format(rowwise: CompileRule, *, millis: bool) -> CompileRule:
    """TIMESTAMPTOSTRING (``millis``: epoch ms) or FORMAT_TIMESTAMP (a TIMESTAMP): in DuckDB's
    ``strftime`` when the pattern and zone are constants it can write (:func:`strftime_of`),
    else ``rowwise``, the UDF."""

    def compile_format(call: Call) -> exp.Expression:
        pattern = call.args[1].value
        zone = call.args[2].value if len(call.args) > 2 else "UTC"
        if not isinstance(pattern, str) or not isinstance(zone, str):
            return rowwise(call)
        fmt = strftime_of(pattern, zone)
        offset = _fixed_offset_ms(zone)
        if fmt is None or offset is None:
            return rowwise(call)
        value = call.args[0].sql.copy()
        # (a TIMESTAMP_MS column would otherwise be taken as TIMESTAMP_NS, out of range past 2262)
        local = value if millis else fn("epoch_ms", exp.cast(value, "TIMESTAMP"))
        if offset:
            local = exp.Add(this=local, expression=exp.Literal.number(offset))
        return exp.Case(
            ifs=[
                exp.If(this=exp.Is(this=local.copy(), expression=exp.Null()), true=exp.Null()),
                exp.If(
                    this=exp.and_(
                        exp.GTE(this=local.copy(), expression=exp.Literal.number(_FIRST_YEAR_MS)),
                        exp.LT(this=local.copy(), expression=exp.Literal.number(_PAST_LAST_YEAR_MS)),
                    ),
                    true=fn("strftime", fn("epoch_ms", local.copy()), exp.Literal.string(fmt)),
                ),
            ],
            default=rowwise(call),
        )

    return compile_format


def _f(params: str, name: str, duck_params: tuple[str, ...], func: Any, *, millis: bool) -> Variant:
    rowwise = udf(name, duck_params, "VARCHAR", func)
    return Variant(params, returns="STRING", compile=_instant_format(rowwise, millis=millis))


_V2, _V3 = ("VARCHAR",) * 2, ("VARCHAR",) * 3

_register(
    "format_timestamp",
    "Converts a TIMESTAMP value into the string representation of the timestamp in the given format "
    "(java.time.format.DateTimeFormatter), in UTC or the given time zone.",
    _f("timestamp TIMESTAMP, formatPattern STRING", "ksql_format_timestamp2",
       ("TIMESTAMP", "VARCHAR"), _format_timestamp, millis=False),
    _f("timestamp TIMESTAMP, formatPattern STRING, timeZone STRING", "ksql_format_timestamp3",
       ("TIMESTAMP",) + _V2, _format_timestamp, millis=False),
)
_register(
    "timestamptostring",
    "Converts a number of milliseconds since 1970-01-01 00:00:00 UTC/GMT into the string representation "
    "of the timestamp in the given format.",
    _f("epochMilli BIGINT, formatPattern STRING", "ksql_timestamptostring2",
       ("BIGINT", "VARCHAR"), _millis_to_string, millis=True),
    _f("epochMilli BIGINT, formatPattern STRING, timeZone STRING", "ksql_timestamptostring3",
       ("BIGINT",) + _V2, _millis_to_string, millis=True),
)
_register(
    "parse_timestamp",
    "Converts a string representation of a date in the given format into the TIMESTAMP value, in UTC "
    "or the given time zone.",
    _v("formattedTimestamp STRING, formatPattern STRING", "TIMESTAMP", "ksql_parse_timestamp2",
       _V2, "TIMESTAMP", _parse_timestamp),
    _v("formattedTimestamp STRING, formatPattern STRING, timeZone STRING", "TIMESTAMP", "ksql_parse_timestamp3",
       _V3, "TIMESTAMP", _parse_timestamp),
)
_register(
    "stringtotimestamp",
    "Converts a string value in the given format into the BIGINT value that represents the millisecond "
    "timestamp.",
    _v("formattedTimestamp STRING, formatPattern STRING", "BIGINT", "ksql_stringtotimestamp2",
       _V2, "BIGINT", _string_to_millis),
    _v("formattedTimestamp STRING, formatPattern STRING, timeZone STRING", "BIGINT", "ksql_stringtotimestamp3",
       _V3, "BIGINT", _string_to_millis),
)
_register("format_date", "Converts a DATE value into a string in the given format.",
          _v("date DATE, formatPattern STRING", "STRING", "ksql_format_date", ("DATE", "VARCHAR"), "VARCHAR",
             _format_date))
_register("datetostring", "Converts an INT number of days since 1970-01-01 to a date string in the given format.",
          _v("epochDays INT, formatPattern STRING", "STRING", "ksql_datetostring", ("INTEGER", "VARCHAR"),
             "VARCHAR", _days_to_string))
_register("parse_date", "Converts a string representation of a date in the given format into a DATE value.",
          _v("formattedDate STRING, formatPattern STRING", "DATE", "ksql_parse_date", _V2, "DATE", _parse_date))
_register("stringtodate", "Converts a string representation of a date in the given format into an INT number "
          "of days since 1970-01-01.",
          _v("formattedDate STRING, formatPattern STRING", "INT", "ksql_stringtodate", _V2, "INTEGER",
             lambda text, pattern: javafmt.parse_date_days(text, pattern)))
_register("format_time", "Converts a TIME value into a string in the given format.",
          _v("time TIME, formatPattern STRING", "STRING", "ksql_format_time", ("TIME", "VARCHAR"), "VARCHAR",
             _format_time))
_register("parse_time", "Converts a string representation of a time in the given format into a TIME value.",
          _v("formattedTime STRING, formatPattern STRING", "TIME", "ksql_parse_time", _V2, "TIME", _parse_time))
_register("convert_tz", "Converts a TIMESTAMP value from one time zone to another.",
          _v("timestamp TIMESTAMP, fromTimeZone STRING, toTimeZone STRING", "TIMESTAMP", "ksql_convert_tz",
             ("TIMESTAMP",) + _V2, "TIMESTAMP", _convert_tz))

