"""ksqlDB's string, bytes and regular-expression functions.

Functions with a DuckDB twin of the same semantics compile to it (UCASE -> upper, CONCAT ->
concat, which skips NULLs as ksqlDB does). Index arithmetic that differs from DuckDB (SUBSTRING's
clamping, negative positions) is spelled out in SQL. Functions with Java-specific behaviour
(INSTR, INITCAP, LPAD, SPLIT, ENCODE, the regex family with Java's ``$1`` replacements, MASK)
are row-wise Python UDFs.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Callable
from functools import lru_cache
from typing import AnyStr

from sqlglot import exp

from ksqlpy.planner.functions.misc import cast_to, fn, list_of, sql, udf
from ksqlpy.planner.functions.registry import (
    REGISTRY,
    Call,
    Category,
    CompileRule,
    ScalarFunction,
    Variant,
    sql_call,
    sql_template,
)

S = Category.STRING


def _register(name: str, description: str, *variants: Variant, category: Category = S) -> None:
    REGISTRY.register(ScalarFunction(name=name, category=category, description=description, variants=variants))


# ---------------------------------------------------------------------------------------------
# Case, trim, length

# java.lang.String.trim() strips every char <= U+0020, not only spaces.
_JAVA_WHITESPACE = "".join(chr(c) for c in range(0x21))

_register("UCASE", "Returns the input STRING with all characters converted to upper case.",
          Variant("input STRING", returns="STRING", compile=sql_call("upper")))
_register("LCASE", "Returns the input STRING with all characters converted to lower case.",
          Variant("input STRING", returns="STRING", compile=sql_call("lower")))


def _trim(call: Call) -> exp.Expression:
    return fn("trim", call.sql[0], exp.Literal.string(_JAVA_WHITESPACE))


_register("TRIM", "Returns the input STRING with leading and trailing whitespace removed.",
          Variant("input STRING", returns="STRING", compile=_trim))
_register("LEN", "Returns the length of the STRING or BYTES value.",
          Variant("input STRING", returns="INT", compile=sql_template("CAST(length({0}) AS INTEGER)")),
          Variant("input BYTES", returns="INT", compile=sql_template("CAST(octet_length({0}) AS INTEGER)")))

# ---------------------------------------------------------------------------------------------
# SUBSTRING: 1-based; a negative position counts from the end; out-of-range is clamped, never NULL

_START = ("(CASE WHEN {p} < 0 THEN greatest({n} + {p}, 0) ELSE greatest(least({p} - 1, {n}), 0) END)")


def _substring(length_fn: str, slice_fn: str) -> CompileRule:
    def compile_call(call: Call) -> exp.Expression:
        args = call.sql
        text, pos = args[0], args[1]
        n = fn(length_fn, text).sql("duckdb")
        start = _START.format(p=f"({pos.sql('duckdb')})", n=n)
        if len(args) == 2:
            body = f"{slice_fn}({text.sql('duckdb')}, {start} + 1)"
            nulls = f"({pos.sql('duckdb')}) IS NULL"
        else:
            count = args[2].sql("duckdb")
            end = f"greatest(least({start} + ({count}), {n}), {start})"
            body = f"{slice_fn}({text.sql('duckdb')}, {start} + 1, {end} - {start})"
            nulls = f"({pos.sql('duckdb')}) IS NULL OR ({count}) IS NULL"
        # a NULL position or length gives NULL (DuckDB's greatest/least would skip it)
        return sql(f"CASE WHEN {nulls} THEN NULL ELSE {body} END")

    return compile_call


def _bytes_substring(value: bytes, pos: int, length: int | None = None) -> bytes:
    n = len(value)
    start = max(n + pos, 0) if pos < 0 else max(min(pos - 1, n), 0)
    end = n if length is None else max(min(start + length, n), start)
    return value[start:end]


_register(
    "SUBSTRING",
    "Returns the portion of the STRING or BYTES from the specified position (1-based; negative counts "
    "from the end), optionally of the given length.",
    Variant("str STRING, pos INT", returns="STRING", compile=_substring("length", "substring")),
    Variant("str STRING, pos INT, length INT", returns="STRING", compile=_substring("length", "substring")),
    Variant("bytes BYTES, pos INT", returns="BYTES",
            compile=udf("ksql_substring_bytes2", ("BLOB", "INTEGER"), "BLOB", _bytes_substring)),
    Variant("bytes BYTES, pos INT, length INT", returns="BYTES",
            compile=udf("ksql_substring_bytes3", ("BLOB", "INTEGER", "INTEGER"), "BLOB", _bytes_substring)),
)

# ---------------------------------------------------------------------------------------------
# CONCAT, CONCAT_WS, REPLACE, INSTR, INITCAP


def _concat_bytes(values: list[bytes | None]) -> bytes:
    return b"".join(v for v in values if v is not None)


def _concat_ws_bytes(values: list[bytes | None]) -> bytes | None:
    if len(values) < 2:
        raise ValueError("Function Concat_WS expects at least two input arguments.")
    sep = values[0]
    if sep is None:
        return None
    return sep.join(v for v in values[1:] if v is not None)


_udf_concat_bytes = udf("ksql_concat_bytes", ("BLOB[]",), "BLOB", _concat_bytes)
_udf_concat_ws_bytes = udf("ksql_concat_ws_bytes", ("BLOB[]",), "BLOB", _concat_ws_bytes)


def _list_udf(name: str) -> CompileRule:
    """Variadic arguments reach a Python UDF as one DuckDB list."""

    def compile_call(call: Call) -> exp.Expression:
        return fn(name, list_of(call.sql))

    return compile_call


def _concat_ws(call: Call) -> exp.Expression:
    if len(call.sql) < 2:
        return sql("CAST(NULL AS VARCHAR)")  # ksqlDB fails the row: NULL plus a processing-log entry
    return fn("concat_ws", *call.sql)


_register("concat", "Concatenate an arbitrary number of string or bytes fields together; NULLs are skipped.",
          Variant("inputs STRING...", returns="STRING", compile=sql_call("concat")),
          Variant("inputs BYTES...", returns="BYTES", compile=_list_udf("ksql_concat_bytes")))
_register("concat_ws", "Concatenate several strings or bytes, separated by the first argument; NULLs are "
          "skipped, a NULL separator gives NULL.",
          Variant("inputs STRING...", returns="STRING", compile=_concat_ws),
          Variant("inputs BYTES...", returns="BYTES", compile=_list_udf("ksql_concat_ws_bytes")))


def _java_replace(text: str, old: str, new: str) -> str:
    if old == "":  # String.replace("", x) inserts x around every char
        return new + new.join(text) + new if text else new
    return text.replace(old, new)


def _with_constant_needle(duckdb_name: str, index: int, rowwise: CompileRule) -> CompileRule:
    """DuckDB's ``duckdb_name`` when argument ``index`` is a constant, non-empty string, where
    it does what the Java function does (a whole column at once), else ``rowwise``."""

    def compile_call(call: Call) -> exp.Expression:
        needle = call.args[index].value
        if isinstance(needle, str) and needle:
            return fn(duckdb_name, *call.sql)
        return rowwise(call)

    return compile_call


_register("REPLACE", "Returns a new string with all occurences of oldStr in str with newStr.",
          Variant("str STRING, oldStr STRING, newStr STRING", returns="STRING",
                  compile=_with_constant_needle(
                      "replace", 1, udf("ksql_replace", ("VARCHAR",) * 3, "VARCHAR", _java_replace))))


def _ordinal_index(text: str, sub: str, occurrence: int) -> int:
    index = -1
    start = 0
    for _ in range(occurrence):
        index = text.find(sub, start)
        if index < 0:
            return -1
        start = index + 1
    return index


def _instr(text: str | None, sub: str | None, position: int = 1, occurrence: int = 1) -> int:
    if text is None or sub is None:
        return 0
    if abs(position) > len(text):
        return 0
    if position < 0:
        rev_text, rev_sub, p = text[::-1], sub[::-1], -position
        i = _ordinal_index(rev_text[p - 1:], rev_sub, occurrence)
        return 0 if i < 0 else len(rev_text) - p - i - len(sub) + 2
    i = _ordinal_index(text[max(position - 1, 0):], sub, occurrence)
    return 0 if i < 0 else i + position


_register(
    "INSTR",
    "Returns the position of substring in string; 0 when absent. A negative position searches backwards.",
    # DuckDB's instr counts characters as ksqlDB does; an empty string holds nothing, not even ''
    Variant("str STRING, substring STRING", returns="INT",
            compile=sql_template("CASE WHEN {0} IS NULL OR {1} IS NULL OR {0} = '' THEN 0 "
                                 "ELSE CAST(instr({0}, {1}) AS INTEGER) END")),
    Variant("str STRING, substring STRING, position INT", returns="INT",
            compile=udf("ksql_instr3", ("VARCHAR", "VARCHAR", "INTEGER"), "INTEGER", _instr, null_in_null_out=False)),
    Variant("str STRING, substring STRING, position INT, occurrence INT", returns="INT",
            compile=udf("ksql_instr4", ("VARCHAR", "VARCHAR", "INTEGER", "INTEGER"), "INTEGER", _instr,
                        null_in_null_out=False)),
)

_WORD = re.compile(r"\S+\s*")


def _initcap(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in _WORD.findall(text.lower()))


_register("initcap", "Capitalize the first letter in each word and convert all other letters to lowercase. "
          "Words are delimited by whitespace.",
          Variant("input STRING", returns="STRING", compile=udf("ksql_initcap", ("VARCHAR",), "VARCHAR", _initcap)))

# ---------------------------------------------------------------------------------------------
# LPAD, RPAD


def _pad(left: bool) -> Callable[..., str | bytes | None]:
    def pad(value: AnyStr, length: int, padding: AnyStr) -> AnyStr | None:
        if len(padding) == 0 or length < 0:
            return None
        need = max(length - len(value), 0)
        fill = (padding * (need // len(padding) + 1))[:need]
        return ((fill + value) if left else (value + fill))[:length]

    return pad


def _pad_rule(duckdb_name: str, rowwise: CompileRule) -> CompileRule:
    """DuckDB's lpad/rpad, which pad and truncate as ksqlDB does, when the length is a constant
    that is not negative and the padding a constant that is not empty (else the result is NULL,
    row by row)."""

    def compile_pad(call: Call) -> exp.Expression:
        length, padding = call.args[1].value, call.args[2].value
        if isinstance(length, int) and length >= 0 and isinstance(padding, str) and padding:
            return fn(duckdb_name, *call.sql)
        return rowwise(call)

    return compile_pad


for _name, _left in (("LPAD", True), ("RPAD", False)):
    _side = "left" if _left else "right"
    _register(
        _name,
        f"Pads the input string or bytes, beginning from the {_side}, with the specified padding, until "
        "the target length is reached; a longer input is truncated.",
        Variant("input STRING, length INT, padding STRING", returns="STRING",
                compile=_pad_rule(_name.lower(), udf(f"ksql_{_name.lower()}", ("VARCHAR", "INTEGER", "VARCHAR"),
                                                     "VARCHAR", _pad(_left)))),
        Variant("input BYTES, length INT, padding BYTES", returns="BYTES",
                compile=udf(f"ksql_{_name.lower()}_bytes", ("BLOB", "INTEGER", "BLOB"), "BLOB", _pad(_left))),
    )

# ---------------------------------------------------------------------------------------------
# SPLIT, SPLIT_TO_MAP, ELT, FIELD


def _split(text: AnyStr, delimiter: AnyStr) -> list[AnyStr]:
    if len(delimiter) == 0:  # Pattern.split on "" -> one element per character
        return [text[i:i + 1] for i in range(len(text))] if text else [text]
    return text.split(delimiter)


_register(
    "split",
    "Splits a string into an array of substrings based on a delimiter; an empty delimiter splits "
    "into characters.",
    Variant("string STRING, delimiter STRING", returns="ARRAY<STRING>",
            compile=_with_constant_needle(
                "string_split", 1, udf("ksql_split", ("VARCHAR", "VARCHAR"), "VARCHAR[]", _split))),
    Variant("bytes BYTES, delimiter BYTES", returns="ARRAY<BYTES>",
            compile=udf("ksql_split_bytes", ("BLOB", "BLOB"), "BLOB[]", _split)),
)


def _split_to_map(text: str, entry_delim: str, kv_delim: str) -> list[tuple[str, str]] | None:
    if not entry_delim or not kv_delim or entry_delim == kv_delim:
        return None
    result: dict[str, str] = {}
    for entry in text.split(entry_delim):
        if entry == "":
            continue
        parts = entry.split(kv_delim, 1)
        if len(parts) == 2:
            result[parts[0]] = parts[1]
    return list(result.items())


_register("SPLIT_TO_MAP", "Splits a string into key-value pairs and creates a map from them.",
          Variant("input STRING, entryDelimiter STRING, kvDelimiter STRING", returns="MAP<STRING, STRING>",
                  compile=udf("ksql_split_to_map", ("VARCHAR",) * 3, "MAP(VARCHAR, VARCHAR)", _split_to_map)))


def _elt(call: Call) -> exp.Expression:
    n, *rest = call.sql
    if not rest:
        return sql("CAST(NULL AS VARCHAR)")
    # DuckDB counts negative list indexes from the end; ksqlDB returns NULL below 1.
    return exp.Case(
        ifs=[exp.If(this=exp.LT(this=n.copy(), expression=exp.Literal.number(1)), true=exp.Null())],
        default=fn("list_extract", list_of(rest), n),
    )


def _field(call: Call) -> exp.Expression:
    target, *rest = call.sql
    if not rest:
        return exp.Literal.number(0)
    position = fn("list_position", list_of(rest), target)
    return cast_to(fn("coalesce", position, exp.Literal.number(0)), "INTEGER")


_register("elt", "ELT() returns the Nth element of the list of strings, or NULL when N is out of range.",
          Variant("n INT, args STRING...", returns="STRING", compile=_elt))
_register("field", "Returns the position (1-indexed) of str in args, or 0 if not found. NULL is never found.",
          Variant("str STRING, args STRING...", returns="INT", compile=_field))

# ---------------------------------------------------------------------------------------------
# CHR, MD5


def _chr_int(code: int) -> str | None:
    return chr(code) if 0 <= code <= 0x10FFFF else None


def _chr_str(code: str) -> str | None:
    if len(code) < 6 or not code.startswith("\\u"):
        return None
    text = codecs.decode(code, "unicode_escape")
    return text.encode("utf-16", "surrogatepass").decode("utf-16")


_register("Chr", "Returns a single-character string corresponding to the input character code.",
          Variant("decimalCode INT", returns="STRING", compile=udf("ksql_chr_int", ("INTEGER",), "VARCHAR", _chr_int)),
          Variant("utf16Code STRING", returns="STRING", compile=udf("ksql_chr_str", ("VARCHAR",), "VARCHAR", _chr_str)))
_register("md5", "Returns the hex-encoded MD5 hash of the input string.",
          Variant("input STRING", returns="STRING", compile=sql_call("md5")))

# ---------------------------------------------------------------------------------------------
# ENCODE, TO_BYTES, FROM_BYTES


def _strip_hex(text: str) -> str:
    """ksqlDB's ``Encode.hexStrip``: only a lower-case ``0x`` prefix pads an odd digit count."""
    if text.startswith("0x"):
        return ("0" if len(text) % 2 else "") + text[2:]
    if len(text) >= 3 and text[0] in "xX" and text[1] == "'" and text.endswith("'"):
        return text[2:-1]
    return text


