"""Transport behaviour ksqlDB clients rely on, over real sockets: reason phrases, h2c (prior
knowledge and upgrade), absolute-form targets, content negotiation, error bodies."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import orjson
import pytest

from tests.server.conftest import RunningServer


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send bytes, read until the server closes the connection or goes quiet for 2 s."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(request)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            pass  # an upgraded HTTP/2 connection stays open
        return b"".join(chunks)


def test_http11_status_line_has_reason_phrase(transport_server: RunningServer) -> None:
    reply = raw_exchange(
        transport_server.port, b"GET /chc/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")


def test_not_found_reason_and_plain_body(transport_server: RunningServer) -> None:
    r = httpx.get(f"{transport_server.url}/nope")
    assert r.status_code == 404
    assert r.text == "Not Found"
    reply = raw_exchange(transport_server.port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 404 Not Found\r\n")


def test_absolute_form_target_is_routed_by_path(transport_server: RunningServer) -> None:
    target = f"http://127.0.0.1:{transport_server.port}/chc/ready".encode()
    reply = raw_exchange(
        transport_server.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert reply.startswith(b"HTTP/1.1 200 OK")
    assert reply.endswith(b"{}")


def test_http2_prior_knowledge(transport_server: RunningServer) -> None:
    with httpx.Client(http1=False, http2=True) as client:
        r = client.get(f"{transport_server.url}/chc/live")
    assert r.http_version == "HTTP/2"
    assert r.status_code == 200
    assert r.json() == {}


def test_one_http2_connection_serves_more_than_a_thousand_requests(transport_server: RunningServer) -> None:
    # ksqlDB clients keep one connection for their lifetime; it must not be closed after N requests.
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    statuses: list[bytes] = []
    with socket.create_connection(("127.0.0.1", transport_server.port), timeout=5) as sock:
        sock.sendall(conn.data_to_send())
        for _ in range(1_100):
            stream = conn.get_next_available_stream_id()
            headers = [(":method", "GET"), (":path", "/chc/live"), (":scheme", "http"), (":authority", "x")]
            conn.send_headers(stream, headers, end_stream=True)
            sock.sendall(conn.data_to_send())
            ended = False
            while not ended:
                events = conn.receive_data(sock.recv(65536))
                for event in events:
                    assert not isinstance(event, h2.events.ConnectionTerminated), (
                        f"closed after {len(statuses)}"
                    )
                    if isinstance(event, h2.events.ResponseReceived):
                        statuses.append(dict(event.headers)[b":status"])
                    if isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    ended = ended or (isinstance(event, h2.events.StreamEnded) and event.stream_id == stream)
                sock.sendall(conn.data_to_send())
    assert statuses == [b"200"] * 1_100


def test_h2c_upgrade_switches_protocols(transport_server: RunningServer) -> None:
    request = (
        b"GET /chc/live HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    reply = raw_exchange(transport_server.port, request)
    assert reply.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"upgrade: h2c" in reply.lower()


@pytest.mark.parametrize(
    "settings", [b"!!not-base64!!", b"AAMAAABkAAR", b"AAMAAABkAARAAAAAAAIAAAAAx", b"AAIAAAAC"]
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_h2c_upgrade_with_bad_settings_is_refused_with_400(
    transport_server: RunningServer, settings: bytes, method: str
) -> None:
    # Not base64, a truncated setting, a stray character, ENABLE_PUSH=2 (out of range).
    body = b"{}" if method == "POST" else b""
    request = (
        method.encode() + b" /chc/live HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    reply = raw_exchange(transport_server.port, request)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    error = orjson.loads(payload)
    assert error["@type"] == "generic_error" and error["error_code"] == 40000
    assert error["message"].startswith("Invalid HTTP2-Settings header")
    # The server is still serving.
    assert httpx.get(f"{transport_server.url}/chc/live").status_code == 200


def test_h2c_upgrade_with_a_body_continues_the_request_over_http2(transport_server: RunningServer) -> None:
    """hyper offers the upgrade on a POST with its body; the request must reach the endpoint as
    HTTP/2 stream 1 (/inserts-stream refuses HTTP/1.1 with 40004, so 40000 proves the switch)."""
    body = b'{"properties":{}}\n'
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = client.initiate_upgrade_connection()
    request = (
        b"POST /inserts-stream HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with socket.create_connection(("127.0.0.1", transport_server.port), timeout=10) as s:
        s.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            received += s.recv(65536)
        head, rest = received.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols")
        s.sendall(client.data_to_send())  # the client preface
        status, data, ended = None, b"", False
        events = client.receive_data(rest)
        while not ended:
            for event in events:
                match event:
                    case h2.events.ResponseReceived(stream_id=1, headers=headers):
                        status = dict(headers)[b":status"]
                    case h2.events.DataReceived(stream_id=1, data=chunk):
                        data += chunk
                    case h2.events.StreamEnded(stream_id=1):
                        ended = True
            s.sendall(client.data_to_send())
            if not ended:
                events = client.receive_data(s.recv(65536))
    assert status == b"400"
    assert orjson.loads(data)["error_code"] == 40000


def test_root_redirects_to_info(transport_server: RunningServer) -> None:
    r = httpx.get(f"{transport_server.url}/")
    assert r.status_code == 307
    assert r.headers["location"] == "/info"


def test_unacceptable_accept_falls_to_not_found(transport_server: RunningServer) -> None:
    r = httpx.post(f"{transport_server.url}/ksql", content=b"{}", headers={"Accept": "text/csv"})
    assert r.status_code == 404
    assert r.text == "Not Found"


def test_malformed_json_is_generic_error_40000(transport_server: RunningServer) -> None:
    r = httpx.post(
        f"{transport_server.url}/ksql",
        content=b'{"ksql": "SHOW STREAMS;"',
        headers={"Content-Type": "text/plain", "Authorization": "Basic Og=="},
    )
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["@type"] == "generic_error"
    assert body["error_code"] == 40000
    assert body["message"].startswith("Invalid JSON in request")


def test_query_stream_requires_sql(transport_server: RunningServer) -> None:
    r = httpx.post(f"{transport_server.url}/query-stream", content=b'{"properties": {}}')
    assert r.status_code == 400
    assert r.json() == {
        "@type": "generic_error",
        "error_code": 40000,
        "message": "Invalid JSON in request: Missing required creator property 'sql'",
    }


def test_inserts_stream_refuses_http11(transport_server: RunningServer) -> None:
    r = httpx.post(f"{transport_server.url}/inserts-stream", content=b'{"target":"pv"}\n')
    assert r.status_code == 400
    assert orjson.loads(r.content) == {
        "@type": "generic_error",
        "error_code": 40004,
        "message": "This endpoint is only available when using HTTP2",
    }


def test_close_query_requires_query_id(transport_server: RunningServer) -> None:
    r = httpx.post(f"{transport_server.url}/close-query", content=b"{}")
    assert r.status_code == 400
    assert r.json()["error_code"] == 40000


def test_cluster_status_is_404_without_heartbeats(transport_server: RunningServer) -> None:
    r = httpx.get(f"{transport_server.url}/clusterStatus")
    assert r.status_code == 404
    assert r.content == b""


def h2_frames(port: int, path: str, body: bytes, *, until_lines: int) -> list[bytes]:
    """POST ``body`` on HTTP/2 stream 1 and return the response's DATA frames, reading until
    they hold ``until_lines`` lines or the stream ends."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "POST"), (":path", path), (":scheme", "http"), (":authority", "x")])
    client.send_data(1, body, end_stream=True)
    frames: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(client.data_to_send())
        ended = False
        while not ended and sum(f.count(b"\n") for f in frames) < until_lines:
            for event in client.receive_data(s.recv(65536)):
                if isinstance(event, h2.events.DataReceived) and event.stream_id == 1:
                    if event.data:  # not the empty frame that may end the stream
                        frames.append(event.data)
                    client.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, h2.events.StreamEnded):
                    ended = True
            s.sendall(client.data_to_send())
    return frames


