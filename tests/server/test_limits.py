"""Request size limits over real HTTP: bodies past ``ksqlpy.request.max.bytes`` get 413 before
they are read, long statements 400, long ``/inserts-stream`` lines an error ack.

The server runs with small limits (64 KiB bodies, 16 Ki-character statements, 16 KiB records)
so that requests a few MB long are far past them and the tests stay quick.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import anyio
import httpx
import orjson
import pytest

from ksqlpy.server.limits import LineReader, RecordTooLarge
from tests.server.conftest import RunningServer, ServerThread, open_engine, server_config

BODY_LIMIT = 64 * 1024
STATEMENT_LIMIT = 16 * 1024
RECORD_LIMIT = 16 * 1024
OVERSIZED = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    config = server_config(
        **{
            "ksqlpy.request.max.bytes": str(BODY_LIMIT),
            "ksqlpy.statement.max.chars": str(STATEMENT_LIMIT),
            "ksqlpy.inserts.max.record.bytes": str(RECORD_LIMIT),
        }
    )
    engine = open_engine(config)
    from ksqlpy.server.app import create_app

    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    port = config.listeners[0].port
    try:
        yield RunningServer(url=f"http://127.0.0.1:{port}", port=port, engine=engine)
    finally:
        thread.stop()
        engine.close()


def huge_statement() -> bytes:
    return orjson.dumps({"ksql": "SHOW STREAMS; " + "-- padding\n" * (OVERSIZED // 11)})


def test_declared_length_over_the_limit_is_refused_before_the_body_is_sent(server: RunningServer) -> None:
    # Only the headers go out: the answer must come without waiting for the 3 MB body.
    head = (
        f"POST /ksql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {OVERSIZED}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head + b'{"ksql": "')
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large"
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    error = orjson.loads(body)
    assert error == {
        "@type": "generic_error",
        "error_code": 41300,
        "message": f"Request body is too large: the limit is {BODY_LIMIT} bytes (ksqlpy.request.max.bytes).",
    }


def test_chunked_body_over_the_limit_is_refused(server: RunningServer) -> None:
    body = huge_statement()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 32 * 1024):
            yield body[i : i + 32 * 1024]

    try:
        r = httpx.post(f"{server.url}/ksql", content=chunks(), timeout=30)
    except httpx.WriteError:
        pytest.fail("the server closed the connection without an answer")
    assert r.status_code == 413
    assert r.json()["error_code"] == 41300


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_query_stream_body_over_the_limit_is_413(server: RunningServer, http2: bool) -> None:
    body = orjson.dumps({"sql": "SELECT * FROM s EMIT CHANGES;", "properties": {"x": "y" * OVERSIZED}})
    with httpx.Client(http1=not http2, http2=http2, timeout=30) as client:
        r = client.post(f"{server.url}/query-stream", content=body)
    assert r.status_code == 413
    assert r.json()["error_code"] == 41300


def test_statement_over_the_limit_is_400_before_it_is_parsed(server: RunningServer) -> None:
    text = "SHOW STREAMS; " + "-- padding\n" * (STATEMENT_LIMIT // 11 + 10)
    assert len(orjson.dumps({"ksql": text})) < BODY_LIMIT
    r = httpx.post(f"{server.url}/ksql", content=orjson.dumps({"ksql": text}), timeout=30)
    assert r.status_code == 400
    error = r.json()
    assert error["error_code"] == 40000
    assert error["message"].startswith(f"Statement is too long: {len(text)} characters, the limit is 16384")
    query = httpx.post(
        f"{server.url}/query-stream",
        content=orjson.dumps({"sql": "SELECT * FROM s;" + " " * 20000}),
        timeout=30,
    )
    assert query.status_code == 400 and "Statement is too long" in query.json()["message"]


def test_requests_within_the_limits_still_work(server: RunningServer) -> None:
    r = httpx.post(f"{server.url}/ksql", content=orjson.dumps({"ksql": "SHOW STREAMS;"}), timeout=30)
    assert r.status_code == 200
    assert r.json()[0]["@type"] == "streams"


def test_inserts_line_over_the_limit_gets_an_error_ack_after_the_rows_before_it(
    server: RunningServer,
) -> None:
    create = (
        "CREATE STREAM limited (ID VARCHAR KEY, V VARCHAR) "
        "WITH (kafka_topic='limited', value_format='JSON', partitions=1);"
    )
    assert (
        httpx.post(f"{server.url}/ksql", content=orjson.dumps({"ksql": create}), timeout=30).status_code
        == 200
    )
    body = (
        b'{"target":"LIMITED"}\n'
        + b'{"ID":"a","V":"small"}\n'
        + orjson.dumps({"ID": "b", "V": "x" * OVERSIZED})
        + b'\n{"ID":"c","V":"after"}\n'
    )
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        r = client.post(f"{server.url}/inserts-stream", content=body)
    assert r.status_code == 200
    acks = [orjson.loads(line) for line in r.content.splitlines()]
    assert acks[0] == {"seq": 0, "status": "ok"}
    assert acks[1]["status"] == "error" and acks[1]["seq"] == 1 and acks[1]["error_code"] == 40000
    assert acks[1]["message"] == (
        f"Record is too large: the limit is {RECORD_LIMIT} bytes per line (ksqlpy.inserts.max.record.bytes)."
    )
    assert len(acks) == 2


def test_first_inserts_line_over_the_limit_is_a_bad_request(server: RunningServer) -> None:
    body = orjson.dumps({"target": "LIMITED", "properties": {"x": "y" * OVERSIZED}}) + b"\n"
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        r = client.post(f"{server.url}/inserts-stream", content=body)
    assert r.status_code == 400
    assert r.json()["message"].startswith("Record is too large")


# --- the line reader itself, fed the way the ASGI server feeds it ------------------------------


def feed(chunks: list[bytes]) -> tuple[list[int], object]:
    """An ASGI ``receive`` handing out ``chunks``; the list counts how many were taken."""
    taken = [0]

    async def receive() -> dict[str, object]:
        i = taken[0]
        taken[0] += 1
        return {"type": "http.request", "body": chunks[i], "more_body": i + 1 < len(chunks)}

    return taken, receive


def test_line_reader_joins_lines_split_across_chunks() -> None:
    _taken, receive = feed([b'{"target":"S"}\n{"a":', b"1}\n{", b'"a":2}\n\n{"a":3}'])

    async def read() -> list[object]:
        reader = LineReader(receive, 100)  # type: ignore[arg-type]
        got: list[object] = [await reader.next_line()]
        while (lines := await reader.available_lines()) is not None:
            got.append(lines)
        return got

    assert anyio.run(read) == [b'{"target":"S"}', [b'{"a":1}'], [b'{"a":2}'], [b'{"a":3}']]


def test_line_reader_refuses_a_long_line_before_its_end_arrives() -> None:
    chunk = b"x" * 1024
    taken, receive = feed([b"{}\n", *[chunk] * 4096])  # a 4 MB line

    async def read() -> None:
        reader = LineReader(receive, 10 * 1024)  # type: ignore[arg-type]
        await reader.next_line()
        await reader.available_lines()

    with pytest.raises(RecordTooLarge):
        anyio.run(read)
    assert taken[0] <= 12  # about 10 KiB read of the 4 MB
