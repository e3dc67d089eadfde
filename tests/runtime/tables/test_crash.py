"""Exactly-once materialization across kill -9: a process writing to a table's topic while its
materializer runs is killed; on restart the materializer resumes at the positions committed with
its state, reads each remaining record once, and ends with the last value of every key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb

from ksqlpy.runtime.engine import Engine

KEYS = 300
BATCHES = 400
BATCH = 500

CHILD = textwrap.dedent(
    f"""
    import json, sys
    import pyarrow as pa
    from ksqlpy.runtime.engine import Engine

    engine = Engine.open({{"ksql.streams.state.dir": sys.argv[1], "ksql.streams.auto.offset.reset": "earliest"}})
    engine.session().execute_all(
        "CREATE TABLE t (k VARCHAR PRIMARY KEY, n BIGINT) WITH (kafka_topic='t', value_format='JSON', partitions=2);"
    )
    seq = 0
    for b in range({BATCHES}):
        keys, values = [], []
        for _ in range({BATCH}):
            keys.append(f"k{{seq % {KEYS}}}".encode())
            values.append(json.dumps({{"N": seq}}).encode())
            seq += 1
        engine.store.produce("t", pa.table({{"timestamp": pa.array([1] * len(keys), pa.int64()),
                                            "key": pa.array(keys), "value": pa.array(values)}}))
        print(b, flush=True)
    """
)


def test_materializer_survives_kill9_without_double_apply(tmp_path: Path) -> None:
    data = tmp_path / "data"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data)], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )
    assert child.stdout is not None
    for line in child.stdout:
        if int(line) >= BATCHES // 4:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(30)

    # What the killed process left: the materializer's committed positions and its state.
    with duckdb.connect(str(data / "ksqlpy.duckdb"), read_only=True) as con:
        committed = dict(
            con.execute(
                "SELECT partition, next_offset FROM topic_log.group_offsets WHERE grp LIKE '%materialize_T_%'"
            ).fetchall()
        )

    engine = Engine.open({"ksql.streams.state.dir": str(data), "ksql.streams.auto.offset.reset": "earliest"})
    try:
        assert engine.wait_idle(120)
        m = engine.materializers["T"]
        ends = engine.store.end_offsets("t")
        # Every record after the committed positions read once, none before them again.
        assert m.records_in == sum(end - committed.get(p, 0) for p, end in ends.items())
        last: dict[str, int] = {}
        with engine.store.open_reader(["t"], start="earliest") as reader:
            seen = 0
            while seen < sum(ends.values()):
                batch = reader.poll(100_000, timeout=1.0)
                seen += batch.num_rows
                for k, v in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist(), strict=True):
                    n = json.loads(v)["N"]
                    last[k.decode()] = max(last.get(k.decode(), -1), n)
        cursor = engine.store.state_cursor()
        state = dict(cursor.execute('SELECT "K", "N" FROM mat."T"').fetchall())
        assert state == last
    finally:
        engine.close()