def test_delimited_rows_and_acks_are_a_data_frame_each(ksql_server: RunningServer) -> None:
    """The npm ksqldb-client parses each DATA frame as one row: rows written to the response
    together (a push query's batch, a batch of insert acks) still arrive a line a frame."""
    rows = 300
    create = (
        "CREATE STREAM framed (id VARCHAR KEY, n INT) "
        "WITH (kafka_topic='framed', value_format='JSON', partitions=1);"
    )
    assert httpx.post(f"{ksql_server.url}/ksql", json={"ksql": create}).status_code == 200
    inserts = b'{"target":"FRAMED"}\n' + b"".join(b'{"ID":"k","N":%d}\n' % i for i in range(rows))
    acks = h2_frames(ksql_server.port, "/inserts-stream", inserts, until_lines=rows)
    assert [orjson.loads(f) for f in acks] == [{"seq": i, "status": "ok"} for i in range(rows)]
    query = orjson.dumps(
        {
            "sql": "SELECT n FROM framed EMIT CHANGES LIMIT 300;",
            "properties": {"auto.offset.reset": "earliest"},
        }
    )
    frames = h2_frames(ksql_server.port, "/query-stream", query, until_lines=rows + 1)
    assert all(f.endswith(b"\n") and f.count(b"\n") == 1 for f in frames)
    assert [orjson.loads(f) for f in frames[1:]] == [[i] for i in range(rows)]


