"""Drives the ``ksql`` 0.10.2 client (PyPI; HTTP via urllib and ``hyper``) through one scenario:
``python drive_ksql_0_10.py URL STREAM`` prints one JSON object; the test asserts on it.

``hyper`` opens each connection with an HTTP/1.1 request offering ``Upgrade: h2c`` (body
included) and sends absolute-form request targets; its parser needs reason phrases.

Two client defects are worked around by reading what the client did yield: ``ksql()`` indexes
the answer's first element, so a statement answered with ``[]`` (INSERT VALUES, as in ksqlDB)
raises IndexError; and ``query()`` over ``/query`` raises RuntimeError after its last row
(a ``next()`` on an exhausted generator, PEP 479).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

from ksql import KSQLAPI
from ksql.errors import KSQLError

EARLIEST = {"ksql.streams.auto.offset.reset": "earliest"}


def rows_until_error(results: Iterator[str]) -> list[str]:
    out: list[str] = []
    while True:
        try:
            out.append(next(results))
        except (StopIteration, RuntimeError):
            return out


def main(url: str, name: str) -> dict[str, object]:
    client = KSQLAPI(url)
    out: dict[str, object] = {"version": client.get_ksql_version()}
    created = client.ksql(
        f"CREATE STREAM {name} (ID VARCHAR KEY, V INT) "
        f"WITH (kafka_topic='{name.lower()}', value_format='JSON', partitions=1);"
    )
    out["create"] = created[0]["commandStatus"]["status"]
    try:
        client.ksql(f"INSERT INTO {name} (ID, V) VALUES ('a', 1);")
    except IndexError:
        out["insert_values"] = "IndexError on []"
    out["inserts_stream"] = client.inserts_stream(name, [{"ID": "b", "V": 2}, {"ID": "c", "V": 3}])
    push = f"SELECT * FROM {name} EMIT CHANGES LIMIT 2;"
    out["push_http2"] = [line for line in client.query(push, stream_properties=EARLIEST, use_http2=True) if line]
    out["push_http1"] = rows_until_error(client.query(push, stream_properties=EARLIEST))
    out["pull_http2"] = [line for line in client.query(f"SELECT V FROM {name};", use_http2=True) if line]
    out["describe"] = [f["name"] for f in client.ksql(f"DESCRIBE {name};")[0]["sourceDescription"]["fields"]]
    copy = client.ksql(f"CREATE STREAM {name}_C AS SELECT * FROM {name} EMIT CHANGES;")[0]
    query_id = copy["commandStatus"]["queryId"]
    done = client.ksql(f"TERMINATE {query_id}; DROP STREAM {name}_C;")
    out["terminate_drop"] = [e["commandStatus"]["status"] for e in done]
    try:
        client.ksql("DESCRIBE NOPE_NOT_THERE;")
    except KSQLError as e:
        out["error"] = [e.msg, e.error_code]
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