def _hex_decode(text: str) -> bytes:
    # an odd digit count is invalid hex (commons-codec's DecoderException), hence NULL
    return binascii.unhexlify(_strip_hex(text))


_DECODERS: dict[str, Callable[[str], bytes]] = {
    "hex": _hex_decode,
    "utf8": lambda s: s.encode("utf-8"),
    "ascii": lambda s: s.encode("ascii", errors="replace"),
    "base64": lambda s: base64.b64decode(s + "=" * (-len(s) % 4)),
}
_ENCODERS: dict[str, Callable[[bytes], str]] = {
    "hex": lambda b: b.hex(),
    "utf8": lambda b: b.decode("utf-8", errors="replace"),
    "ascii": lambda b: "".join(chr(c) if c < 128 else "\ufffd" for c in b),
    "base64": lambda b: base64.b64encode(b).decode("ascii"),
}


def _encode(text: str, input_encoding: str, output_encoding: str) -> str:
    src, dst = input_encoding.lower(), output_encoding.lower()
    if src not in _DECODERS or dst not in _ENCODERS or src == dst:
        raise ValueError("Supported input and output encodings are: hex, utf8, ascii and base64")
    return _ENCODERS[dst](_DECODERS[src](text))


def _to_bytes(text: str, encoding: str) -> bytes:
    decoder = _DECODERS.get(encoding.lower())
    if decoder is None:
        raise ValueError(f"Unknown encoding: {encoding}")
    return decoder(text)


