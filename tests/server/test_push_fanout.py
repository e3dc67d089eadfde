"""Twenty push queries on one stream while ``/inserts-stream`` writes to it: every query gets
every row, in order (on the embedded store they share the stream's reads, see
``runtime.fanout``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from tests.server.conftest import RunningServer
from tests.server.test_endpoints import EARLIEST, make_stream

QUERIES = 20
ROWS = 600


def test_twenty_push_queries_get_every_row_in_order_while_inserts_run(ksql_server: RunningServer) -> None:
    asyncio.run(fan_out(ksql_server))


async def fan_out(server: RunningServer) -> None:
    name = make_stream(server)
    # Half the queries select every column, half one of them: two plans over one source.
    texts = [
        f"SELECT * FROM {name} EMIT CHANGES LIMIT {ROWS};",
        f"SELECT V FROM {name} EMIT CHANGES LIMIT {ROWS};",
    ]
    limits = httpx.Limits(max_connections=QUERIES + 5, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = asyncio.Queue[None]()

        async def one(text: str) -> list[Any]:
            body = orjson.dumps({"sql": text, "properties": EARLIEST})
            async with client.stream("POST", f"{server.url}/query-stream", content=body) as r:
                assert r.status_code == 200
                got = []
                async for line in r.aiter_lines():
                    got.append(orjson.loads(line))
                    if len(got) == 1:
                        started.put_nowait(None)
                return got[1:]

        async def rows(first: int, last: int) -> AsyncIterator[bytes]:
            yield orjson.dumps({"target": name}) + b"\n"
            for start in range(first, last, 50):
                yield b"".join(b'{"ID":"k%d","V":%d}\n' % (i % 7, i) for i in range(start, start + 50))
                await asyncio.sleep(0)

        async def insert(first: int, last: int) -> None:
            async with httpx.AsyncClient(http1=False, http2=True, timeout=120) as h2:
                r = await h2.post(f"{server.url}/inserts-stream", content=rows(first, last))
                acks = [orjson.loads(line) for line in r.content.splitlines()]
                assert acks == [{"seq": i, "status": "ok"} for i in range(last - first)]

        # Some rows are in before the queries start, the rest arrive while they run.
        await insert(0, 200)
        tasks = [asyncio.create_task(one(texts[i % 2])) for i in range(QUERIES)]
        for _ in range(QUERIES // 2):
            await asyncio.wait_for(started.get(), 120)
        await insert(200, 400)
        for _ in range(QUERIES - QUERIES // 2):
            await asyncio.wait_for(started.get(), 120)
        await insert(400, ROWS)
        results = await asyncio.wait_for(asyncio.gather(*tasks), 120)
    for i, got in enumerate(results):
        if i % 2 == 0:
            assert got == [[f"k{n % 7}", n] for n in range(ROWS)]
        else:
            assert got == [[n] for n in range(ROWS)]
