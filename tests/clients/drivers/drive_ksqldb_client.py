"""Drives the ``ksqldb-client`` PyPI client (module ``ksqldb_client``, pydantic models) through one
scenario: ``python drive_ksqldb_client.py URL STREAM`` prints one JSON object; the test asserts on it.

Two of its methods cannot parse ksqlDB's answers and are left out: ``query_stream`` reads the
delimited ``/query-stream`` body as a single JSON document, and ``status`` requires ``queryId`` to
be a string where ksqlDB sends ``null`` for statements that start no query.
"""

from __future__ import annotations

import json
import sys
import warnings

from ksqldb_client import KSqlDBClient
from ksqldb_client.exceptions import APIError

EARLIEST = {"ksql.streams.auto.offset.reset": "earliest"}


def main(url: str, name: str) -> dict[str, object]:
    warnings.simplefilter("ignore", DeprecationWarning)  # query() warns that /query is legacy
    client = KSqlDBClient(url)
    out: dict[str, object] = {}
    info = client.info().ksql_server_info
    out["info"] = [info.ksql_service_id, info.server_status]
    created = client.ksql(
        f"CREATE STREAM {name} (ID VARCHAR KEY, V INT) "
        f"WITH (kafka_topic='{name.lower()}', value_format='JSON', partitions=1);"
    )
    out["create"] = [created[0].command_id, created[0].command_status.status]
    out["insert_values"] = len(client.ksql(f"INSERT INTO {name} (ID, V) VALUES ('a', 1);").root)
    client.ksql(f"INSERT INTO {name} (ID, V) VALUES ('b', 2);")
    out["streams"] = sorted(s.name for s in client.ksql("SHOW STREAMS;")[0].streams or ())
    push = client.query(f"SELECT * FROM {name} EMIT CHANGES LIMIT 2;", stream_properties=EARLIEST)
    out["push"] = [item.model_dump(by_alias=True) for item in push][1:]
    pull = client.query(f"SELECT V FROM {name};")
    out["pull"] = [item.model_dump(by_alias=True) for item in pull][1:]
    out["describe_type"] = client.ksql(f"DESCRIBE {name};")[0].type
    copy = client.ksql(f"CREATE STREAM {name}_C AS SELECT * FROM {name} EMIT CHANGES;")[0]
    query_id = copy.command_status.query_id
    out["status"] = client.status(f"stream/`{name}_C`/create").status
    out["queries"] = [q.id for q in client.ksql("SHOW QUERIES;")[0].queries or ()]
    done = client.ksql(f"TERMINATE {query_id}; DROP STREAM {name}_C;")
    out["terminate_drop"] = [e.command_status.status for e in done]
    try:
        client.ksql("DESCRIBE NOPE_NOT_THERE;")
    except APIError as e:
        out["error"] = str(e)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