def _from_bytes(value: bytes, encoding: str) -> str:
    if encoding.lower() == "hex":  # FROM_BYTES writes upper-case hex digits
        return value.hex().upper()
    encoder = _ENCODERS.get(encoding.lower())
    if encoder is None:
        raise ValueError(f"Unknown encoding: {encoding}")
    return encoder(value)


_register("encode", "Returns a new string encoded using the outputEncoding (hex, utf8, ascii, base64).",
          Variant("str STRING, inputEncoding STRING, outputEncoding STRING", returns="STRING",
                  compile=udf("ksql_encode", ("VARCHAR",) * 3, "VARCHAR", _encode)))
_register("to_bytes", "Converts a STRING value in the specified encoding to BYTES.",
          Variant("value STRING, encoding STRING", returns="BYTES",
                  compile=udf("ksql_to_bytes", ("VARCHAR", "VARCHAR"), "BLOB", _to_bytes)),
          category=Category.CONVERSIONS)
_register("from_bytes", "Converts a BYTES value to STRING in the specified encoding.",
          Variant("value BYTES, encoding STRING", returns="STRING",
                  compile=udf("ksql_from_bytes", ("BLOB", "VARCHAR"), "VARCHAR", _from_bytes)),
          category=Category.CONVERSIONS)

# ---------------------------------------------------------------------------------------------
# Regular expressions (Java syntax is close to Python's for the common subset)

