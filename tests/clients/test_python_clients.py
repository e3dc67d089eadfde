"""PyPI ksqlDB clients against a real ksqlpy server, every call through the library itself.

* ``ksqldb`` (1.0.1): installed with the ``test`` extra, driven in-process.
* ``ksql-python-ng`` (0.29.0.1, module ``ksql``): needs httpx < 0.28, so it runs in its own
  cached environment through ``drivers/drive_ksql_python_ng.py``.
* ``ksqldb-client`` (0.28.2a2, pydantic models): likewise, through ``drivers/drive_ksqldb_client.py``.
* ``ksql`` (0.10.2, the original ksql-python, HTTP/2 through ``hyper``): its own environment too;
  ``hyper`` needs ``drivers/py310_compat`` to import on Python >= 3.10.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
from typing import Any

import pytest

from tests.clients.conftest import HERE, isolated_python
from tests.server.conftest import RunningServer

EARLIEST = {"ksql.streams.auto.offset.reset": "earliest"}
_names = itertools.count()


def fresh(prefix: str) -> str:
    return f"{prefix}{next(_names)}"


def test_ksqldb_client(client_server: RunningServer) -> None:
    ksqldb = pytest.importorskip("ksqldb", reason="the ksqldb client comes with the test extra")
    client = ksqldb.KSQLdbClient(client_server.url)
    name = fresh("KDB")

    assert any(p["name"] == "ksql.streams.auto.offset.reset" for p in client.get_properties())
    created = client.ksql(f"CREATE STREAM {name} (ID VARCHAR KEY, V INT) "
                          f"WITH (kafka_topic='{name.lower()}', value_format='JSON', partitions=1);")
    assert created[0]["commandStatus"]["status"] == "SUCCESS"
    assert name in {s["name"] for s in client.ksql("SHOW STREAMS;")[0]["streams"]}
    assert client.ksql(f"INSERT INTO {name} (ID, V) VALUES ('a', 1);") == []
    assert client.inserts_stream(name, [{"ID": "b", "V": 2}]) == [{"seq": 0, "status": "ok"}]

    pulled = client.query_sync(f"SELECT * FROM {name};")
    assert pulled[0]["columnNames"] == ["ID", "V"] and pulled[1:] == [["a", 1], ["b", 2]]

    async def push() -> list[Any]:
        sql = f"SELECT * FROM {name} EMIT CHANGES LIMIT 2;"
        return [row async for row in client.query_async(sql, stream_properties=EARLIEST)]

    pushed = asyncio.run(push())
    assert pushed[0]["queryId"].startswith(f"transient_{name}_") and pushed[1:] == [["a", 1], ["b", 2]]

    fields = client.ksql(f"DESCRIBE {name};")[0]["sourceDescription"]["fields"]
    assert [f["name"] for f in fields] == ["ID", "V"]
    copy = client.ksql(f"CREATE STREAM {name}_C AS SELECT * FROM {name} EMIT CHANGES;")[0]
    query_id = copy["commandStatus"]["queryId"]
    done = client.ksql(f"TERMINATE {query_id}; DROP STREAM {name}_C;")
    assert [e["commandStatus"]["status"] for e in done] == ["SUCCESS", "SUCCESS"]
    assert client.close_query("transient_NOPE_1") is False


def test_ksql_python_ng(client_server: RunningServer) -> None:
    python = isolated_python("ksql-python-ng", ["ksql-python-ng==0.29.0.1", "httpx[http2]>=0.27,<0.28"])
    name = fresh("NG")
    run = subprocess.run(
        [str(python), str(HERE / "drivers" / "drive_ksql_python_ng.py"), client_server.url, name],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["version"] and out["show_streams_type"] == "streams"
    assert out["created"] == "SUCCESS" and out["create_stream"] is True
    assert {name, f"{name}_RAW"} <= set(out["streams"])
    assert out["insert_values"] == []
    assert out["inserts_stream"] == [{"seq": 0, "status": "ok"}, {"seq": 1, "status": "ok"}]
    legacy = json.loads("".join(out["push_http1"]))  # /query: one JSON array, streamed in pieces
    assert legacy[0]["header"]["schema"] == "`ID` STRING, `V` INTEGER"
    assert [x["row"]["columns"] for x in legacy[1:4]] == [["a", 1], ["b", 2], ["c", 3]]
    assert legacy[4] == {"finalMessage": "Limit Reached"}
    assert out["push_http2"] == [{"ID": "a", "V": 1}, {"ID": "b", "V": 2}, {"ID": "c", "V": 3}]
    assert out["pull"] == [{"ID": "b", "V": 2}, {"ID": "c", "V": 3}]
    assert [f["name"] for f in out["describe"]] == ["ID", "V"] and out["describe"][0]["type"] == "KEY"
    assert out["csas"] is True
    (reads, writes) = out["dependent_queries"]
    assert len(reads) == 1 and reads[0].startswith(f"CSAS_{name}_COPY") and writes == []
    assert f"{name}_COPY" not in out["streams_after_drop"]
    assert out["error"] == ["line 1:1: Could not find STREAM/TABLE 'NOPE_NOT_THERE' in the Metastore", 40001]
    assert out["close_unknown_query"] is False


def test_ksqldb_client_pydantic(client_server: RunningServer) -> None:
    # Its declared pandas dependency is imported only by its own test helpers; httpx < 0.28 as declared.
    python = isolated_python(
        "ksqldb-client",
        ["--no-deps", "ksqldb-client==0.28.2a2"],
        ["pydantic>=2.6,<3", "httpx[http2]>=0.27,<0.28"],
    )
    name = fresh("KC")
    run = subprocess.run(
        [str(python), str(HERE / "drivers" / "drive_ksqldb_client.py"), client_server.url, name],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["info"] == ["default_", "RUNNING"]
    assert out["create"] == [f"stream/`{name}`/create", "SUCCESS"]
    assert out["insert_values"] == 0
    assert name in out["streams"]
    assert out["push"] == [
        {"row": {"columns": ["a", 1], "tombstone": None}},
        {"row": {"columns": ["b", 2], "tombstone": None}},
        {"finalMessage": "Limit Reached"},
    ]
    # A SELECT on a stream without EMIT CHANGES reads to the current end, then completes.
    assert out["pull"] == [
        {"row": {"columns": [1], "tombstone": None}},
        {"row": {"columns": [2], "tombstone": None}},
        {"finalMessage": "Query Completed"},
    ]
    assert out["describe_type"] == "sourceDescription"
    assert out["status"] == "SUCCESS"
    assert any(q.startswith(f"CSAS_{name}_C") for q in out["queries"])
    assert out["terminate_drop"] == ["SUCCESS", "SUCCESS"]
    assert out["error"] == "APIError: 40001 - line 1:1: Could not find STREAM/TABLE 'NOPE_NOT_THERE' in the Metastore"


def test_ksql_0_10_with_hyper(client_server: RunningServer) -> None:
    # ksql 0.10.2's setup.py imports pip, so it is built without build isolation.
    python = isolated_python("ksql-0.10.2", ["setuptools", "wheel"], ["--no-build-isolation", "ksql==0.10.2"])
    name = fresh("OLD")
    run = subprocess.run(
        [str(python), str(HERE / "drivers" / "drive_ksql_0_10.py"), client_server.url, name],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(HERE / "drivers" / "py310_compat")},
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["version"] and out["create"] == "SUCCESS"
    assert out["insert_values"] == "IndexError on []"  # the server answered [] as ksqlDB does
    # /inserts-stream is HTTP/2 only: this passes only through hyper's h2c upgrade with a body.
    assert out["inserts_stream"] == [{"seq": 0, "status": "ok"}, {"seq": 1, "status": "ok"}]
    meta, *rows = (json.loads(line) for line in out["push_http2"])
    assert meta["columnNames"] == ["ID", "V"] and rows == [["a", 1], ["b", 2]]
    legacy = json.loads("".join(out["push_http1"]))
    assert [x["row"]["columns"] for x in legacy[1:3]] == [["a", 1], ["b", 2]]
    assert legacy[3] == {"finalMessage": "Limit Reached"}
    assert [json.loads(line) for line in out["pull_http2"]][1:] == [[1], [2], [3]]
    assert out["describe"] == ["ID", "V"]
    assert out["terminate_drop"] == ["SUCCESS", "SUCCESS"]
    assert out["error"] == ["line 1:1: Could not find STREAM/TABLE 'NOPE_NOT_THERE' in the Metastore", 40001]
