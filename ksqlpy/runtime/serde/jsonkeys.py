"""Field-name spellings for the columnar JSON decoder: ksqlDB's case-insensitive match, a batch at a time.

ksqlDB reads a column from a JSON object by its exact name first and otherwise by any key whose
upper case is the name, the last such key winning (:func:`ksqlpy.runtime.serde.coerce.lookup`);
nested STRUCT fields follow the same rule. Arrow's JSON reader matches exact names only. So the
decoder asks Arrow for every spelling of a name that a batch uses, each read as a field of its
own, and keeps per object the one that is present (:func:`fold`). Which spellings to ask for is a
:data:`Plan`, kept from batch to batch because a producer spells its names the same way.

A plan is right for a batch when every quoted occurrence of a name, in any case, was read as a
key into one of the planned fields, and no object holds two of them; then each object has at most
one key for the name, which is what ksqlDB picks too. :meth:`KeyNames.doubtful` checks this after
the read, cheapest proof first: a name Arrow read by its exact spelling from every record is
right (the exact key wins whatever else a record holds); a batch whose quotes all belong to keys
and strings Arrow read holds no other keys at all; otherwise the keys read for each name are
compared with its quoted occurrences in the text (a count per name on a lower-cased copy, or for
many names one tally of all quoted strings). For names in doubt the decoder first tries the
spellings its first records use (:meth:`KeyNames.sample`), then :meth:`KeyNames.analyze` finds
every spelling the batch uses and the records that spell one name two ways, which go down the
exact path one by one.

Counting quoted names in the raw text sees every key except those written another way: keys
with escapes (``"\\u0069d"``) and keys with one of the few non-ASCII letters whose upper case is
ASCII (``ß``, ``ı``, ``ſ``, the ``ﬀ``-``ﬆ`` ligatures). Nor can it find non-ASCII column names
(``ÄPFEL``) in any case. :meth:`KeyNames.hazards` sends the records that may hold such keys down
the exact path before anything is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ksqlpy import sqltypes
from ksqlpy.runtime.serde.base import physical_type

#: Upper-case column name -> the spellings Arrow's reader is asked for, in order. A name not in
#: the plan is read by its own spelling only.
Plan = Mapping[str, tuple[str, ...]]

#: Spellings of one name looked for in a batch before its records that use the name are all
#: decoded exactly instead.
MAX_SPELLINGS = 8

#: :meth:`BatchText.tally_strings` costs about as much as this many counts of one name.
_COUNTS_PER_TALLY = 8

#: Records whose keys :meth:`KeyNames.sample` looks at.
SAMPLE = 16

#: Non-ASCII letters whose upper case is all ASCII (``"ß".upper() == "SS"``): a key holding one
#: can match a column name without being spelled like it (tests check the list is complete).
ASCII_UPPERING = "ßıſﬀﬁﬂﬃﬄﬅﬆ"

#: A key whose text holds a backslash: an escape that may spell a name another way.
_ESCAPED_KEY = r'\\[^"]*"\s*:'
#: A key holding one of :data:`ASCII_UPPERING` (from the last quote before it: the key's own or
#: an escaped one).
_UPPERING_KEY = '"[^"]*[' + ASCII_UPPERING + ']' + r'[^"]*"\s*:'


def _plain(name: str) -> bool:
    """Names the counts can find: printable ASCII that JSON writes without escapes."""
    return all(" " <= ch <= "~" and ch not in '"\\' for ch in name)


def _quoted(name: str) -> bytes:
    return b'"' + name.encode("ascii") + b'"'


def spelled(name: str, plan: Plan) -> tuple[str, ...]:
    return plan.get(name, (name,))


class BatchText:
    """The raw bytes of a batch of records, with a lower-cased copy made on first use."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._lower: bytes | None = None
        self._strings: dict[bytes, int] = {}  # lower-cased name -> quoted strings spelling it
        #: whether :meth:`KeyNames.doubtful` found every quote to belong to a key or string read
        self.explained = False

    @property
    def lower(self) -> bytes:
        if self._lower is None:
            self._lower = self.raw.lower()
        return self._lower

    def quotes(self) -> int:
        """Double quotes in the text (a vectorized count: ``bytes.count`` of one byte runs several
        times slower on a batch of a few MB)."""
        return int(np.count_nonzero(np.frombuffer(self.raw, dtype=np.uint8) == ord('"')))

    def occurrences(self, name: str) -> int:
        """Quoted occurrences of ``name`` in any (ASCII) case."""
        counted = self._strings.get(name.lower().encode())
        return self.lower.count(_quoted(name.lower())) if counted is None else counted

    def tally_strings(self, names: Iterable[str]) -> None:
        """Count the quoted strings spelling any of ``names`` in one vectorized pass, where the
        text has no backslash; :meth:`occurrences` then answers from the counts (up to
        collisions of the hash, which only make a count larger).

        Without escapes every quote opens or closes a string, in turn, so the strings are the
        spans between quotes 2k and 2k+1. (Arrow read the batch, so it is valid JSON.)"""
        if b"\\" in self.raw:
            return
        text = np.frombuffer(self.raw, dtype=np.uint8)
        quotes = np.flatnonzero(text == ord('"'))
        if len(quotes) % 2:
            return
        starts = quotes[0::2] + 1
        lengths = quotes[1::2] - starts
        wanted: dict[int, list[bytes]] = {}
        for name in names:
            lowered = name.lower().encode("ascii")
            wanted.setdefault(len(lowered), []).append(lowered)
        counts = self._strings
        for length, group in wanted.items():
            codes = _hash(text, starts[lengths == length], length)
            names_text = np.frombuffer(b"".join(group), dtype=np.uint8)
            targets = _hash(names_text, np.arange(0, len(names_text), length), length)
            order = np.argsort(targets)
            slot = np.minimum(np.searchsorted(targets[order], codes), len(group) - 1)
            hit = targets[order][slot] == codes
            found = np.bincount(slot[hit], minlength=len(group))
            for i, k in enumerate(order):
                counts[group[k]] = int(found[i])

    def spellings(self, name: str) -> list[str] | None:
        """Every spelling of ``name`` (ASCII case variants) quoted somewhere in the batch, or
        None past :data:`MAX_SPELLINGS`."""
        total = self.occurrences(name)
        found: list[str] = []
        covered = 0
        for guess in (name, name.lower()):  # what most producers write; no scan needed
            if covered < total and (count := self.raw.count(_quoted(guess))):
                found.append(guess)
                covered += count
        while covered < total:
            if len(found) >= MAX_SPELLINGS:
                return None
            known = b"|".join(re.escape(s.encode()) for s in found) or b"(?!)"
            pattern = rb'"(?!(?:' + known + rb')")((?i:' + re.escape(name.encode()) + rb'))"'
            match = re.search(pattern, self.raw)
            if match is None:  # the counts disagree only if the regex finds one; be safe
                return None
            spelling = match.group(1).decode("ascii")
            found.append(spelling)
            covered += self.raw.count(_quoted(spelling))
        return found


