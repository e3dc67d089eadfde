"""Benchmark: key-lookup pull queries with and without TLS + BASIC authentication.

Starts ``ksqlpy server`` as a real process twice, once on a plain ``http://`` listener and once on
an ``https://`` listener with BASIC authentication (a CA and a server certificate made for the run
with ``cryptography``, a password file), loads a table of users::

    CREATE TABLE users AS SELECT id, LATEST_BY_OFFSET(score) AS score, COUNT(*) AS updates
      FROM user_events GROUP BY id EMIT CHANGES;

and measures ``SELECT * FROM users WHERE id = 'user_N';`` from httpx clients in this process
(the server has its own): HTTP/1.1 ``/query`` (ksqlDB's JSON array) and HTTP/2 ``/query-stream``,
from 1 and from 8 concurrent clients, each client on its own kept-alive connection(s) (the TLS
handshake is paid once per connection, as with a client's pool; its price is in ``connect ms``).
Prints requests/s and p50/p99 latency per cell, and the secured/plain ratio.

    python bench/pull_security.py --seconds 5 --users 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import ipaddress
import os
import random
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import numpy as np
from common import load_average

USER, PASSWORD = "bench", "bench-secret"
REQUEST_TIMEOUT = 30.0
SETUP = (
    (
        "CREATE STREAM user_events (id VARCHAR KEY, score INT) WITH "
        "(kafka_topic='user_events', value_format='JSON', partitions=1);"
    ),
    (
        "CREATE TABLE users AS SELECT id, LATEST_BY_OFFSET(score) AS score, COUNT(*) AS updates "
        "FROM user_events GROUP BY id EMIT CHANGES;"
    ),
)


@dataclass(frozen=True, slots=True)
class Server:
    url: str
    auth: tuple[str, str] | None
    verify: ssl.SSLContext | bool


@dataclass(frozen=True, slots=True)
class Cell:
    security: str
    endpoint: str
    clients: int
    queries: int
    failed: int
    first_failure: str | None
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    connect_ms: float


# -- certificates and server configuration ---------------------------------------------------------


def write_certificates(where: Path) -> tuple[Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (server PEM with its key, CA PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(cn: str, key: Any, issuer: tuple[x509.Name, Any] | None, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer[0] if issuer else name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(issuer[1] if issuer else key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("ksqlpy bench CA", ca_key, None, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = certificate("127.0.0.1", server_key, (ca.subject, ca_key), ca=False)
    pem = serialization.Encoding.PEM
    key_pem = server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    server_pem = where / "server.pem"
    server_pem.write_bytes(key_pem + server.public_bytes(pem) + ca.public_bytes(pem))
    ca_pem = where / "ca.pem"
    ca_pem.write_bytes(ca.public_bytes(pem))
    return server_pem, ca_pem


def server_properties(where: Path, port: int, secured: bool) -> tuple[Path, Server]:
    lines = [f"ksql.streams.state.dir={where / 'data'}", "ksql.streams.auto.offset.reset=earliest"]
    if not secured:
        lines.append(f"listeners=http://127.0.0.1:{port}")
        server = Server(f"http://127.0.0.1:{port}", None, False)
    else:
        server_pem, ca_pem = write_certificates(where)
        passwords = where / "password-file"
        passwords.write_text(f"{USER}: {PASSWORD}, user\n")
        lines += [
            f"listeners=https://127.0.0.1:{port}",
            f"ssl.keystore.location={server_pem}",
            "ssl.keystore.type=PEM",
            "authentication.method=BASIC",
            "authentication.roles=user",
            f"ksqlpy.authentication.password.file={passwords}",
        ]
        server = Server(
            f"https://127.0.0.1:{port}", (USER, PASSWORD), ssl.create_default_context(cafile=ca_pem)
        )
    path = where / "server.properties"
    path.write_text("\n".join(lines) + "\n")
    return path, server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_server(secured: bool) -> Iterator[Server]:
    """``ksqlpy server`` in a process of its own, READY, stopped with SIGTERM on exit."""
    with tempfile.TemporaryDirectory(prefix="ksqlpy-bench-") as tmp:
        where = Path(tmp)
        properties, server = server_properties(where, free_port(), secured)
        log = (where / "server.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "ksqlpy", "server", "--config", str(properties), "--log-level", "WARNING"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    health = httpx.get(f"{server.url}/healthcheck", verify=server.verify, timeout=5)
                    if health.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start:\n{(where / 'server.log').read_text()}")
                time.sleep(0.1)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def load_users(server: Server, users: int) -> None:
    """Create the table and fill it with ``users`` keys (one ``/inserts-stream`` request); return
    once the last one answers a pull query."""
    with httpx.Client(
        base_url=server.url, auth=server.auth, verify=server.verify, http1=False, http2=True, timeout=120
    ) as client:
        for statement in SETUP:
            response = client.post("/ksql", json={"ksql": statement})
            response.raise_for_status()
        rows = "".join(f'{{"ID":"user_{i}","SCORE":{i % 100}}}\n' for i in range(users))
        acks = client.post("/inserts-stream", content='{"target":"USER_EVENTS"}\n' + rows)
        acks.raise_for_status()
        if '"error"' in acks.text:
            raise SystemExit(f"inserting the users failed: {acks.text[:500]}")
        last = f"SELECT * FROM users WHERE id = 'user_{users - 1}';"
        for _ in range(600):
            answer = client.post("/query-stream", json={"sql": last}, headers={"Accept": "application/json"})
            if answer.status_code == 200 and len(answer.json()) > 1:
                return
            time.sleep(0.1)
        raise SystemExit("the users table never caught up with the inserts")


# -- clients -----------------------------------------------------------------------------------------


async def measure(
    server: Server,
    security: str,
    endpoint: str,
    clients: int,
    seconds: float,
    users: int,
    writes_per_s: float = 0,
) -> Cell:
    """``clients`` concurrent clients, each with its own httpx client (connection), issuing key
    lookups one after the other for ``seconds``. With ``writes_per_s``, one more connection keeps
    updating random users at that rate while they do (a table written to is a table whose
    lookups cannot be answered from what an earlier lookup read)."""
    http2 = endpoint == "/query-stream"
    latencies: list[float] = []
    connects: list[float] = []
    failures: list[str] = []

    async def client_loop(seed: int, end: float) -> None:
        rnd = random.Random(seed)
        async with httpx.AsyncClient(
            base_url=server.url,
            auth=server.auth,
            verify=server.verify,
            http1=not http2,
            http2=http2,
            timeout=REQUEST_TIMEOUT,
        ) as client:
            t0 = time.perf_counter()
            await client.get("/info")  # connection, TLS handshake and HTTP/2 preface, once
            connects.append(time.perf_counter() - t0)
            while time.perf_counter() < end:
                sql = f"SELECT * FROM users WHERE id = 'user_{rnd.randrange(users)}';"
                t0 = time.perf_counter()
                try:
                    if http2:
                        response = await client.post("/query-stream", json={"sql": sql})
                    else:
                        response = await client.post("/query", json={"ksql": sql})
                except httpx.HTTPError as e:
                    failures.append(f"{type(e).__name__}: {e}")
                    latencies.append(time.perf_counter() - t0)
                    continue
                latencies.append(time.perf_counter() - t0)
                if response.status_code != 200 or '"user_' not in response.text:
                    failures.append(f"{response.status_code} {response.text[:200]}")

    async def writer(end: float) -> None:
        rnd = random.Random(-1)

        async def rows() -> Any:
            yield b'{"target":"USER_EVENTS"}\n'
            due = time.perf_counter()
            while time.perf_counter() < end:
                due += 1 / writes_per_s
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                yield f'{{"ID":"user_{rnd.randrange(users)}","SCORE":{rnd.randrange(100)}}}\n'.encode()

        async with httpx.AsyncClient(
            base_url=server.url, auth=server.auth, verify=server.verify, http1=False, http2=True, timeout=None
        ) as client:
            response = await client.post("/inserts-stream", content=rows())
            if response.status_code != 200 or '"error"' in response.text:
                failures.append(f"writer: {response.status_code} {response.text[:200]}")

    end = time.perf_counter() + seconds
    t0 = time.perf_counter()
    tasks = [client_loop(i, end) for i in range(clients)]
    if writes_per_s > 0:
        tasks.append(writer(end))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    ms = np.array(latencies or [float("nan")]) * 1000
    return Cell(
        security=security,
        endpoint=("HTTP/2 " if http2 else "HTTP/1.1 ") + endpoint + (" +writes" if writes_per_s > 0 else ""),
        clients=clients,
        queries=len(latencies),
        failed=len(failures),
        first_failure=failures[0] if failures else None,
        requests_per_s=len(latencies) / wall,
        p50_ms=float(np.percentile(ms, 50)),
        p99_ms=float(np.percentile(ms, 99)),
        connect_ms=float(np.median(connects)) * 1000 if connects else float("nan"),
    )


# -- report -----------------------------------------------------------------------------------------

COLUMNS = (
    ("security", "<", 12, "{}"),
    ("endpoint", "<", 30, "{}"),
    ("clients", ">", 7, "{}"),
    ("queries", ">", 8, "{:,}"),
    ("failed", ">", 6, "{}"),
    ("req/s", ">", 8, "{:,.0f}"),
    ("p50 ms", ">", 7, "{:.2f}"),
    ("p99 ms", ">", 7, "{:.2f}"),
    ("connect ms", ">", 10, "{:.2f}"),
)


def print_table(cells: list[Cell]) -> None:
    print("  ".join(f"{name:{align}{width}}" for name, align, width, _ in COLUMNS))
    for c in cells:
        values = (
            c.security,
            c.endpoint,
            c.clients,
            c.queries,
            c.failed,
            c.requests_per_s,
            c.p50_ms,
            c.p99_ms,
            c.connect_ms,
        )
        print(
            "  ".join(
                f"{fmt.format(v):{align}{width}}"
                for (_, align, width, fmt), v in zip(COLUMNS, values, strict=True)
            )
        )
    for c in cells:
        if c.first_failure:
            print(f"first failure ({c.security}, {c.endpoint}, {c.clients} clients): {c.first_failure}")
    plain = {(c.endpoint, c.clients): c for c in cells if c.security == "plain"}
    print()
    print(f"{'TLS + BASIC vs plain':<36}{'req/s':>8}  {'p50':>7}  {'p99':>7}")
    for c in cells:
        base = plain.get((c.endpoint, c.clients))
        if c.security == "plain" or base is None:
            continue
        print(
            f"{c.endpoint + f', {c.clients} clients':<36}{c.requests_per_s / base.requests_per_s:>7.2f}x  "
            f"{c.p50_ms / base.p50_ms:>6.2f}x  {c.p99_ms / base.p99_ms:>6.2f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="per cell")
    ap.add_argument("--users", type=int, default=1000, help="keys in the table")
    ap.add_argument("--clients", default="1,8", help="concurrent clients, comma-separated")
    ap.add_argument("--security", choices=("plain", "secured", "both"), default="both")
    args = ap.parse_args()
    counts = [int(n) for n in args.clients.split(",") if n.strip()]
    modes = {"plain": (False,), "secured": (True,), "both": (False, True)}[args.security]
    print(f"load before: {load_average()}  (cores: {os.cpu_count()})")
    cells: list[Cell] = []
    for secured in modes:
        security = "TLS + BASIC" if secured else "plain"
        with running_server(secured) as server:
            t0 = time.perf_counter()
            load_users(server, args.users)
            print(f"[{security}] {args.users:,} users loaded in {time.perf_counter() - t0:.1f}s")
            for endpoint in ("/query", "/query-stream"):
                for clients in counts:
                    cells.append(
                        asyncio.run(measure(server, security, endpoint, clients, args.seconds, args.users))
                    )
    print(f"load after: {load_average()}")
    print()
    print_table(cells)


if __name__ == "__main__":
    main()
