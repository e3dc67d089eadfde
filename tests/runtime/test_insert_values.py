"""INSERT INTO ... VALUES coerces a STRUCT value to its column's type by field name, as ksqlDB's
value coercer does: fields the value leaves out are NULL, fields the column lacks are dropped,
and a field both have must convert."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ksqlpy.errors import AnalysisError
from ksqlpy.runtime.engine import Engine


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = Engine.open({"ksql.streams.state.dir": ":memory:"})
    engine.session().execute_all(
        "CREATE STREAM S (K STRING KEY, D STRUCT<VOTES BIGINT, EMAIL STRING>) "
        "WITH (KAFKA_TOPIC='s', PARTITIONS=1, VALUE_FORMAT='JSON');"
    )
    yield engine
    engine.close()


def values_of(engine: Engine) -> list[str]:
    with engine.store.open_reader(["s"]) as reader:
        batch = reader.poll(1000, timeout=1)
    return [v.decode() for v in batch.column("value").to_pylist()]


def test_a_struct_field_the_column_lacks_is_dropped(engine: Engine) -> None:
    engine.session().execute_all("INSERT INTO S (K, D) VALUES ('a', STRUCT(EMAIL := 'x@y', OTHER := 'z'));")
    assert values_of(engine) == ['{"D":{"VOTES":null,"EMAIL":"x@y"}}']


def test_a_struct_field_of_the_wrong_type_is_refused(engine: Engine) -> None:
    with pytest.raises(AnalysisError, match="Expected type STRUCT<`VOTES` BIGINT, `EMAIL` STRING> for field D"):
        engine.session().execute_all("INSERT INTO S (K, D) VALUES ('a', STRUCT(VOTES := ARRAY[1], OTHER := 'z'));")
    assert engine.store.end_offsets("s") == {0: 0}
