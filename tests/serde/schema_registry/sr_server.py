"""A small Confluent Schema Registry: the REST endpoints ksqlpy's HTTP client uses, in memory,
served over real HTTP on a local port (for tests)."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: dict[int, dict[str, Any]] = {}
        self.subjects: dict[str, list[int]] = {}


class _Handler(BaseHTTPRequestHandler):
    state: _State
    #: ``Authorization`` header every request must carry (None: no authentication)
    authorization: str | None = None

    def _authorized(self) -> bool:
        if self.authorization is None or self.headers.get("Authorization") == self.authorization:
            return True
        self._send(401, {"error_code": 401, "message": "Unauthorized"})
        return False

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _parts(self) -> list[str]:
        return [unquote(p) for p in self.path.strip("/").split("/")]

    def do_POST(self) -> None:
        if not self._authorized():
            return
        parts = self._parts()
        if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
            self._send(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        entry = {"schema": body["schema"], "schemaType": body.get("schemaType", "AVRO")}
        with self.state.lock:
            existing = next((i for i, e in self.state.ids.items() if e == entry), None)
            schema_id = existing if existing is not None else len(self.state.ids) + 1
            self.state.ids[schema_id] = entry
            versions = self.state.subjects.setdefault(parts[1], [])
            if schema_id not in versions:
                versions.append(schema_id)
        self._send(200, {"id": schema_id})

    def do_GET(self) -> None:
        if not self._authorized():
            return
        parts = self._parts()
        with self.state.lock:
            if parts == ["subjects"]:
                self._send(200, sorted(s for s, v in self.state.subjects.items() if v))
                return
            if len(parts) == 3 and parts[:2] == ["schemas", "ids"]:
                entry = self.state.ids.get(int(parts[2]))
                if entry is None:
                    self._send(404, {"error_code": 40403, "message": "Schema not found"})
                else:
                    self._send(200, entry if entry["schemaType"] != "AVRO" else {"schema": entry["schema"]})
                return
            if len(parts) == 4 and parts[0] == "subjects" and parts[2:] == ["versions", "latest"]:
                versions = self.state.subjects.get(parts[1])
                if not versions:
                    self._send(404, {"error_code": 40401, "message": f"Subject '{parts[1]}' not found."})
                    return
                schema_id = versions[-1]
                self._send(
                    200,
                    {"subject": parts[1], "version": len(versions), "id": schema_id, **self.state.ids[schema_id]},
                )
                return
        self._send(404, {"error_code": 404, "message": "HTTP 404 Not Found"})

    def do_DELETE(self) -> None:
        if not self._authorized():
            return
        parts = self._parts()
        with self.state.lock:
            versions = self.state.subjects.pop(parts[1], None) if len(parts) == 2 else None
        if versions is None:
            self._send(404, {"error_code": 40401, "message": "Subject not found."})
        else:
            self._send(200, list(range(1, len(versions) + 1)))


class SchemaRegistryServer:
    """``with SchemaRegistryServer() as url:`` serves a fresh registry at ``url``;
    ``user_info="user:password"`` makes it require HTTP basic authentication."""

    def __init__(self, user_info: str | None = None) -> None:
        self._authorization = (
            None if user_info is None else "Basic " + base64.b64encode(user_info.encode()).decode("ascii")
        )

    def __enter__(self) -> str:
        handler = type("Handler", (_Handler,), {"state": _State(), "authorization": self._authorization})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
