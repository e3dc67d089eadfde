"""The key format of a join, and the re-keying it forces on its inputs (ksqlDB's KLIP-33).

Both inputs of a join must be keyed in one key format, which the join's internal topics and
stores use. ksqlDB (``JoinNode.resolveKeyFormats``) picks the format the left input prefers,
else the right's: an input prefers its source's key format unless it is re-keyed anyway; when
neither does, the first source key format that is not ``NONE``, else
``ksql.persistence.default.format.key``. Each input then takes that format
(``PreJoinRepartitionNode.setKeyFormat``) and is re-keyed through an internal topic, by its own
key, when

- its key is not in that format (``stream-table key-to-key - key format mismatch``), or
- the format infers schemas from Schema Registry (AVRO, PROTOBUF, JSON_SR): ksqlDB always
  repartitions those, so that both sides' keys carry the same schema id.

A stream input is re-keyed by ``streamSelectKeyV2``, a table input by ``tableSelectKeyV1``
(``<which>SourceKeyed``). This pass runs over the join tree the join planner built, where a
``SourceKeyed`` step already re-keys the inputs joined on an expression.
"""

from __future__ import annotations

from dataclasses import replace

from ksqlpy.parser import ast
from ksqlpy.planner.plans import expressions as ex
from ksqlpy.planner.steps import steps as s
from ksqlpy.planner.steps.formats import FormatInfo, Formats
from ksqlpy.planner.steps.schema import LogicalSchema

#: key formats that support schema inference: an input keyed in one is always repartitioned
SCHEMA_INFERENCE_FORMATS = frozenset({"AVRO", "PROTOBUF", "JSON_SR"})

_PREFIX = "PrependAlias"

#: a key format with its features, as a join's internal formats hold it
KeyFormat = tuple[FormatInfo, tuple[str, ...]]


def resolve_key_formats(root: s.JoinStep, default_key_format: str) -> s.JoinStep:
    """``root`` with every input keyed in the join's key format (see the module docstring)."""
    return _set_join(root, join_key_format(root, default_key_format))


def join_key_format(root: s.JoinStep, default_key_format: str) -> KeyFormat:
    """The key format of a join's result (``JoinNode.resolveKeyFormats``)."""
    return (
        _preferred(root) or _first_source_format(root) or (FormatInfo(format=default_key_format.upper()), ())
    )


def _preferred(step: s.ExecutionStep) -> KeyFormat | None:
    match step:
        case s.JoinStep():
            return _preferred(step.left_source) or _preferred(step.right_source)
        case s.StreamSelectKey() | s.StreamSelectKeyV1() | s.TableSelectKey():
            return None  # re-keyed anyway: any format will do
        case s.SourceStep():
            return step.formats.key_format, step.formats.key_features
        case s.OneInput():
            return _preferred(step.source)
    return None


def _first_source_format(step: s.ExecutionStep) -> KeyFormat | None:
    match step:
        case s.JoinStep():
            return _first_source_format(step.left_source) or _first_source_format(step.right_source)
        case s.SourceStep():
            f = step.formats
            return None if f.key_format.format.upper() == "NONE" else (f.key_format, f.key_features)
        case s.OneInput():
            return _first_source_format(step.source)
    return None


def _with_key(formats: Formats, fmt: KeyFormat) -> Formats:
    return replace(formats, key_format=fmt[0], key_features=fmt[1])


def _set_join(step: s.JoinStep, fmt: KeyFormat) -> s.JoinStep:
    left = _set_input(step.left_source, fmt)
    right = _set_input(step.right_source, fmt)
    match step:
        case s.StreamStreamJoin():
            return replace(
                step,
                left_source=left,
                right_source=right,
                left_internal_formats=_with_key(step.left_internal_formats, fmt),
                right_internal_formats=_with_key(step.right_internal_formats, fmt),
            )
        case s.StreamTableJoin():
            return replace(
                step,
                left_source=left,
                right_source=right,
                internal_formats=_with_key(step.internal_formats, fmt),
            )
        case s.ForeignKeyTableTableJoin():
            return step  # no co-partitioning: each side keeps its own key format
    return replace(step, left_source=left, right_source=right)


def _set_input(step: s.ExecutionStep, fmt: KeyFormat) -> s.ExecutionStep:
    """One input of a join: a nested join, a source under its ``PrependAlias`` select, or
    either re-keyed by a join expression."""
    match step:
        case s.JoinStep():
            return _set_join(step, fmt)
        case s.StreamSelectKey() | s.StreamSelectKeyV1():
            if isinstance(step.source, s.JoinStep):
                # re-keyed anyway; the join under it resolves its own key format
                inner = step.source
                own = _preferred(inner) or _first_source_format(inner) or fmt
                return replace(step, source=_set_join(inner, own))
            return step
        case s.StreamSelect() | s.TableSelect() if step.context.startswith(_PREFIX):
            return _prepend_alias(step, fmt)
    return step


def _prepend_alias(step: s.StreamSelect | s.TableSelect, fmt: KeyFormat) -> s.ExecutionStep:
    inner = step.source
    if not isinstance(inner, s.SourceStep) or isinstance(inner, s.WindowedTableSource):
        return step  # re-keyed by its join expression, or a windowed table (never re-keyed)
    own = (inner.formats.key_format, inner.formats.key_features)
    if fmt[0].format.upper() not in SCHEMA_INFERENCE_FORMATS and _same(own, fmt):
        return step
    which = step.context[len(_PREFIX) :]
    keys = tuple(_key_names(inner))
    if len(keys) != 1:
        return step
    rekeyed: s.ExecutionStep
    internal = _with_key(Formats(key_format=fmt[0], value_format=inner.formats.value_format), fmt)
    if isinstance(step, s.TableSelect):
        rekeyed = s.TableSelectKey(
            context=f"{which}SourceKeyed", source=inner, internal_formats=internal, key_expressions=keys
        )
        formats = step.internal_formats
        return replace(
            step, source=rekeyed, internal_formats=None if formats is None else _with_key(formats, fmt)
        )
    rekeyed = s.StreamSelectKey(context=f"{which}SourceKeyed", source=inner, key_expressions=keys)
    return replace(step, source=rekeyed)


def _key_names(source: s.SourceStep) -> list[str]:
    return [ex.text(ast.ColumnRef(name=c.name)) for c in LogicalSchema.parse(source.source_schema).key]


def _same(a: KeyFormat, b: KeyFormat) -> bool:
    return (
        a[0].format.upper() == b[0].format.upper()
        and dict(a[0].properties) == dict(b[0].properties)
        and set(a[1]) == set(b[1])
    )


__all__ = ["SCHEMA_INFERENCE_FORMATS", "join_key_format", "resolve_key_formats"]
