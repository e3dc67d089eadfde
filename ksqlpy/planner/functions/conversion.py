"""ksqlDB's BYTES-to-number conversions (INT_FROM_BYTES, BIGINT_FROM_BYTES, DOUBLE_FROM_BYTES), and
:func:`java_double_to_string`, Java's ``Double.toString`` for every place a DOUBLE becomes text.

TO_BYTES and FROM_BYTES live with the string functions, as ksqlDB documents them there.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from decimal import Decimal

from ksqlpy.planner.functions.misc import udf
from ksqlpy.planner.functions.registry import REGISTRY, Category, ScalarFunction, Variant

_ORDERS = {"BIG_ENDIAN": ">", "LITTLE_ENDIAN": "<"}


def _from_bytes(code: str, size: int, what: str) -> Callable[..., int | float]:
    def convert(value: bytes, byte_order: str = "BIG_ENDIAN") -> int | float:
        if len(value) != size:
            raise ValueError(f"Number of bytes must be equal to {size}, but found {len(value)}")
        order = _ORDERS.get(byte_order.upper())
        if order is None:
            raise ValueError(f"byteOrder must be BIG_ENDIAN or LITTLE_ENDIAN, but was {byte_order}")
        number: int | float = struct.unpack(order + code, value)[0]
        return number

    convert.__name__ = what
    return convert


for _name, _code, _size, _sql, _duck in (("int_from_bytes", "i", 4, "INT", "INTEGER"),
                                         ("bigint_from_bytes", "q", 8, "BIGINT", "BIGINT"),
                                         ("double_from_bytes", "d", 8, "DOUBLE", "DOUBLE")):
    _convert = _from_bytes(_code, _size, _name)
    REGISTRY.register(ScalarFunction(
        name=_name,
        category=Category.CONVERSIONS,
        description=f"Converts a BYTES value to an {_sql} value according to the specified byte order "
        "(BIG_ENDIAN by default).",
        variants=(
            Variant("value BYTES", returns=_sql, compile=udf(f"ksql_{_name}1", ("BLOB",), _duck, _convert)),
            Variant("value BYTES, byteOrder STRING", returns=_sql,
                    compile=udf(f"ksql_{_name}2", ("BLOB", "VARCHAR"), _duck, _convert)),
        ),
    ))


def java_double_to_string(value: float) -> str:
    """``Double.toString``: ``1.0``, ``1.0E10``, ``1.234E-5``, ``NaN``, ``Infinity``.

    Java switches to computerized scientific notation below 1e-3 and from 1e7 up; the digits are
    the shortest that round-trip, which is what Python's ``repr`` produces.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e7:
        text = repr(value)
        return text if "." in text else text + ".0"
    # Decimal gives the shortest round-trip digits (repr's) with an explicit exponent.
    sign, digits, exponent = Decimal(repr(magnitude)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exponent, int)  # finite: NaN and the infinities returned above
    point_exponent = exponent + len(digits) - 1
    return f"{'-' if value < 0 else ''}{text[0]}.{text[1:] or '0'}E{point_exponent}"