class KeyNames:
    """The names of a JSON schema that keys may spell in other cases, and the checks on them."""

    def __init__(self, columns: Sequence[sqltypes.Field], *, wrapped: bool) -> None:
        self.columns = tuple(columns)
        self.wrapped = wrapped
        self.top = frozenset(c.name for c in columns) if wrapped else frozenset()
        self.nested = frozenset(n for c in columns for n in _nested_names(c.type))
        # a name with lower-case letters matches only its exact spelling (coerce.lookup
        # upper-cases keys), so only upper-case names with letters have variants
        cased = frozenset(n for n in self.top | self.nested if n.upper() == n != n.lower())
        self.variable = frozenset(n for n in cased if _plain(n))
        #: Upper-case names the counts cannot find (non-ASCII, or written with escapes): any
        #: spelling of them holds a non-ASCII byte or an escape, so records that might hold one
        #: take the exact path (see hazards) and the others cannot hold them at all.
        self.unplain = cased - self.variable
        levels = [[c.name for c in columns]] if wrapped else []
        levels += [[f.name for f in s.fields] for c in columns for s in _structs(c.type)]
        ambiguous = any(len({n.upper() for n in level}) < len(level) for level in levels)
        #: False for a schema with two fields of one object that differ only in case: its
        #: records take the exact path.
        self.usable = not ambiguous

    def hazards(self, records: pa.Array, text: BatchText) -> np.ndarray | None:
        """Records that may hold a key the counts do not see (see the module docstring)."""
        if not self.variable and not self.unplain:
            return None
        masks: list[pa.Array] = []
        if b"\\" in text.raw:
            masks.append(pc.match_substring_regex(records, _ESCAPED_KEY))
        if self.unplain and not text.raw.isascii():
            masks.append(_non_ascii(records))
        elif not text.raw.isascii() and any(letter.encode() in text.raw for letter in ASCII_UPPERING):
            masks.append(pc.match_substring_regex(records, _UPPERING_KEY))
        return _any(masks)

    def doubtful(
        self, table: pa.Table, plan: Plan, text: BatchText, others: Sequence[str] = ()
    ) -> set[str]:
        """Names for which ``plan`` may have read ``table`` otherwise than ksqlDB would.
        ``others``: fields of ``table`` read for keys that are no column's (see :meth:`others`),
        whose keys and strings count towards explaining the batch's quotes."""
        if not self.variable:
            return set()
        tally = _Tally(plan, self.variable)
        for name in others:
            array = _one(table.column(name))
            tally.keys += len(array) - array.null_count
            tally.walk(array, sqltypes.STRING)
        proven: set[str] = set()
        if self.wrapped:
            for c in self.columns:
                spellings = spelled(c.name, plan)
                arrays = [_one(table.column(s)) for s in spellings]
                if spellings == (c.name,) and arrays[0].null_count == 0 and c.name not in self.nested:
                    proven.add(c.name)  # every record has the exact key, which wins
                tally.field(c.name, arrays, c.type)
        else:
            # the {"v": ...} wrapper is not in the records' text
            tally.walk(_one(table.column(0)), self.columns[0].type)
        doubt = set(tally.doubt)
        # Every quote in the batch opens or closes a key or a string Arrow read (two each): no
        # key went unread, so no name is spelled in a way the plan missed. One count for all
        # names, for the common batch without nulls or extra fields.
        if text.quotes() == 2 * (tally.keys + tally.strings):
            text.explained = True
            return doubt
        unsure = self.variable - proven - doubt
        if len(unsure) > _COUNTS_PER_TALLY:
            text.tally_strings(unsure)  # else one count per name costs less
        for name in unsure:
            if tally.read.get(name, 0) != text.occurrences(name):
                doubt.add(name)
        return doubt

    def others(self, records: pa.Array, plan: Plan) -> dict[str, pa.DataType]:
        """Keys of the first records' objects that are no column's, nor spell any name the
        plan may miss (other fields the producer writes, as ``userid`` in a value whose key
        holds it): the reader's types for them (scalars only). Read along with the columns,
        they account for their quotes, so that a batch whose every quote is a key or string
        read needs no counting of names (see :meth:`doubtful`)."""
        taken = {s for c in self.columns for s in spelled(c.name, plan)}
        found: dict[str, pa.DataType] = {}
        for record in records.slice(0, SAMPLE).to_pylist():
            try:
                node = orjson.loads(record)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(node, dict):
                continue
            for key, value in node.items():
                if key in taken or key in found or not _plain(key) or key.upper() in self.top | self.nested:
                    continue  # a name's spelling, or one the counts must find: not another key
                if isinstance(value, str):
                    found[key] = pa.string()
                elif isinstance(value, bool):
                    found[key] = pa.bool_()
                elif isinstance(value, int | float):
                    found[key] = pa.float64()
        return found

    def sample(self, records: pa.Array, names: Iterable[str], plan: Plan) -> dict[str, tuple[str, ...]]:
        """``plan`` for ``names`` plus the spellings of them the first records use: a guess that
        one read and :meth:`doubtful` confirm for a batch whose producer spells names one way."""
        wanted = set(names)
        seen: dict[str, list[str]] = {n: list(plan.get(n, ())) for n in wanted}

        def visit(node: object) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    upper = key.upper() if isinstance(key, str) and key.isascii() else None
                    if upper in wanted and key not in seen[upper]:
                        seen[upper].append(key)
                    visit(value)
            elif isinstance(node, list):
                for item in node:
                    visit(item)

        for record in records.slice(0, SAMPLE).to_pylist():
            try:
                visit(orjson.loads(record))
            except orjson.JSONDecodeError:
                continue
        return {n: tuple(s[:MAX_SPELLINGS]) for n, s in seen.items() if s}

    def analyze(
        self, records: pa.Array, text: BatchText, names: Iterable[str]
    ) -> tuple[dict[str, tuple[str, ...]], np.ndarray | None]:
        """The spellings ``records`` use for ``names``, and the records to decode exactly: those
        that spell one name two ways (or one of too many ways)."""
        found: dict[str, tuple[str, ...]] = {}
        masks: list[pa.Array] = []
        for name in sorted(names):
            spellings = text.spellings(name)
            if spellings is None:
                masks.append(pc.match_substring(records, _quoted(name).decode(), ignore_case=True))
                found[name] = (name,)
                continue
            found[name] = tuple(spellings) or (name,)
            if len(spellings) > 1:
                uses = [pc.cast(pc.match_substring(records, _quoted(s).decode()), pa.int8()) for s in spellings]
                total = uses[0]
                for use in uses[1:]:
                    total = pc.add(total, use)
                masks.append(pc.greater(total, 1))
        return found, _any(masks)


