"""Topic stores: where streams' records live.

:func:`open_store` picks the store for a server configuration: the embedded DuckDB log unless
``bootstrap.servers`` names a Kafka cluster. Configuration keys (ksqlDB's names where it has one):

* ``bootstrap.servers`` (or ``ksql.streams.bootstrap.servers``): use Kafka.
* ``processing.guarantee`` (or ``ksql.streams.processing.guarantee``): ``exactly_once_v2`` /
  ``exactly_once`` make Kafka transactions real; otherwise Kafka transactions are at-least-once.
* ``num.standby.replicas`` (or ``ksql.streams.num.standby.replicas``): keep warm copies of the
  state of partitions other servers own (see ``ksqlpy.runtime.partitions``).
* ``kafka.<name>``: extra librdkafka client settings, e.g. ``kafka.session.timeout.ms``.
* ``ksqlpy.store.path``: the embedded DuckDB file (``:memory:`` allowed); by default
  ``<ksqlpy.data.dir>/ksqlpy.duckdb``, or ``:memory:`` when no data directory is set. On Kafka,
  state (aggregates, materialized tables) lives in ``<ksqlpy.data.dir>/state.duckdb``.
* ``ksqlpy.state.memory.limit``: DuckDB's ``memory_limit`` for that state database (default
  ``64MB`` when it is a file, whose pages DuckDB then writes out and reads back as needed; none
  for an in-memory one, which cannot give its tables' memory back). DuckDB's own default is 80 %
  of the machine's memory, which it fills with cached pages as state grows.
* ``ksqlpy.store.maintenance.interval.seconds``: how often embedded retention/compaction runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from ksqlpy.runtime.store.base import TopicStore

_EXACTLY_ONCE = frozenset({"exactly_once", "exactly_once_v2", "exactly_once_beta"})
STATE_MEMORY_LIMIT = "ksqlpy.state.memory.limit"
DEFAULT_STATE_MEMORY_LIMIT = "64MB"


def _setting(config: Mapping[str, object], name: str) -> str | None:
    for key in (name, f"ksql.streams.{name}"):
        value = config.get(key)
        if value not in (None, ""):
            return str(value)
    return None


def open_store(config: Mapping[str, object]) -> TopicStore:
    """The topic store ``config`` asks for (see the module docstring for the keys)."""
    bootstrap = _setting(config, "bootstrap.servers")
    if bootstrap is not None:
        from ksqlpy.runtime.store.kafka import KafkaStore

        client = {k.removeprefix("kafka."): str(v) for k, v in config.items() if k.startswith("kafka.")}
        guarantee = (_setting(config, "processing.guarantee") or "at_least_once").lower()
        data_dir = config.get("ksqlpy.data.dir")
        state_path = ":memory:"
        transactional_id = None
        if data_dir:
            Path(str(data_dir)).mkdir(parents=True, exist_ok=True)
            state_path = str(Path(str(data_dir)) / "state.duckdb")
            # The same server (service id and state directory) keeps its transactional id across
            # restarts, so the broker fences a transaction a crashed run left open instead of
            # holding read_committed readers back until the transaction times out.
            place = hashlib.sha1(str(Path(str(data_dir)).resolve()).encode()).hexdigest()[:12]
            transactional_id = f"{config.get('ksql.service.id') or 'default_'}ksqlpy-{place}"
        memory_limit = config.get(STATE_MEMORY_LIMIT) or (
            None if state_path == ":memory:" else DEFAULT_STATE_MEMORY_LIMIT
        )
        return KafkaStore(
            bootstrap,
            exactly_once=guarantee in _EXACTLY_ONCE,
            client_config=client,
            state_path=state_path,
            transactional_id=transactional_id,
            state_memory_limit=None if memory_limit is None else str(memory_limit),
            standby_replicas=int(_setting(config, "num.standby.replicas") or 0),
        )

    from ksqlpy.runtime.store.embedded import EmbeddedStore

    path = config.get("ksqlpy.store.path")
    if path is None:
        data_dir = config.get("ksqlpy.data.dir")
        if data_dir:
            Path(str(data_dir)).mkdir(parents=True, exist_ok=True)
            path = Path(str(data_dir)) / "ksqlpy.duckdb"
        else:
            path = ":memory:"
    interval = float(str(config.get("ksqlpy.store.maintenance.interval.seconds", 30.0)))
    return EmbeddedStore(str(path), maintenance_interval=interval or None)


__all__ = ["TopicStore", "open_store"]
