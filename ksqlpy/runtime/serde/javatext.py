"""Java's rules for numbers as text, which ksqlDB's serdes inherit.

ksqlDB parses DELIMITED fields and JSON strings with ``Integer.parseInt``, ``Long.parseLong``,
``Double.parseDouble`` and ``new BigDecimal(text)``, fits decimals with ``DecimalUtil.ensureFit``
and prints doubles with ``Double.toString``. These functions reproduce those rules so that
records are accepted, rejected and printed exactly as ksqlDB does.
"""

from __future__ import annotations

import decimal
import math
import re

_INT_RE = re.compile(r"[+-]?[0-9]+")
# Double.parseDouble: trimmed; optional sign; NaN/Infinity; decimal or hex float with an
# optional exponent and an optional f/F/d/D suffix.
_DOUBLE_RE = re.compile(
    r"[+-]?(NaN|Infinity|((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)[fFdD]?)"
)
_HEX_DOUBLE_RE = re.compile(r"[+-]?0[xX]([0-9a-fA-F]*)\.?([0-9a-fA-F]*)[pP]([+-]?\d+)[fFdD]?")
_BIG_DECIMAL_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
MILLIS_PER_DAY = 86_400_000

_CONTEXT = decimal.Context(prec=400, Emax=999_999, Emin=-999_999)


def parse_int(text: str) -> int:
    """``Integer.parseInt``: optional sign then digits, within 32 bits; ``ValueError`` otherwise."""
    return _parse_integral(text, INT_MIN, INT_MAX)


def parse_long(text: str) -> int:
    """``Long.parseLong``: optional sign then digits, within 64 bits; ``ValueError`` otherwise."""
    return _parse_integral(text, LONG_MIN, LONG_MAX)


def _parse_integral(text: str, lo: int, hi: int) -> int:
    if not _INT_RE.fullmatch(text):
        raise ValueError(f'For input string: "{text}"')
    value = int(text)
    if not lo <= value <= hi:
        raise ValueError(f'For input string: "{text}"')
    return value


def parse_double(text: str) -> float:
    """``Double.parseDouble``: surrounding whitespace ignored, ``NaN``/``Infinity`` spelled as Java
    does, hex floats and a trailing type suffix allowed."""
    s = text.strip(" \t\n\r\x0b\x0c\x00")
    if _DOUBLE_RE.fullmatch(s):
        body = s.rstrip("fFdD") if not s.endswith("Infinity") else s
        if body.lstrip("+-") == "NaN":
            return math.nan
        return float(body)
    m = _HEX_DOUBLE_RE.fullmatch(s)
    if m and (m.group(1) or m.group(2)):
        sign = -1.0 if s.startswith("-") else 1.0
        return sign * float.fromhex(f"0x{m.group(1) or '0'}.{m.group(2) or '0'}p{m.group(3)}")
    raise ValueError(f'For input string: "{text}"')


def parse_big_decimal(text: str) -> decimal.Decimal:
    """``new BigDecimal(text)``: no whitespace, no NaN or infinities."""
    if not _BIG_DECIMAL_RE.fullmatch(text):
        raise ValueError(f"Character array is missing \"exponent\" mark 'e' or 'E'. ({text})")
    return decimal.Decimal(text)


def ensure_fit(value: decimal.Decimal, precision: int, scale: int) -> decimal.Decimal:
    """``DecimalUtil.ensureFit``: the value at exactly ``scale`` digits, or ``ValueError`` when
    it overflows the precision or would need rounding."""
    digits = precision - scale
    if value.copy_abs() >= decimal.Decimal(f"1E{digits}"):
        raise ValueError(
            f"Numeric field overflow: A field with precision {precision} and scale {scale} "
            f"must round to an absolute value less than 10^{digits}. Got {plain(value)}"
        )
    quantum = decimal.Decimal(1).scaleb(-scale)
    fitted = value.quantize(quantum, context=_CONTEXT)
    if fitted != value:
        _, value_digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)
        raise ValueError(
            f"Cannot fit decimal '{plain(value)}' into DECIMAL({precision}, {scale}) without "
            f"rounding. (Requires {len(value_digits)},{max(-exponent, 0)})"
        )
    return fitted


def plain(value: decimal.Decimal) -> str:
    """``BigDecimal.toPlainString``: never scientific notation, scale kept."""
    return format(value, "f")


def big_decimal_str(value: decimal.Decimal) -> str:
    """``BigDecimal.toString`` (scientific notation for small exponents, as Python's ``str``)."""
    return str(value)


def double_str(value: float) -> str:
    """``Double.toString``: ``1.0``, ``1.0E10``, ``1.0E-5``, ``NaN``, ``-Infinity``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e7:
        text = repr(value)
        if "e" in text:  # repr chooses exponents only outside this range; keep Java's form
            text = format(value, "f")
        return text if "." in text else text + ".0"
    # shortest round-tripping digits (repr), laid out as Java's d.dddE±n
    _, digit_tuple, exp = decimal.Decimal(repr(magnitude)).normalize().as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digit_tuple))
    sign = "-" if value < 0 else ""
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{len(digits) + exp - 1}"


def java_int32(value: int) -> int:
    """Java's narrowing of a long (or the low bits of a BigInteger) to int."""
    return (value + 2**31) % 2**32 - 2**31


def java_int64(value: int) -> int:
    return (value + 2**63) % 2**64 - 2**63
