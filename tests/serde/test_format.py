"""Format names and the combinations ksqlDB rejects, with its messages."""

from __future__ import annotations

import pytest

from ksqlpy import sqltypes as st
from ksqlpy.errors import AnalysisError
from ksqlpy.runtime.serde import Format, SerdeSpec, parse_delimiter, validate_format


def spec(name: str, wrap: bool | None = None) -> SerdeSpec:
    return SerdeSpec(format=Format.parse(name), wrap_single_value=wrap)


def rejects(s: SerdeSpec, cols: list[st.Field], *, is_key: bool) -> str:
    with pytest.raises(AnalysisError) as info:
        validate_format(s, cols, is_key=is_key)
    return info.value.message


@pytest.mark.parametrize("name", ["json", "Json", "DELIMITED", "kafka", "none", "avro", "protobuf_nosr", "JSON_SR"])
def test_parse_any_case(name: str) -> None:
    assert Format.parse(name).value == name.upper()


def test_unknown_format() -> None:
    with pytest.raises(AnalysisError, match="^Unknown format: FOO$"):
        Format.parse("foo")


def test_kafka_rules() -> None:
    assert rejects(spec("KAFKA"), [st.Field("V0", st.INTEGER), st.Field("V1", st.STRING)], is_key=False) == (
        "The 'KAFKA' format only supports a single field. Got: [`V0` INTEGER, `V1` STRING]"
    )
    assert rejects(spec("KAFKA"), [st.Field("F", st.BOOLEAN)], is_key=False) == (
        "The 'KAFKA' format does not support type 'BOOLEAN'"
    )
    assert rejects(spec("KAFKA"), [st.Field("KEY", st.Decimal(2, 1))], is_key=True) == (
        "Key format does not support schema.\nformat: KAFKA\n"
        "schema: Persistence{columns=[`KEY` DECIMAL(2, 1) KEY], features=[]}\n"
        "reason: The 'KAFKA' format does not support type 'DECIMAL'"
    )
    assert "Got: [`K1` INTEGER KEY, `K2` INTEGER KEY]" in rejects(
        spec("KAFKA"), [st.Field("K1", st.INTEGER), st.Field("K2", st.INTEGER)], is_key=True
    )
    assert rejects(spec("KAFKA", True), [st.Field("FOO", st.INTEGER)], is_key=False) == (
        "Format 'KAFKA' does not support 'WRAP_SINGLE_VALUE' set to 'true'."
    )
    validate_format(spec("KAFKA", False), [st.Field("FOO", st.INTEGER)], is_key=False)
    validate_format(spec("KAFKA"), [], is_key=True)


def test_delimited_rules() -> None:
    assert rejects(spec("DELIMITED"), [st.Field("K", st.Array(st.DOUBLE))], is_key=True) == (
        "Key format does not support schema.\nformat: DELIMITED\n"
        "schema: Persistence{columns=[`K` ARRAY<DOUBLE> KEY], features=[]}\n"
        "reason: The 'DELIMITED' format does not support type 'ARRAY', column: `K`"
    )
    assert "The 'DELIMITED' format does not support type 'MAP'" in rejects(
        spec("DELIMITED"), [st.Field("M", st.Map(st.STRING, st.INTEGER))], is_key=False
    )
    validate_format(spec("DELIMITED"), [st.Field("K1", st.STRING), st.Field("K2", st.STRING)], is_key=True)


def test_map_keys_rejected_first() -> None:
    message = rejects(spec("DELIMITED"), [st.Field("K", st.Map(st.STRING, st.DOUBLE))], is_key=True)
    assert message == (
        "Map keys, including types that contain maps, are not supported as they may lead to unexpected "
        "behavior due to inconsistent serialization. Key column name: `K`. Column type: MAP<STRING, DOUBLE>. "
        "See https://github.com/confluentinc/ksql/issues/6621 for more."
    )
    nested = st.Array(st.Map(st.INTEGER, st.DOUBLE))
    assert "Column type: ARRAY<MAP<INTEGER, DOUBLE>>" in rejects(spec("JSON"), [st.Field("K", nested)], is_key=True)


def test_json_map_keys_must_be_strings() -> None:
    assert rejects(spec("JSON"), [st.Field("FOO", st.Map(st.INTEGER, st.DOUBLE))], is_key=False) == (
        "JSON only supports MAP types with STRING keys"
    )


def test_none_format_takes_no_columns() -> None:
    assert rejects(spec("NONE"), [st.Field("K", st.STRING)], is_key=True) == (
        "The 'NONE' format can only be used when no columns are defined. Got: [`K` STRING KEY]"
    )
    assert rejects(spec("NONE"), [st.Field("FOO", st.INTEGER)], is_key=False) == (
        "The 'NONE' format can only be used when no columns are defined. Got: [`FOO` INTEGER]"
    )
    validate_format(spec("NONE"), [], is_key=True)


@pytest.mark.parametrize("wrap", [True, False])
def test_wrapping_needs_a_single_value_column(wrap: bool) -> None:
    cols = [st.Field("F0", st.STRING), st.Field("F1", st.STRING)]
    assert rejects(spec("JSON", wrap), cols, is_key=False) == (
        "'WRAP_SINGLE_VALUE' is only valid for single-field value schemas"
    )


@pytest.mark.parametrize("name", ["AVRO", "PROTOBUF", "PROTOBUF_NOSR", "JSON_SR"])
def test_schema_registry_formats_are_accepted(name: str) -> None:
    assert Format.parse(name).implemented
    validate_format(spec(name), [st.Field("A", st.INTEGER)], is_key=False)


def test_delimiters() -> None:
    assert parse_delimiter("TAB") == "\t" and parse_delimiter("SPACE") == " " and parse_delimiter("|") == "|"
    with pytest.raises(AnalysisError) as info:
        parse_delimiter("<~>")
    assert info.value.message == (
        "Configuration VALUE_DELIMITER is invalid: Invalid delimiter value: '<~>'. "
        "Delimiter must be a single character or TAB,SPACE\nExample valid value: ';'"
    )
    for blank in ["", " ", "\t"]:
        with pytest.raises(AnalysisError, match="Delimiter cannot be empty"):
            parse_delimiter(blank)