def canonical(plan: Plan) -> dict[str, tuple[str, ...]]:
    """``plan`` without the entries that say no more than the default."""
    return {n: s for n, s in plan.items() if s != (n,)}


def read_type(t: sqltypes.SqlType, plan: Plan, *, top: bool) -> pa.DataType:
    """The type Arrow's reader is asked for: a field per planned spelling, physical ints for
    temporals, text for top-level BYTES (decoded from base64 afterwards)."""
    match t:
        case sqltypes.Array(element=e):
            return pa.list_(read_type(e, plan, top=False))
        case sqltypes.Struct(fields=fs):
            return pa.struct(
                [pa.field(s, read_type(f.type, plan, top=False)) for f in fs for s in spelled(f.name, plan)]
            )
    if top and t.base is sqltypes.BaseType.BYTES:
        return pa.string()
    return physical_type(t)


def first_present(arrays: Sequence[pa.Array]) -> pa.Array:
    """One column from the columns read for the spellings of a name (at most one is non-null
    per row, see :meth:`KeyNames.analyze`)."""
    return arrays[0] if len(arrays) == 1 else pc.coalesce(*arrays)


def fold(array: pa.Array, t: sqltypes.SqlType, plan: Plan) -> pa.Array:
    """An array read with :func:`read_type` as :func:`physical_type` of ``t``: the fields read
    for each spelling of a STRUCT field folded back into one."""
    if not plan or not _has_struct(t):
        return array
    match t:
        case sqltypes.Array(element=e):
            assert isinstance(array, pa.ListArray)
            values = fold(array.values, e, plan)
            return pa.ListArray.from_arrays(array.offsets, values, mask=array.is_null())
        case sqltypes.Struct(fields=fs):
            assert isinstance(array, pa.StructArray)
            children = [
                fold(first_present([array.field(s) for s in spelled(f.name, plan)]), f.type, plan) for f in fs
            ]
            return pa.StructArray.from_arrays(
                children, fields=[pa.field(f.name, physical_type(f.type)) for f in fs], mask=array.is_null()
            )
    return array