R = Category.REGULAR_EXPRESSION


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _regexp_extract(pattern: str, text: str, group: int = 0) -> str | None:
    rx = _regex(pattern)
    if group > rx.groups:
        return None
    m = rx.search(text)
    return m.group(group) if m else None


def _regexp_extract_all(pattern: str, text: str, group: int = 0) -> list[str | None] | None:
    rx = _regex(pattern)
    if group > rx.groups:
        return None
    return [m.group(group) for m in rx.finditer(text)]


_JAVA_GROUP_REF = re.compile(r"\\(.)|\$(\d+|\{\w+\})")


def _java_replacement(replacement: str) -> str:
    """Java's ``$1``/``${name}`` group references and ``\\$`` escapes, as Python's ``\\g<...>``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1) is not None:
            return m.group(1).replace("\\", "\\\\")
        ref = m.group(2).strip("{}")
        return f"\\g<{ref}>"

    return _JAVA_GROUP_REF.sub(sub, replacement)


def _regexp_replace(text: str, pattern: str, replacement: str) -> str:
    return _regex(pattern).sub(_java_replacement(replacement), text)


def _regexp_split(text: str, pattern: str) -> list[str]:
    """Guava's ``Splitter.on(pattern)``: every match separates, groups capture nothing, empties stay.

    A pattern that matches the empty string goes through Java's ``Pattern.split`` instead, which
    drops trailing empty strings and a leading one from a zero-width match at the start.
    """
    rx = _regex(pattern)
    if pattern == "" or rx.fullmatch("") is not None:
        parts: list[str] = []
        start = 0
        for m in rx.finditer(text):
            if m.end() == 0:  # a zero-width match at the very start splits nothing off
                continue
            parts.append(text[start:m.start()])
            start = m.end()
        if not parts:
            return [text]
        parts.append(text[start:])
        while parts and parts[-1] == "":
            parts.pop()
        return parts
    parts = []
    start = 0
    for m in rx.finditer(text):
        parts.append(text[start:m.start()])
        start = m.end()
    parts.append(text[start:])
    return parts


_register("REGEXP_EXTRACT", "Extracts the first substring matched by the regular expression pattern, "
          "or the given capturing group of it.",
          Variant("pattern STRING, input STRING", returns="STRING",
                  compile=udf("ksql_regexp_extract2", ("VARCHAR",) * 2, "VARCHAR", _regexp_extract)),
          Variant("pattern STRING, input STRING, group INT", returns="STRING",
                  compile=udf("ksql_regexp_extract3", ("VARCHAR", "VARCHAR", "INTEGER"), "VARCHAR",
                              _regexp_extract)),
          category=R)
_register("REGEXP_EXTRACT_ALL", "Extracts all substrings matched by the regular expression pattern, "
          "or the given capturing group of each.",
          Variant("pattern STRING, input STRING", returns="ARRAY<STRING>",
                  compile=udf("ksql_regexp_extract_all2", ("VARCHAR",) * 2, "VARCHAR[]", _regexp_extract_all)),
          Variant("pattern STRING, input STRING, group INT", returns="ARRAY<STRING>",
                  compile=udf("ksql_regexp_extract_all3", ("VARCHAR", "VARCHAR", "INTEGER"), "VARCHAR[]",
                              _regexp_extract_all)),
          category=R)
_register("REGEXP_REPLACE", "Returns a new string with all substrings matching the regular expression "
          "replaced; $1 refers to a capturing group.",
          Variant("str STRING, regexp STRING, replacement STRING", returns="STRING",
                  compile=udf("ksql_regexp_replace", ("VARCHAR",) * 3, "VARCHAR", _regexp_replace)),
          category=R)
_register("REGEXP_SPLIT_TO_ARRAY", "Splits a string into an array of substrings based on a regular expression.",
          Variant("string STRING, regexp STRING", returns="ARRAY<STRING>",
                  compile=udf("ksql_regexp_split", ("VARCHAR",) * 2, "VARCHAR[]", _regexp_split)),
          category=R)

# ---------------------------------------------------------------------------------------------
# MASK family: upper -> 'X', lower -> 'x', digit -> 'n', other -> '-'; a NULL mask keeps the class


def _mask_char(c: str, upper: str | None, lower: str | None, digit: str | None, other: str | None) -> str:
    if c.isupper():
        return c if upper is None else upper[:1]
    if c.islower():
        return c if lower is None else lower[:1]
    if c.isdigit():
        return c if digit is None else digit[:1]
    return c if other is None else other[:1]


_DEFAULT_MASKS = ("X", "x", "n", "-")


def _mask_range(text: str | None, lo: int, hi: int, masks: tuple[str | None, ...]) -> str | None:
    if text is None:
        return None
    return "".join(_mask_char(c, *masks) if lo <= i < hi else c for i, c in enumerate(text))


def _masker(kind: str, with_masks: bool) -> Callable[..., str | None]:
    # DuckDB passes the INTEGER count (MASK_LEFT and the like) and then the four STRING masks.
    def apply(text: str | None, *rest: int | str | None) -> str | None:
        if text is None:
            return None
        k, given = 0, rest
        if kind != "all":
            n, given = rest[0], rest[1:]
            if n is None or int(n) < 0:
                raise ValueError(f"function {kind} requires a non-negative number")
            k = int(n)
        masks = tuple(None if m is None else str(m) for m in given) if with_masks else _DEFAULT_MASKS
        size = len(text)
        lo, hi = {"all": (0, size), "mask_left": (0, k), "mask_right": (size - k, size),
                  "mask_keep_left": (k, size), "mask_keep_right": (0, size - k)}[kind]
        return _mask_range(text, max(lo, 0), hi, masks)

    return apply


def _masked(text: exp.Expression) -> exp.Expression:
    """ASCII ``text`` masked with the default masks: a ``regexp_replace`` per class, others
    first (no mask is in a class replaced after it)."""
    masked = text.copy()
    for chars, mask in (("[^A-Za-z0-9]", "-"), ("[A-Z]", "X"), ("[a-z]", "x"), ("[0-9]", "n")):
        masked = fn("regexp_replace", masked, exp.Literal.string(chars), exp.Literal.string(mask),
                    exp.Literal.string("g"))
    return masked


def _mask_rule(kind: str, rowwise: CompileRule) -> CompileRule:
    """MASK and its LEFT/RIGHT/KEEP forms with the default masks (and a constant count that is
    not negative): text of ASCII characters only is masked in DuckDB, a whole column at once;
    other text (letters and digits beyond ASCII) row by row."""

    def compile_mask(call: Call) -> exp.Expression:
        text = call.sql[0]
        if kind == "all":
            masked = _masked(text)
        else:
            count = call.args[1].value
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                return rowwise(call)
            k = exp.Literal.number(count)
            rest = fn("greatest", exp.Sub(this=fn("length", text), expression=k.copy()), exp.Literal.number(0))
            head, tail = fn("left", text, k), fn("right", text, rest)  # the first k, the rest
            head_rest, tail_k = fn("left", text, rest.copy()), fn("right", text, k.copy())  # all but the last k, the last k
            parts = {
                "mask_left": (_masked(head), tail),
                "mask_right": (head_rest, _masked(tail_k)),
                "mask_keep_left": (head, _masked(tail)),
                "mask_keep_right": (_masked(head_rest), tail_k),
            }[kind]
            masked = exp.DPipe(this=parts[0], expression=parts[1])
        ascii_only = exp.Not(this=fn("regexp_matches", text, exp.Literal.string("[^\\x01-\\x7f]")))
        return exp.Case(
            ifs=[
                exp.If(this=exp.Is(this=text.copy(), expression=exp.Null()), true=exp.Null()),
                exp.If(this=ascii_only, true=masked),
            ],
            default=rowwise(call),
        )

    return compile_mask


for _name, _kind in (("MASK", "all"), ("MASK_LEFT", "mask_left"), ("MASK_RIGHT", "mask_right"),
                     ("MASK_KEEP_LEFT", "mask_keep_left"), ("MASK_KEEP_RIGHT", "mask_keep_right")):
    _n = () if _kind == "all" else ("INTEGER",)
    _np = "" if _kind == "all" else ", numChars INT"
    _masks = ", upper STRING, lower STRING, digit STRING, other STRING"
    _register(
        _name,
        "Returns a masked version of the input string: upper case letters as 'X', lower case as 'x', "
        "digits as 'n', others as '-', or the given replacements (NULL keeps that class).",
        Variant(f"input STRING{_np}", returns="STRING",
                compile=_mask_rule(_kind, udf(f"ksql_{_name.lower()}", ("VARCHAR", *_n), "VARCHAR",
                                              _masker(_kind, False), null_in_null_out=False))),
        Variant(f"input STRING{_np}{_masks}", returns="STRING",
                compile=udf(f"ksql_{_name.lower()}_with", ("VARCHAR", *_n) + ("VARCHAR",) * 4, "VARCHAR",
                            _masker(_kind, True), null_in_null_out=False)),
    )
