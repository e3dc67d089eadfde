"""Benchmark: ``/inserts-stream`` ingest, push-query fan-out and pull-query latency over REST.

Starts ``ksqlpy server`` as a real process (embedded store, a free loopback port) and drives it
over HTTP as ksqlDB's clients do: HTTP/2 cleartext for ``/inserts-stream`` and ``/query-stream``,
HTTP/1.1 for ``/query``. Three kinds of process share the machine: the server, this process (the
inserter) and one reader process that holds the push queries open (ten to an HTTP/2
connection), so the readers' JSON parsing does not slow the inserter down. Both speak HTTP/2
through ``h2raw.py``, a minimal client that parses frame headers itself, reads the socket in
large chunks and decodes a read's rows with one orjson call: httpx spent more CPU on each row
(a DATA frame of its own) than the server did, and measured itself.

For 0, 1, 10 and 100 push queries (``SELECT * FROM s EMIT CHANGES`` on ``/query-stream``, a fresh
stream each time, read from ``earliest`` so none can miss a row) one ``/inserts-stream`` request
sends rows ``{"ID": ..., "N": i, "SENT": <epoch seconds at send>}``: as fast as the server takes
them with no push query, at ``--rate`` rows/s (10,000) with 1 or 10 and at ``--fanout-rate``
(1,000) with 100 (rows sent faster than they are delivered would only measure the queue in
front of the server), and it reports:

- rows/s accepted: rows acknowledged ``ok`` over the time from the first row sent to the last ack
  (with a rate, whether the server kept up with it);
- per push query: rows received out of rows sent (nothing lost, in order), and the latency from a
  row's ``SENT`` stamp to its arrival at the reader, p50/p99 over all queries' rows; and the
  rows/s each query was delivered (its rows over the time from the first send to its last row);
- the server process's CPU time per row it handled (each row in, and each row out to each push
  query), and the CPU seconds of the server, the inserter and the readers over the case apart
  (a client near a core's worth of its wall time is the limit). Both move with the load of a shared machine (CPU per row by 3x between a quiet and a
  busy one, rows/s by more): compare runs made back to back, and repeat them.

Then a table of users is loaded and key lookups are timed with 1 and 8 concurrent clients over
``/query`` (HTTP/1.1) and ``/query-stream`` (HTTP/2), p50/p99 (``pull_security.py`` does the same
with TLS as well).

    python bench/ingest_push.py                      # the full table
    python bench/ingest_push.py --queries 0,1 --rows 20000 --seconds 2
    python bench/ingest_push.py --queries 1,10 --rate 0     # push queries, inserts unpaced
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import numpy as np
import orjson
from common import load_average
from h2raw import H2Client, Stream, split_lines
from pull_security import Server, load_users, measure, running_server

#: Rows per chunk of the insert request body (each row keeps its own send stamp).
CHUNK_ROWS = 200
#: Give up on a push query that has had no row for this long after the inserts ended.
READ_IDLE_SECONDS = 30.0
#: Push queries sharing one HTTP/2 connection (ksqlDB's clients put many on one).
PER_CONNECTION = 10


def server_pid() -> int | None:
    """The ``ksqlpy server`` process this one started (found in /proc; Linux only)."""
    me = os.getpid()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == me and b"server" in (stat.parent / "cmdline").read_bytes().split(b"\0"):
                return int(stat.parent.name)
        except (OSError, ValueError, IndexError):
            continue
    return None


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (NaN when unknown)."""
    if pid is None:
        return float("nan")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class IngestCell:
    queries: int
    rows: int
    rate: float  # rows/s offered (0: as fast as accepted)
    acked: int
    rows_per_s: float
    received_min: int
    in_order: bool
    p50_ms: float
    p99_ms: float
    delivered_per_s: float  # slowest query's rows/s
    cpu_us_per_row: float  # server CPU per row handled: each row in, and each row out to a query
    server_cpu_s: float  # CPU seconds of the server, the inserter and the readers over the case
    inserter_cpu_s: float
    reader_cpu_s: float


# -- push readers (a process of their own) -----------------------------------------------------------