# -- helpers ---------------------------------------------------------------------------------


def _nested_names(t: sqltypes.SqlType) -> list[str]:
    return [f.name for s in _structs(t) for f in s.fields]


def _structs(t: sqltypes.SqlType) -> list[sqltypes.Struct]:
    match t:
        case sqltypes.Array(element=e):
            return _structs(e)
        case sqltypes.Struct(fields=fs):
            return [t, *(s for f in fs for s in _structs(f.type))]
    return []


def _has_struct(t: sqltypes.SqlType) -> bool:
    return bool(_structs(t))


def _one(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


class _Tally:
    """Keys and strings Arrow read, walked through the columns of a read table."""

    def __init__(self, plan: Plan, variable: frozenset[str]) -> None:
        self.plan = plan
        self.variable = variable
        self.keys = 0
        self.strings = 0
        self.read: dict[str, int] = {}  # keys read per variable name
        self.doubt: set[str] = set()  # names some object holds two spellings of

    def field(self, name: str, arrays: Sequence[pa.Array], t: sqltypes.SqlType) -> None:
        """The arrays read for the spellings of one field (a key per non-null value)."""
        keys = sum(len(a) - a.null_count for a in arrays)
        self.keys += keys
        if name in self.variable:
            self.read[name] = self.read.get(name, 0) + keys
            if len(arrays) > 1:
                present = np.sum([np.asarray(a.is_valid()) for a in arrays], axis=0)
                if len(present) and present.max() > 1:
                    self.doubt.add(name)
        for array in arrays:
            self.walk(array, t)

    def walk(self, array: pa.Array, t: sqltypes.SqlType) -> None:
        if pa.types.is_string(array.type):
            self.strings += len(array) - array.null_count
            return
        match t:
            case sqltypes.Array(element=e):
                assert isinstance(array, pa.ListArray)
                self.walk(array.flatten(), e)  # the elements of the lists that are there
            case sqltypes.Struct(fields=fs):
                assert isinstance(array, pa.StructArray)
                # flatten() applies the struct's own nulls to its children: keys of absent
                # objects are not keys
                names = (array.type.field(i).name for i in range(array.type.num_fields))
                children = dict(zip(names, array.flatten()))
                for f in fs:
                    self.field(f.name, [children[s] for s in spelled(f.name, self.plan)], f.type)


#: Byte -> the byte with ASCII letters lower-cased.
_FOLD = np.arange(256, dtype=np.uint8)
_FOLD[ord("A") : ord("Z") + 1] += 32
#: Odd multipliers for the 8-byte words of :func:`_hash`: 64 random odd 63-bit numbers (those of
#: ``np.random.default_rng(0x6B73716C).integers(1, 2**63, 64, dtype=np.uint64) | 1``), written
#: out so that a server does not import numpy.random (~2.5 MiB) for them.
# fmt: off
_HASH_FACTORS = np.array(
    [
        0x43DB7CD43DAFB3ED, 0x62C8816DBA162C39, 0x56A2B42D02D3057F, 0x58C7765A5CB72ADD,
        0x55AF545479B56123, 0x16882CE7C910BF45, 0x779184082411D841, 0x423AF087A59BF3E3,
        0x609ACCEDE1E53A0D, 0x055DECE2264E4D85, 0x372C1CEFFECE00F1, 0x1CA0C1257D755AE7,
        0x2937C6476484D53B, 0x795778BEF88B15AF, 0x59335EF4C055B46D, 0x02B947ACAA0F74CD,
        0x010FBAE44A2F623B, 0x2645CD27D6BD6CD1, 0x3ABF311C3071B4EF, 0x43AB96DF4F2AC6CF,
        0x1B6E169019128BAB, 0x0D2D21C33A79C2F9, 0x59DA26BC4C94A92D, 0x10D123324CFBFD8F,
        0x29424C8336C7C849, 0x2704890646328947, 0x58976BBAE3360747, 0x6D79F9FB093F35C3,
        0x38F3A09EC31A68BD, 0x6C4ECE5518330439, 0x276FF2321223EC0F, 0x112BB1BBFC6EF429,
        0x6E2E7F0F2D05E1F1, 0x7E974186B8B2D7FF, 0x3E721227B075898F, 0x5665E9F391DB653B,
        0x58E9D59B83833F55, 0x16EE8ED67731C543, 0x29EC71189B17386F, 0x2D2523713A688BC1,
        0x485C9C67B72E4A43, 0x076BA226AF8EC70B, 0x166701A3A958D3A9, 0x30D013965BC3A5F5,
        0x47F527927C690DAF, 0x6AEC42A1145B86EB, 0x4A96E66787BCE2A1, 0x5394AC0334B6DE09,
        0x6BCE3E3ABFB2BE5F, 0x79D4794B5C93359D, 0x6812F54A528EC331, 0x41CA0EFC25B38BBB,
        0x71EA9A7E1445A731, 0x03B53643E9075A57, 0x4C2CA62F8B1479C3, 0x687B4349521E46CB,
        0x46436A8B9B01CDDF, 0x50610F6FEDEBB54B, 0x1904EF686F530273, 0x65A08A4CB11267FB,
        0x1A8C888F0CC20179, 0x6E6910A5FF0B6219, 0x154BED8CEC39269F, 0x151207705684B7A3,
    ],
    dtype=np.uint64,
)
# fmt: on


def _hash(text: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """A 64-bit code for each ``length``-byte span of ``text`` at ``starts``, ASCII case folded;
    equal spans (in any case) get equal codes. Up to 8 bytes the code is the span itself."""
    out = np.zeros(len(starts), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(length):
            byte = _FOLD[text[starts + i]].astype(np.uint64)
            if length <= 8:
                out |= byte << np.uint64(8 * i)
            else:
                out = out * _HASH_FACTORS[i % 64] + byte
    return out


def _non_ascii(records: pa.Array) -> pa.Array:
    """Which of ``records`` (binary) hold a byte outside ASCII."""
    offsets = np.frombuffer(records.buffers()[1], dtype=np.int32)[records.offset : records.offset + len(records) + 1]
    data = records.buffers()[2]
    if data is None:
        return pa.array(np.zeros(len(records), dtype=bool))
    high = np.flatnonzero(np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]] >= 0x80) + offsets[0]
    mask = np.zeros(len(records), dtype=bool)
    mask[np.searchsorted(offsets, high, side="right") - 1] = True
    return pa.array(mask)


def _any(masks: Sequence[pa.Array]) -> np.ndarray | None:
    if not masks:
        return None
    out = np.zeros(len(masks[0]), dtype=bool)
    for mask in masks:
        out |= np.asarray(pc.fill_null(mask, False))
    return out if out.any() else None
