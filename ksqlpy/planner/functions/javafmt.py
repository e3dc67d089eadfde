"""Java date/time patterns (``DateTimeFormatter`` / ``SimpleDateFormat``) for ksqlDB's date functions.

ksqlDB's FORMAT_*/PARSE_* functions take Java patterns such as ``'yyyy-MM-dd''T''HH:mm:ss.SSSX'``.
This module tokenizes such a pattern once (cached), then formats Python ``date``/``time``/aware
``datetime`` values and parses strings into fields the way ``java.time`` does with ``Locale.US``:

* letters are fields, their count picks the style (``M`` 1, ``MM`` 01, ``MMM`` Jan, ``MMMM`` January);
* ``'text'`` is a literal, ``''`` a quote; ``[...]`` is an optional section;
* parsing is case-insensitive and numeric fields next to each other share digits by width
  (``yyyyMMdd``), as ``DateTimeFormatterBuilder`` does in adjacent-value mode.

Time zones are resolved with :func:`zone_of` (``ZoneId.of`` rules: region ids, ``UTC``/``GMT``/``Z``,
offsets ``+02:00``/``+0200``/``+2``, prefixed offsets ``UTC+01:00``). Errors raise :class:`PatternError`
with the message ``java.time`` would give; the function layer turns them into NULL results, which is
what ksqlDB emits (plus a processing-log entry) when a UDF throws.

Imports nothing from ksqlpy outside this package, so it can be unit-tested on its own.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "ParsedFields",
    "Pattern",
    "PatternError",
    "compile_pattern",
    "format_value",
    "parse_date_days",
    "parse_time_millis",
    "parse_timestamp_millis",
    "zone_of",
]


class PatternError(ValueError):
    """A pattern is invalid, a value does not fit it, or a zone id is unknown."""


# ---------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True, slots=True)
class Literal:
    text: str


@dataclass(frozen=True, slots=True)
class FieldToken:
    letter: str
    count: int


@dataclass(frozen=True, slots=True)
class Optional_:
    tokens: tuple[Token, ...]


Token = Literal | FieldToken | Optional_

# Letters java.time.format.DateTimeFormatter.ofPattern accepts.
_KNOWN_LETTERS = frozenset("GuyDMLdQqYwWEecFaBhKkHmsSAnNVvzOXxZp")
_RESERVED = frozenset("#{}")


@dataclass(frozen=True, slots=True)
class Pattern:
    """A tokenized Java pattern."""

    text: str
    tokens: tuple[Token, ...]

    def has_letter(self, letters: str) -> bool:
        return any(_walk_has(t, letters) for t in self.tokens)


def _walk_has(token: Token, letters: str) -> bool:
    match token:
        case FieldToken(letter=letter):
            return letter in letters
        case Optional_(tokens=inner):
            return any(_walk_has(t, letters) for t in inner)
    return False


@functools.lru_cache(maxsize=1024)
def compile_pattern(text: str) -> Pattern:
    """Tokenize a Java pattern (cached: patterns usually repeat across records)."""
    stack: list[list[Token]] = [[]]
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "'":
            end = i + 1
            buf: list[str] = []
            while True:
                if end >= n:
                    raise PatternError(f"Pattern ends with an incomplete string literal: {text}")
                if text[end] == "'":
                    if end + 1 < n and text[end + 1] == "'":
                        buf.append("'")
                        end += 2
                        continue
                    break
                buf.append(text[end])
                end += 1
            # '' outside a literal is a single quote
            stack[-1].append(Literal("'" if end == i + 1 else "".join(buf)))
            i = end + 1
        elif ch == "[":
            stack.append([])
            i += 1
        elif ch == "]":
            if len(stack) == 1:
                raise PatternError(f"Pattern invalid as it contains ] without previous [: {text}")
            inner = tuple(stack.pop())
            stack[-1].append(Optional_(inner))
            i += 1
        elif ch in _RESERVED:
            raise PatternError(f"Pattern includes reserved character: '{ch}'")
        elif ch.isascii() and ch.isalpha():
            j = i
            while j < n and text[j] == ch:
                j += 1
            if ch not in _KNOWN_LETTERS:
                raise PatternError(f"Unknown pattern letter: {ch}")
            count = j - i
            _check_count(ch, count)
            stack[-1].append(FieldToken(ch, count))
            i = j
        else:
            stack[-1].append(Literal(ch))
            i += 1
    while len(stack) > 1:  # java.time closes unterminated optional sections
        inner = tuple(stack.pop())
        stack[-1].append(Optional_(inner))
    return Pattern(text, tuple(stack[0]))


_MAX_COUNT = {"G": 5, "M": 5, "L": 5, "Q": 5, "q": 5, "E": 5, "e": 5, "c": 5, "d": 2, "h": 2,
              "K": 2, "k": 2, "H": 2, "m": 2, "s": 2, "D": 3, "a": 1, "V": 2, "z": 4, "O": 4,
              "X": 5, "x": 5, "Z": 5, "F": 1, "W": 1, "w": 2, "B": 5}


def _check_count(letter: str, count: int) -> None:
    limit = _MAX_COUNT.get(letter)
    if limit is not None and count > limit:
        raise PatternError(f"Too many pattern letters: {letter}")
    if letter == "V" and count != 2:
        raise PatternError("Pattern letter count must be 2: V")
    if letter == "O" and count not in (1, 4):
        raise PatternError("Pattern letter count must be 1 or 4: O")


# ---------------------------------------------------------------------------------------------
# Zones


_FIXED_OFFSET = re.compile(r"^([+-])(\d{1,2})(?::?(\d{2}))?(?::?(\d{2}))?$")


def _offset(sign: str, hh: str, mm: str | None, ss: str | None) -> dt.timezone:
    hours, minutes, seconds = int(hh), int(mm or 0), int(ss or 0)
    if hours > 18 or minutes > 59 or seconds > 59:
        raise PatternError(f"Zone offset not in valid range: {sign}{hh}")
    delta = dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)
    return dt.timezone(-delta if sign == "-" else delta)


@functools.lru_cache(maxsize=512)
def zone_of(zone_id: str) -> dt.tzinfo:
    """``ZoneId.of`` for Python: region ids, ``Z``/``UTC``/``GMT``/``UT``, fixed and prefixed offsets."""
    if zone_id in ("Z", "UTC", "GMT", "UT", "Etc/UTC", "Etc/GMT"):
        return ZoneInfo("UTC") if zone_id != "Z" else dt.UTC
    m = _FIXED_OFFSET.match(zone_id)
    if m:
        return _offset(*m.groups())
    for prefix in ("UTC", "GMT", "UT"):
        if zone_id.startswith(prefix) and zone_id[len(prefix):][:1] in ("+", "-"):
            m = _FIXED_OFFSET.match(zone_id[len(prefix):])
            if m:
                return _offset(*m.groups())
            raise PatternError(f"Invalid ID for offset-based ZoneId: {zone_id}")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9~/._+-]+", zone_id):
        raise PatternError(f"Invalid ID for region-based ZoneId, invalid format: {zone_id}")
    try:
        return ZoneInfo(zone_id)
    except (ZoneInfoNotFoundError, ValueError):
        raise PatternError(f"Unknown time-zone ID: {zone_id}") from None


def _zone_name(tz: dt.tzinfo, value: dt.datetime, full: bool) -> str:
    """What ``z`` prints: the short (``PDT``) or, for ``zzzz``, the id-ish name of the zone."""
    if isinstance(tz, dt.timezone):
        off = tz.utcoffset(None)
        return "Z" if off == dt.timedelta(0) and tz is dt.UTC else _iso_offset(off, colon=True, z=False)
    name = value.tzname() or ""
    if full:
        return _FULL_ZONE_NAMES.get(name, name)
    return name


_FULL_ZONE_NAMES = {
    "UTC": "Coordinated Universal Time",
    "GMT": "Greenwich Mean Time",
    "BST": "British Summer Time",
    "PST": "Pacific Standard Time",
    "PDT": "Pacific Daylight Time",
    "MST": "Mountain Standard Time",
    "MDT": "Mountain Daylight Time",
    "CST": "Central Standard Time",
    "CDT": "Central Daylight Time",
    "EST": "Eastern Standard Time",
    "EDT": "Eastern Daylight Time",
    "CET": "Central European Standard Time",
    "CEST": "Central European Summer Time",
}

# Abbreviations the ``z`` parser recognises (java.time's US-locale short names).
_ZONE_ABBREVIATIONS: dict[str, str] = {
    "UTC": "UTC", "GMT": "GMT", "Z": "UTC", "UT": "UTC",
    "PST": "America/Los_Angeles", "PDT": "America/Los_Angeles",
    "MST": "America/Denver", "MDT": "America/Denver",
    "CST": "America/Chicago", "CDT": "America/Chicago",
    "EST": "America/New_York", "EDT": "America/New_York",
    "BST": "Europe/London", "CET": "Europe/Paris", "CEST": "Europe/Paris",
    "IST": "Asia/Kolkata", "JST": "Asia/Tokyo", "AEST": "Australia/Sydney",
}


def _iso_offset(off: dt.timedelta | None, *, colon: bool, z: bool, seconds: bool = False,
                minutes_optional: bool = False) -> str:
    total = int((off or dt.timedelta(0)).total_seconds())
    if total == 0 and z:
        return "Z"
    sign = "-" if total < 0 else "+"
    total = abs(total)
    hh, rem = divmod(total, 3600)
    mm, ss = divmod(rem, 60)
    sep = ":" if colon else ""
    out = f"{sign}{hh:02d}"
    if not (minutes_optional and mm == 0 and ss == 0):
        out += f"{sep}{mm:02d}"
    if ss or seconds:
        if ss or not minutes_optional:
            out += f"{sep}{ss:02d}"
    return out


# ---------------------------------------------------------------------------------------------
# Formatting

_MONTHS = tuple(calendar.month_name[1:])
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class UnsupportedField(PatternError):
    pass


def _need(value: object, kind: type | tuple[type, ...], letter: str, field: str) -> None:
    if not isinstance(value, kind):
        raise UnsupportedField(f"Unsupported field: {field}")


def _pad(number: int, count: int) -> str:
    text = str(abs(number)).rjust(count, "0")
    return ("-" + text) if number < 0 else text


def _text(full: str, count: int, short_len: int = 3) -> str:
    if count == 4:
        return full
    if count == 5:
        return full[0]
    return full[:short_len]


_DATE_FIELD = {"G": "Era", "u": "Year", "y": "YearOfEra", "D": "DayOfYear", "M": "MonthOfYear",
               "L": "MonthOfYear", "d": "DayOfMonth", "Q": "QuarterOfYear", "q": "QuarterOfYear",
               "E": "DayOfWeek", "e": "DayOfWeek", "c": "DayOfWeek", "Y": "WeekBasedYear",
               "w": "WeekOfWeekBasedYear", "W": "WeekOfMonth", "F": "AlignedWeekOfMonth"}
_TIME_FIELD = {"a": "AmPmOfDay", "h": "ClockHourOfAmPm", "K": "HourOfAmPm", "k": "ClockHourOfDay",
               "H": "HourOfDay", "m": "MinuteOfHour", "s": "SecondOfMinute", "S": "NanoOfSecond",
               "A": "MilliOfDay", "n": "NanoOfSecond", "N": "NanoOfDay", "B": "DayPeriod"}


def _us_week_fields(day: dt.date) -> tuple[int, int]:
    """(week-based-year, week-of-week-based-year) with US rules: weeks start on Sunday, 1 min day."""
    def week_one_start(year: int) -> dt.date:
        jan1 = dt.date(year, 1, 1)
        return jan1 - dt.timedelta(days=(jan1.weekday() + 1) % 7)

    year = day.year
    if day >= week_one_start(year + 1):
        year += 1
    return year, (day - week_one_start(year)).days // 7 + 1


def _format_field(tok: FieldToken, value: dt.date | dt.time | dt.datetime) -> str:
    letter, count = tok.letter, tok.count
    if letter in _DATE_FIELD:
        _need(value, dt.date, letter, _DATE_FIELD[letter])
        assert isinstance(value, dt.date)
        day = value.date() if isinstance(value, dt.datetime) else value
        match letter:
            case "G":
                return {4: "Anno Domini", 5: "A"}.get(count, "AD")
            case "u" | "y":
                if count == 2:
                    return f"{day.year % 100:02d}"
                return _pad(day.year, count)
            case "Y":
                year = _us_week_fields(day)[0]
                return f"{year % 100:02d}" if count == 2 else _pad(year, count)
            case "M" | "L":
                if count >= 3:
                    return _text(_MONTHS[day.month - 1], count)
                return _pad(day.month, count)
            case "d":
                return _pad(day.day, count)
            case "D":
                return _pad(day.timetuple().tm_yday, count)
            case "Q" | "q":
                quarter = (day.month - 1) // 3 + 1
                return {3: f"Q{quarter}", 4: f"{('1st', '2nd', '3rd', '4th')[quarter - 1]} quarter",
                        5: str(quarter)}.get(count, _pad(quarter, count))
            case "E":
                return _text(_DAYS[day.weekday()], count)
            case "e" | "c":
                if count <= 2:
                    return _pad((day.weekday() + 1) % 7 + 1, count)
                return _text(_DAYS[day.weekday()], count)
            case "w":
                return _pad(_us_week_fields(day)[1], count)
            case "W":
                first = day.replace(day=1)
                return str((day.day + (first.weekday() + 1) % 7 - 1) // 7 + 1)
            case "F":
                return str((day.day - 1) // 7 + 1)
    if letter in _TIME_FIELD:
        _need(value, (dt.time, dt.datetime), letter, _TIME_FIELD[letter])
        t = value.time() if isinstance(value, dt.datetime) else value
        assert isinstance(t, dt.time)
        nanos = t.microsecond * 1000
        match letter:
            case "a":
                return "AM" if t.hour < 12 else "PM"
            case "B":
                return "in the morning" if 6 <= t.hour < 12 else "in the afternoon" if 12 <= t.hour < 18 \
                    else "in the evening" if 18 <= t.hour < 21 else "at night"
            case "h":
                return _pad((t.hour % 12) or 12, count)
            case "K":
                return _pad(t.hour % 12, count)
            case "k":
                return _pad(t.hour or 24, count)
            case "H":
                return _pad(t.hour, count)
            case "m":
                return _pad(t.minute, count)
            case "s":
                return _pad(t.second, count)
            case "S":
                return f"{nanos:09d}"[:count] if count <= 9 else f"{nanos:09d}".ljust(count, "0")
            case "n":
                return _pad(nanos, count)
            case "A":
                return _pad(((t.hour * 60 + t.minute) * 60 + t.second) * 1000 + nanos // 1_000_000, count)
            case "N":
                return _pad(((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000_000 + nanos, count)
    # zone letters need a zoned value
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise UnsupportedField("Unable to extract ZoneId from temporal " + str(value))
    off = value.utcoffset()
    match letter:
        case "V":
            tz = value.tzinfo
            return getattr(tz, "key", None) or _zone_name(tz, value, False)
        case "v":
            return getattr(value.tzinfo, "key", None) or _zone_name(value.tzinfo, value, False)
        case "z":
            return _zone_name(value.tzinfo, value, count == 4)
        case "O":
            if not off:
                return "GMT"
            if count == 4:
                return "GMT" + _iso_offset(off, colon=True, z=False)
            total = int(off.total_seconds())
            hh, rem = divmod(abs(total), 3600)
            sign = "-" if total < 0 else "+"
            return f"GMT{sign}{hh}" + (f":{rem // 60:02d}" if rem else "")
        case "X" | "x":
            z = letter == "X"
            match count:
                case 1:
                    return _iso_offset(off, colon=False, z=z, minutes_optional=True)
                case 2:
                    return _iso_offset(off, colon=False, z=z)
                case 3:
                    return _iso_offset(off, colon=True, z=z)
                case 4:
                    return _iso_offset(off, colon=False, z=z, seconds=False)
                case _:
                    return _iso_offset(off, colon=True, z=z)
        case "Z":
            if count <= 3:
                return _iso_offset(off, colon=False, z=False)
            if count == 4:
                return "GMT" if not off else "GMT" + _iso_offset(off, colon=True, z=False)
            return _iso_offset(off, colon=True, z=True)
    raise PatternError(f"Unknown pattern letter: {letter}")


def _format_tokens(tokens: tuple[Token, ...], value: dt.date | dt.time | dt.datetime) -> str:
    out: list[str] = []
    for tok in tokens:
        match tok:
            case Literal(text=text):
                out.append(text)
            case FieldToken():
                out.append(_format_field(tok, value))
            case Optional_(tokens=inner):
                try:
                    out.append(_format_tokens(inner, value))
                except UnsupportedField:
                    pass  # an optional section prints only when all of its fields are available
    return "".join(out)


def format_value(pattern: str, value: dt.date | dt.time | dt.datetime) -> str:
    """Format a LocalDate (``date``), LocalTime (``time``) or ZonedDateTime (aware ``datetime``)."""
    return _format_tokens(compile_pattern(pattern).tokens, value)


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass(slots=True)
class ParsedFields:
    """Fields a parse found; ``None`` where the pattern had no such field."""

    year: int | None = None
    year_of_era_2: bool = False
    month: int | None = None
    day: int | None = None
    day_of_year: int | None = None
    hour: int | None = None
    hour_ampm: int | None = None
    pm: bool | None = None
    minute: int | None = None
    second: int | None = None
    nano: int | None = None
    milli_of_day: int | None = None
    zone: dt.tzinfo | None = None

    def has_date(self) -> bool:
        return self.year is not None or self.month is not None or self.day is not None \
            or self.day_of_year is not None

    def has_time(self) -> bool:
        return any(v is not None for v in (self.hour, self.hour_ampm, self.pm, self.minute,
                                            self.second, self.nano, self.milli_of_day))


_MONTH_LOOKUP = {name.lower(): i + 1 for i, name in enumerate(_MONTHS)} | {
    name[:3].lower(): i + 1 for i, name in enumerate(_MONTHS)}
_DAY_LOOKUP = {name.lower(): i for i, name in enumerate(_DAYS)} | {
    name[:3].lower(): i for i, name in enumerate(_DAYS)}

_Setter = tuple[str, str]  # (regex, field kind)


def _numeric_regex(count: int, *, fixed: bool, max_width: int = 19) -> str:
    if fixed:
        return rf"(\d{{{count}}})"
    return rf"(\d{{{count},{max(count, max_width)}}})"


def _field_regex(tok: FieldToken, simple: bool) -> tuple[str, str]:
    """(regex with one group, kind) for a field; ``simple`` selects SimpleDateFormat parse rules."""
    letter, count = tok.letter, tok.count
    match letter:
        case "y" | "u" | "Y":
            if count == 2 and not simple:
                return r"(\d{2})", "year2"
            if simple and count <= 2:
                return r"([+-]?\d+)", "year_simple2"
            return r"([+-]?\d{" + str(max(count, 1) if count >= 4 else 1) + r",9})", "year"
        case "M" | "L":
            if count >= 4:
                return r"(" + "|".join(_MONTHS) + "|" + "|".join(m[:3] for m in _MONTHS) + ")", "month_text"
            if count == 3:
                return r"(" + "|".join(m[:3] for m in _MONTHS) + ")", "month_text"
            return _numeric_regex(count, fixed=count == 2 and not simple, max_width=2), "month"
        case "d":
            return _numeric_regex(count, fixed=count == 2 and not simple, max_width=2), "day"
        case "D":
            return _numeric_regex(count, fixed=count >= 2 and not simple, max_width=3), "day_of_year"
        case "H" | "k" | "K" | "h":
            kind = {"H": "hour", "k": "hour24", "K": "hour_ampm0", "h": "hour_ampm"}[letter]
            return _numeric_regex(count, fixed=count == 2 and not simple, max_width=2), kind
        case "m":
            return _numeric_regex(count, fixed=count == 2 and not simple, max_width=2), "minute"
        case "s":
            return _numeric_regex(count, fixed=count == 2 and not simple, max_width=2), "second"
        case "S":
            if simple:
                return r"(\d+)", "milli"
            return rf"(\d{{{count}}})", "fraction"
        case "n":
            return r"(\d+)", "nano"
        case "A":
            return r"(\d+)", "milli_of_day"
        case "a":
            return r"(AM|PM)", "ampm"
        case "E" | "e" | "c":
            return r"(" + "|".join(_DAYS) + "|" + "|".join(d[:3] for d in _DAYS) + r"|\d)", "day_of_week"
        case "G":
            return r"(AD|BC|Anno Domini|Before Christ|A|B)", "era"
        case "X" | "x" | "Z":
            return r"(Z|[+-]\d{2}(?::?\d{2}(?::?\d{2})?)?|GMT(?:[+-]\d{1,2}(?::?\d{2})?)?)", "offset"
        case "O":
            return r"(GMT(?:[+-]\d{1,2}(?::?\d{2})?)?)", "offset"
        case "z" | "V" | "v":
            return r"([A-Za-z][A-Za-z0-9~/._+-]*(?:[+-]\d{1,2}(?::?\d{2})?)?)", "zone"
    raise PatternError(f"Parsing is not supported for pattern letter: {letter}")


def _build_regex(tokens: tuple[Token, ...], simple: bool, kinds: list[str]) -> str:
    parts: list[str] = []
    for tok in tokens:
        match tok:
            case Literal(text=text):
                parts.append(re.escape(text))
            case FieldToken():
                regex, kind = _field_regex(tok, simple)
                kinds.append(kind)
                parts.append(regex)
            case Optional_(tokens=inner):
                parts.append("(?:" + _build_regex(inner, simple, kinds) + ")?")
    return "".join(parts)


@functools.lru_cache(maxsize=1024)
def _parser(pattern: str, simple: bool) -> tuple[re.Pattern[str], tuple[str, ...]]:
    kinds: list[str] = []
    regex = _build_regex(compile_pattern(pattern).tokens, simple, kinds)
    return re.compile(regex, re.IGNORECASE), tuple(kinds)


def _parse_offset(text: str) -> dt.tzinfo:
    upper = text.upper()
    if upper in ("Z", "GMT"):
        return dt.UTC
    if upper.startswith("GMT"):
        return zone_of(upper[3:])
    return zone_of(text)


def parse_fields(text: str, pattern: str, *, simple: bool = False) -> ParsedFields:
    """Parse ``text`` by a Java pattern.

    ``simple`` follows ``SimpleDateFormat``: trailing text is ignored and two-digit years follow
    the 80-years-back rule; otherwise the whole text must match, as ``DateTimeFormatter`` requires.
    """
    regex, kinds = _parser(pattern, simple)
    m = regex.match(text)
    if m is None or (not simple and m.end() != len(text)):
        index = m.end() if m is not None else 0
        if m is not None:
            raise PatternError(f"Text '{text}' could not be parsed, unparsed text found at index {index}")
        raise PatternError(f"Text '{text}' could not be parsed at index {index}")
    fields = ParsedFields()
    for kind, raw in zip(kinds, m.groups()):
        if raw is None:
            continue
        _apply(fields, kind, raw)
    return fields


def _apply(fields: ParsedFields, kind: str, raw: str) -> None:
    match kind:
        case "year":
            fields.year = int(raw)
        case "year2":
            fields.year = 2000 + int(raw)
        case "year_simple2":
            if len(raw) == 2 and raw.isdigit():
                now = dt.date.today().year
                base = now - 80
                year = (base // 100) * 100 + int(raw)
                fields.year = year if year >= base else year + 100
            else:
                fields.year = int(raw)
        case "month":
            fields.month = int(raw)
        case "month_text":
            fields.month = _MONTH_LOOKUP[raw.lower()]
        case "day":
            fields.day = int(raw)
        case "day_of_year":
            fields.day_of_year = int(raw)
        case "hour":
            fields.hour = int(raw)
        case "hour24":
            fields.hour = int(raw) % 24
        case "hour_ampm":
            fields.hour_ampm = int(raw) % 12
        case "hour_ampm0":
            fields.hour_ampm = int(raw)
        case "minute":
            fields.minute = int(raw)
        case "second":
            fields.second = int(raw)
        case "fraction":
            fields.nano = int(raw.ljust(9, "0")[:9])
        case "milli":
            fields.nano = int(raw) * 1_000_000
        case "nano":
            fields.nano = int(raw)
        case "milli_of_day":
            fields.milli_of_day = int(raw)
        case "ampm":
            fields.pm = raw.upper() == "PM"
        case "offset":
            fields.zone = _parse_offset(raw)
        case "zone":
            fields.zone = _parse_zone_name(raw)
        case "day_of_week" | "era":
            pass  # checked by the pattern only; ksqlDB's resolution ignores them


def _parse_zone_name(raw: str) -> dt.tzinfo:
    region = _ZONE_ABBREVIATIONS.get(raw.upper())
    return zone_of(region if region else raw)


def _check(value: int | None, low: int, high: int, field: str) -> None:
    if value is not None and not low <= value <= high:
        raise PatternError(f"Invalid value for {field} (valid values {low} - {high}): {value}")


def _resolve_time(fields: ParsedFields) -> tuple[int, int, int, int]:
    _check(fields.hour, 0, 23, "HourOfDay")
    _check(fields.minute, 0, 59, "MinuteOfHour")
    _check(fields.second, 0, 59, "SecondOfMinute")
    hour = fields.hour
    if hour is None and fields.hour_ampm is not None:
        hour = fields.hour_ampm + (12 if fields.pm else 0)
    if fields.milli_of_day is not None and hour is None:
        ms = fields.milli_of_day
        return ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60, ms % 1000 * 1_000_000
    return hour or 0, fields.minute or 0, fields.second or 0, fields.nano or 0


def _resolve_date(fields: ParsedFields) -> dt.date:
    year = 1970 if fields.year is None else fields.year
    _check(fields.month, 1, 12, "MonthOfYear")
    _check(fields.day, 1, 31, "DayOfMonth")
    try:
        if fields.day_of_year is not None:
            if fields.day_of_year == 366 and fields.year is None:
                raise PatternError("Leap day cannot be parsed without supplying the year field")
            base = dt.date(year, 1, 1) + dt.timedelta(days=fields.day_of_year - 1)
            if base.year != year:
                raise PatternError(f"Invalid date 'DayOfYear {fields.day_of_year}' as '{year}' is not a leap year")
            return base
        return dt.date(year, fields.month or 1, fields.day or 1)
    except ValueError as exc:
        raise PatternError(f"Invalid date: {exc}") from None


_EPOCH_DATE = dt.date(1970, 1, 1)


def parse_timestamp_millis(text: str, pattern: str, zone: str | dt.tzinfo = "UTC") -> int:
    """PARSE_TIMESTAMP: fields override 1970-01-01T00:00 in the parsed zone, else ``zone``."""
    fields = parse_fields(text, pattern)
    tz = fields.zone or (zone_of(zone) if isinstance(zone, str) else zone)
    day = _resolve_date(fields)
    hour, minute, second, nano = _resolve_time(fields)
    local = dt.datetime(day.year, day.month, day.day, hour, minute, second, nano // 1000)
    aware = local.replace(tzinfo=tz)
    offset = aware.utcoffset() or dt.timedelta(0)
    millis = ((local - dt.datetime(1970, 1, 1)) - offset) // dt.timedelta(milliseconds=1)
    return int(millis)


def parse_date_days(text: str, pattern: str) -> int:
    """PARSE_DATE (SimpleDateFormat rules): days since the epoch; a time-of-day is an error."""
    fields = parse_fields(text, pattern, simple=True)
    hour, minute, second, nano = _resolve_time(fields)
    if hour or minute or second or nano:
        raise PatternError("Date format contains time field.")
    return (_resolve_date(fields) - _EPOCH_DATE).days


def parse_time_millis(text: str, pattern: str) -> int:
    """PARSE_TIME: milliseconds after midnight; a date field in the pattern is an error."""
    fields = parse_fields(text, pattern)
    if fields.has_date():
        raise PatternError("Time format contains date field.")
    hour, minute, second, nano = _resolve_time(fields)
    return ((hour * 60 + minute) * 60 + second) * 1000 + nano // 1_000_000