async def read_push(
    client: H2Client, stream: str, expected: int, ready: asyncio.Event, started: list[int]
) -> tuple[np.ndarray, bool, float]:
    """One push query: (latency of each row in seconds, rows came in order, time of the last row).

    The rows of each read are decoded together (one orjson call) and share its arrival time."""
    latencies: list[np.ndarray] = []
    received = 0
    in_order = True
    last_n = -1
    last_at = float("nan")
    body = {"sql": f"SELECT * FROM {stream} EMIT CHANGES;", "properties": {"auto.offset.reset": "earliest"}}
    response = await client.request("POST", "/query-stream", orjson.dumps(body))
    status = await response.status
    pending = b""
    lines: list[bytes] = []
    while not lines:
        data = await response.read()
        if not data:
            break
        lines, pending = split_lines(pending, data)
    if status != 200 or not lines:
        raise SystemExit(f"push query failed: {status} {b''.join(lines)[:300]!r} {pending[:300]!r}")
    header = orjson.loads(lines[0])
    names = [c.upper() for c in header["columnNames"]]
    n_at, sent_at = names.index("N"), names.index("SENT")
    started.append(1)
    ready.set()
    lines = lines[1:]
    while True:
        rows = [line for line in lines if line.strip()]
        if rows:
            now = time.time()
            decoded = orjson.loads(b"[" + b",".join(rows) + b"]")
            if not all(isinstance(row, list) for row in decoded):
                raise SystemExit(f"push query ended with {rows[-1][:300]!r}")
            ns = np.fromiter((row[n_at] for row in decoded), dtype=np.int64, count=len(decoded))
            sent = np.fromiter((row[sent_at] for row in decoded), dtype=np.float64, count=len(decoded))
            in_order = in_order and ns[0] == last_n + 1 and bool(np.all(np.diff(ns) == 1))
            last_n = int(ns[-1])
            latencies.append(now - sent)
            received += len(decoded)
            last_at = now
        if received >= expected:
            break
        try:
            data = await asyncio.wait_for(response.read(), READ_IDLE_SECONDS)
        except TimeoutError:
            break
        if not data:
            break
        lines, pending = split_lines(pending, data)
    return (np.concatenate(latencies) if latencies else np.zeros(0)), in_order, last_at