def test_a_long_inserts_stream_acks_and_stores_every_row_in_order(ksql_server: RunningServer) -> None:
    """Rows arriving while a batch goes into the store are gathered into the next batch: every
    row is acked once, in order, and stored in order."""
    rows = 5000
    create = (
        "CREATE STREAM gathered (id VARCHAR KEY, n INT) "
        "WITH (kafka_topic='gathered', value_format='JSON', partitions=1);"
    )
    assert httpx.post(f"{ksql_server.url}/ksql", json={"ksql": create}).status_code == 200

    def body() -> Iterator[bytes]:
        yield b'{"target":"GATHERED"}\n'
        for start in range(0, rows, 50):
            yield b"".join(b'{"ID":"k","N":%d}\n' % i for i in range(start, start + 50))

    with httpx.Client(http1=False, http2=True, timeout=60) as client:
        acks = client.post(f"{ksql_server.url}/inserts-stream", content=body())
        assert [orjson.loads(line) for line in acks.text.splitlines()] == [
            {"seq": i, "status": "ok"} for i in range(rows)
        ]
        query = {
            "sql": f"SELECT n FROM gathered EMIT CHANGES LIMIT {rows};",
            "properties": {"auto.offset.reset": "earliest"},
        }
        answer = client.post(f"{ksql_server.url}/query-stream", json=query)
    assert [orjson.loads(line) for line in answer.text.splitlines()[1:]] == [[i] for i in range(rows)]


