"""Drives the ``ksql-python-ng`` client (PyPI, module ``ksql``) through one scenario.

Run in that client's own environment: ``python drive_ksql_python_ng.py URL STREAM``. Prints one JSON
object with what each step returned; the test asserts on it.
"""

from __future__ import annotations

import json
import sys

from ksql import KSQLAPI
from ksql.errors import KSQLError
from ksql.utils import drop_stream, get_dependent_queries

EARLIEST = {"ksql.streams.auto.offset.reset": "earliest"}


def main(url: str, name: str) -> dict[str, object]:
    out: dict[str, object] = {}
    client = KSQLAPI(url)
    out["version"] = client.get_ksql_version()
    out["show_streams_type"] = client.ksql("SHOW STREAMS;")[0]["@type"]
    created = client.ksql(
        f"CREATE STREAM {name}_RAW (ID VARCHAR KEY, V INT) "
        f"WITH (kafka_topic='{name.lower()}', value_format='JSON', partitions=1);"
    )
    out["created"] = created[0]["commandStatus"]["status"]
    out["create_stream"] = client.create_stream(name, ["ID VARCHAR KEY", "V INT"], name.lower())
    out["streams"] = sorted(s["name"] for s in client.ksql("SHOW STREAMS;")[0]["streams"])
    out["insert_values"] = client.ksql(f"INSERT INTO {name} (ID, V) VALUES ('a', 1);")
    out["inserts_stream"] = client.inserts_stream(name, [{"ID": "b", "V": 2}, {"ID": "c", "V": 3}])
    push = f"SELECT * FROM {name} EMIT CHANGES LIMIT 3;"
    out["push_http1"] = list(client.query(push, stream_properties=EARLIEST))
    out["push_http2"] = list(client.query(push, stream_properties=EARLIEST, use_http2=True, parse=True))
    out["pull"] = list(client.query(f"SELECT * FROM {name} WHERE V > 1;", use_http2=True, parse=True))
    out["describe"] = client.ksql(f"DESCRIBE {name};")[0]["sourceDescription"]["fields"]
    out["csas"] = client.create_stream_as(f"{name}_COPY", ["ID", "V"], name, kafka_topic=f"{name.lower()}_copy")
    out["dependent_queries"] = get_dependent_queries(client, name)
    drop_stream(client, f"{name}_COPY")  # TERMINATE its query, then DROP
    out["streams_after_drop"] = sorted(s["name"] for s in client.ksql("SHOW STREAMS;")[0]["streams"])
    try:
        client.ksql("DESCRIBE NOPE_NOT_THERE;")
    except KSQLError as e:
        out["error"] = [e.msg, e.error_code]
    out["close_unknown_query"] = client.close_query("transient_NOPE_1")
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