async def run_readers(url: str, stream: str, queries: int, expected: int, pipe: Connection) -> None:
    started: list[int] = []
    ready = asyncio.Event()
    clients = [await H2Client.connect(url) for _ in range((queries + PER_CONNECTION - 1) // PER_CONNECTION)]
    try:
        tasks = [
            asyncio.create_task(read_push(clients[i // PER_CONNECTION], stream, expected, ready, started))
            for i in range(queries)
        ]
        while True:
            ready.clear()
            if len(started) >= queries:
                break
            done = [t for t in tasks if t.done() and t.exception() is not None]
            if done:
                raise done[0].exception()  # type: ignore[misc]
            await asyncio.wait_for(ready.wait(), 60)
        cpu0 = time.process_time()
        pipe.send("ready")
        results = await asyncio.gather(*tasks)
        pipe.send((list(results), time.process_time() - cpu0))
    finally:
        for client in clients:
            await client.close()


def reader_process(url: str, stream: str, queries: int, expected: int, pipe: Connection) -> None:
    asyncio.run(run_readers(url, stream, queries, expected, pipe))


# -- the inserter ------------------------------------------------------------------------------------


async def insert_rows(url: str, stream: str, rows: int, rate: float = 0) -> tuple[int, float, float]:
    """One /inserts-stream request of ``rows`` rows, ``rate`` rows/s at most (0: as fast as the
    server takes them): (rows acked ok, first send time, seconds)."""
    first_sent: list[float] = []
    chunk_rows = CHUNK_ROWS if rate <= 0 else max(1, min(CHUNK_ROWS, int(rate / 200)))
    client = await H2Client.connect(url)

    async def send_body(response: Stream) -> None:
        start_at = time.perf_counter()
        for start in range(0, rows, chunk_rows):
            if rate > 0:
                wait = start_at + start / rate - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
            now = time.time()
            if not first_sent:
                first_sent.append(now)
            await response.send(
                "".join(
                    f'{{"ID":"k{i % 100}","N":{i},"SENT":{now!r}}}\n'
                    for i in range(start, min(rows, start + chunk_rows))
                ).encode(),
                end=start + chunk_rows >= rows,
            )

    acked = 0
    try:
        t0 = time.perf_counter()
        response = await client.request(
            "POST", "/inserts-stream", orjson.dumps({"target": stream}) + b"\n", end=False
        )
        sender = asyncio.create_task(send_body(response))
        pending = b""
        while True:
            data = await response.read()
            if not data:
                break
            lines, pending = split_lines(pending, data)
            ok = b"\n".join(lines).count(b'"ok"')
            if ok != sum(1 for line in lines if line.strip()):
                bad = next(line for line in lines if line.strip() and b'"ok"' not in line)
                raise SystemExit(f"insert failed: {bad[:300]!r}")
            acked += ok
        await sender
        if await response.status != 200:
            raise SystemExit(f"insert failed: {await response.status} {pending[:300]!r}")
        seconds = time.perf_counter() - t0
    finally:
        await client.close()
    return acked, first_sent[0] if first_sent else time.time(), seconds


def ingest_case(server: Server, queries: int, rows: int, rate: float) -> IngestCell:
    stream = f"S{queries}"
    with httpx.Client(base_url=server.url, timeout=60) as client:
        response = client.post(
            "/ksql",
            json={
                "ksql": f"CREATE STREAM {stream} (ID VARCHAR KEY, N BIGINT, SENT DOUBLE) WITH "
                f"(kafka_topic='{stream.lower()}', value_format='JSON', partitions=1);"
            },
        )
        response.raise_for_status()
    reader = None
    parent = None
    pid = server_pid()
    if queries:
        parent, child = mp.get_context("spawn").Pipe()
        reader = mp.get_context("spawn").Process(
            target=reader_process, args=(server.url, stream, queries, rows, child), daemon=True
        )
        reader.start()
        if not parent.poll(120) or parent.recv() != "ready":
            raise SystemExit("the push queries did not start")
    cpu0 = cpu_seconds(pid)
    mine0 = time.process_time()
    acked, first_sent, seconds = asyncio.run(insert_rows(server.url, stream, rows, rate))
    inserter_cpu = time.process_time() - mine0
    reader_cpu = 0.0
    received_min, in_order, p50, p99, delivered = rows, True, float("nan"), float("nan"), float("nan")
    if reader is not None and parent is not None:
        if not parent.poll(READ_IDLE_SECONDS + 600):
            raise SystemExit("the push readers never finished")
        results, reader_cpu = parent.recv()
        reader.join(30)
        received_min = min(len(lat) for lat, _, _ in results)
        in_order = all(ordered for _, ordered, _ in results)
        ms = np.concatenate([lat for lat, _, _ in results]) * 1000
        p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
        slowest = max(last for _, _, last in results)
        delivered = received_min / max(slowest - first_sent, 1e-9)
    handled = acked + (received_min * queries if reader is not None else 0)
    server_cpu = cpu_seconds(pid) - cpu0
    cpu_us = server_cpu / max(handled, 1) * 1e6
    return IngestCell(
        queries, rows, rate, acked, acked / seconds, received_min, in_order, p50, p99, delivered, cpu_us,
        server_cpu, inserter_cpu, reader_cpu,
    )


# -- report ------------------------------------------------------------------------------------------


def print_ingest(cells: list[IngestCell]) -> None:
    head = f"{'push queries':>12}  {'rows':>8}  {'offered/s':>9}  {'acked':>8}  {'rows/s in':>10}  {'each got (min)':>14}  "
    head += (
        f"{'in order':>8}  {'p50 ms':>8}  {'p99 ms':>9}  {'rows/s out (each)':>17}  {'server CPU us/row':>17}"
        f"  {'CPU s: server':>13}  {'inserter':>8}  {'readers':>7}"
    )
    print(head)
    for c in cells:
        print(
            f"{c.queries:>12}  {c.rows:>8,}  {(f'{c.rate:,.0f}' if c.rate else 'max'):>9}  {c.acked:>8,}  {c.rows_per_s:>10,.0f}  "
            f"{(f'{c.received_min:,}' if c.queries else '-'):>14}  {('yes' if c.in_order else 'NO'):>8}  "
            f"{c.p50_ms:>8.1f}  {c.p99_ms:>9.1f}  {c.delivered_per_s:>17,.0f}  {c.cpu_us_per_row:>17.1f}"
            f"  {c.server_cpu_s:>13.2f}  {c.inserter_cpu_s:>8.2f}  {c.reader_cpu_s:>7.2f}"
        )


def print_pull(cells: list[Any]) -> None:
    print(
        f"{'pull key lookup':<32}  {'clients':>7}  {'queries':>8}  {'failed':>6}  {'req/s':>7}  "
        f"{'p50 ms':>7}  {'p99 ms':>7}"
    )
    for c in cells:
        print(
            f"{c.endpoint:<32}  {c.clients:>7}  {c.queries:>8,}  {c.failed:>6}  {c.requests_per_s:>7,.0f}  "
            f"{c.p50_ms:>7.2f}  {c.p99_ms:>7.2f}"
        )
    for c in cells:
        if c.first_failure:
            print(f"first failure ({c.endpoint}, {c.clients} clients): {c.first_failure}")


def rate_for(queries: int, args: argparse.Namespace) -> float:
    if queries == 0:
        return 0.0
    return float(args.rate if queries < 100 else args.fanout_rate)


def rows_for(queries: int, args: argparse.Namespace) -> int:
    if queries == 0:
        return int(args.rows)
    if queries < 100:
        return int(args.push_rows)
    return int(args.fanout_rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", default="0,1,10,100", help="push queries open, comma-separated cases")
    ap.add_argument("--rows", type=int, default=100_000, help="rows inserted with no push query open")
    ap.add_argument("--push-rows", type=int, default=20_000, help="rows inserted with 1 or 10 push queries")
    ap.add_argument("--fanout-rows", type=int, default=5_000, help="rows inserted with 100 push queries")
    ap.add_argument(
        "--rate",
        type=float,
        default=10_000,
        help="rows/s offered with 1 or 10 push queries (0: as fast as taken)",
    )
    ap.add_argument("--fanout-rate", type=float, default=1_000, help="rows/s offered with 100 push queries")
    ap.add_argument("--seconds", type=float, default=5.0, help="per pull-query cell (0: no pull cells)")
    ap.add_argument("--users", type=int, default=1000, help="keys in the pull queries' table")
    ap.add_argument(
        "--pull-writes",
        type=float,
        default=200,
        help="rows/s written to the looked-up table in the second set of pull cells (0: none)",
    )
    args = ap.parse_args()
    counts = [int(n) for n in args.queries.split(",") if n.strip()]
    print(f"load before: {load_average()}  (cores: {os.cpu_count()})", flush=True)
    ingest: list[IngestCell] = []
    pull: list[Any] = []
    with running_server(False) as server:
        for queries in counts:
            ingest.append(ingest_case(server, queries, rows_for(queries, args), rate_for(queries, args)))
            print_ingest(ingest[-1:])
            sys.stdout.flush()
        if args.seconds > 0:
            load_users(server, args.users)
            # Lookups of a table nothing writes to can be answered from memory; the cells with
            # writes keep the table changing, so most lookups read it.
            for writes in (0, args.pull_writes):
                for endpoint in ("/query", "/query-stream"):
                    for clients in (1, 8):
                        cell = measure(server, "plain", endpoint, clients, args.seconds, args.users, writes)
                        pull.append(asyncio.run(cell))
                if args.pull_writes <= 0:
                    break
    print(f"load after: {load_average()}")
    print()
    print_ingest(ingest)
    if pull:
        print()
        print_pull(pull)


if __name__ == "__main__":
    main()