def test_push_queries_sharing_a_connection_get_a_row_a_frame_past_a_frame_and_a_window(
    ksql_server: RunningServer,
) -> None:
    """Push queries of one plan share their batches, framed once for all of them: on one
    connection, with batches larger than a frame and a stream window smaller than a batch, each
    stream still gets its own rows, a row a DATA frame, all of them, in order."""
    rows, streams = 3000, (1, 3, 5)
    create = (
        "CREATE STREAM shared_frames (id VARCHAR KEY, n INT, pad VARCHAR) "
        "WITH (kafka_topic='shared_frames', value_format='JSON', partitions=1);"
    )
    assert httpx.post(f"{ksql_server.url}/ksql", json={"ksql": create}).status_code == 200
    pad = "x" * 40
    inserts = b'{"target":"SHARED_FRAMES"}\n' + b"".join(
        b'{"ID":"k","N":%d,"PAD":"%s"}\n' % (i, pad.encode()) for i in range(rows)
    )
    with httpx.Client(http1=False, http2=True, timeout=60) as client:
        acks = client.post(f"{ksql_server.url}/inserts-stream", content=inserts)
        assert acks.text.count('"ok"') == rows
    client_h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client_h2.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 5000}
    )
    client_h2.initiate_connection()
    query = orjson.dumps(
        {
            "sql": f"SELECT n, pad FROM shared_frames EMIT CHANGES LIMIT {rows};",
            "properties": {"auto.offset.reset": "earliest"},
        }
    )
    for stream in streams:
        client_h2.send_headers(
            stream,
            [(":method", "POST"), (":path", "/query-stream"), (":scheme", "http"), (":authority", "x")],
        )
        client_h2.send_data(stream, query, end_stream=True)
    frames: dict[int, list[bytes]] = {stream: [] for stream in streams}
    ended: set[int] = set()
    with socket.create_connection(("127.0.0.1", ksql_server.port), timeout=30) as s:
        s.sendall(client_h2.data_to_send())
        while len(ended) < len(streams):
            data = s.recv(65536)
            assert data, "the server closed the connection"
            for event in client_h2.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    if event.data:
                        frames[event.stream_id].append(event.data)
                    client_h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended.add(event.stream_id)
            s.sendall(client_h2.data_to_send())
    for stream in streams:
        got = frames[stream]
        bad = [f for f in got if not (f.endswith(b"\n") and f.count(b"\n") == 1)]
        assert not bad, (len(got), [b[:200] for b in bad[:3]])
        assert all(f.endswith(b"\n") and f.count(b"\n") == 1 for f in got)
        assert [orjson.loads(f) for f in got[1:]] == [[i, pad] for i in range(rows)]


def test_http11_response_head_goes_out_before_any_row(ksql_server: RunningServer) -> None:
    """The head of an HTTP/1.1 response waits for its body's first bytes only while the loop
    runs what is ready: a PRINT of an empty topic (no header row) still answers 200 at once,
    and a pull query's head, rows and end arrive whole."""
    create = (
        "CREATE STREAM quiet_topic (id VARCHAR KEY, n INT) "
        "WITH (kafka_topic='quiet_topic', value_format='JSON', partitions=1);"
    )
    assert httpx.post(f"{ksql_server.url}/ksql", json={"ksql": create}).status_code == 200
    body = orjson.dumps({"ksql": "PRINT 'quiet_topic' FROM BEGINNING;"})
    with httpx.stream("POST", f"{ksql_server.url}/query", content=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["transfer-encoding"] == "chunked"
    pull = orjson.dumps({"ksql": "SELECT * FROM quiet_topic;"})
    answer = raw_exchange(
        ksql_server.port,
        b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(pull), pull),
    )
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n0\r\n\r\n")
    assert b'"header"' in answer and b"transfer-encoding: chunked" in answer.lower()


def test_http2_response_headers_go_out_before_any_row(ksql_server: RunningServer) -> None:
    """An HTTP/2 response's HEADERS frame waits for its first DATA frames only while the loop
    runs what is ready: a PRINT of an empty topic (no header row) still answers 200 at once."""
    create = (
        "CREATE STREAM quiet_h2 (id VARCHAR KEY, n INT) "
        "WITH (kafka_topic='quiet_h2', value_format='JSON', partitions=1);"
    )
    assert httpx.post(f"{ksql_server.url}/ksql", json={"ksql": create}).status_code == 200
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    headers = [(":method", "POST"), (":path", "/query-stream"), (":scheme", "http"), (":authority", "x")]
    client.send_headers(1, headers)
    client.send_data(1, orjson.dumps({"sql": "PRINT 'quiet_h2' FROM BEGINNING;"}), end_stream=True)
    status = None
    with socket.create_connection(("127.0.0.1", ksql_server.port), timeout=30) as s:
        s.sendall(client.data_to_send())
        while status is None:
            data = s.recv(65536)
            assert data, "the server closed the connection"
            for event in client.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
            s.sendall(client.data_to_send())
    assert status == b"200"
