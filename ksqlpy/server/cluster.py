"""Cluster membership: which servers share this one's service id, whether they are alive, what
each one runs, and how far its state stores lag — ksqlDB's ``HeartbeatAgent``,
``LagReportingAgent`` and ``/clusterStatus``.

* **Inter-node listener** (:func:`inter_node_listener`): ``ksql.advertised.listener`` if set
  (never a wildcard address), else ``ksql.internal.listener``, else the first of ``listeners``;
  a wildcard host in the last two is replaced by this machine's name, as ksqlDB does.
* **Discovery.** ksqlDB learns its peers from Kafka Streams metadata. ksqlpy learns them from a
  small compacted topic, ``_confluent-ksql-<service id>_cluster_hosts``: every
  ``ksql.heartbeat.discover.interval.ms`` each server announces there (key: its ``host:port``)
  its inter-node URL, the partitions its consumers of each persistent query hold (assigned by
  Kafka's group protocol) and those it keeps standby copies of, and per materialized table the
  partitions its state holds (``tables``, which pull-query routing reads), and reads what the
  others announced. A server that stops cleanly removes its record (a tombstone). New hosts start
  alive. The embedded store has no peers: the cluster is this server.
* **Standby placement** (``ksql.streams.num.standby.replicas`` = n > 0; :meth:`ClusterAgent.
  place_standbys`). As Kafka Streams' assignor: at most n standbys per partition, at most one per
  server, never on the active. Every server derives it alike from what the hosts topic and the
  heartbeats say: the live hosts running the query, in the order of their ``host:port``, form a
  ring; partition p whose active host is A has its standbys on the n hosts after A in the ring.
  Queries ask again as membership and assignments change (``runtime.partitions``).
* **Heartbeats.** Every ``ksql.heartbeat.send.interval.ms`` (100) a server posts
  ``{"hostInfo": "host:port", "timestamp": ms}`` to ``/heartbeat`` of every other known host, alive
  or not. Every ``ksql.heartbeat.check.interval.ms`` (200) it looks at the beats received in the
  last ``ksql.heartbeat.window.ms`` (2000): a host with ``ksql.heartbeat.missed.threshold.ms`` (3,
  a count despite its name) consecutive missed beats, or none in the window, is dead.
* **Lags** (``ksql.lag.reporting.enable``, needs heartbeats). Every
  ``ksql.lag.reporting.send.interval.ms`` (5000) a server posts its state stores' lags to
  ``/lag`` of every alive host. A store's lag per partition is how far the query that owns it is
  behind its input there (read position against the end of the partition): the records the store
  has yet to take in.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from ksqlpy.server.config import ConfigError, ServerConfig

if TYPE_CHECKING:  # imported when heartbeats start: checking the settings needs neither
    import httpx

log = logging.getLogger("ksqlpy.cluster")

ADVERTISED_LISTENER = "ksql.advertised.listener"
INTERNAL_LISTENER = "ksql.internal.listener"

#: ksqlDB's heartbeat and lag-reporting settings with their defaults (KsqlRestConfig).
DEFAULTS: dict[str, str] = {
    "ksql.heartbeat.enable": "false",
    "ksql.heartbeat.send.interval.ms": "100",
    "ksql.heartbeat.check.interval.ms": "200",
    "ksql.heartbeat.window.ms": "2000",
    "ksql.heartbeat.missed.threshold.ms": "3",
    "ksql.heartbeat.discover.interval.ms": "2000",
    "ksql.heartbeat.thread.pool.size": "3",
    "ksql.lag.reporting.enable": "false",
    "ksql.lag.reporting.send.interval.ms": "5000",
    # how long a request naming a commandSequenceNumber waits for that command to be applied
    "ksql.server.command.response.timeout.ms": "5000",
}
SETTINGS = frozenset(DEFAULTS) | {ADVERTISED_LISTENER, INTERNAL_LISTENER}


def hosts_topic(service_id: str) -> str:
    return f"_confluent-ksql-{service_id}_cluster_hosts"


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSettings:
    heartbeat: bool
    lag_reporting: bool
    send_interval_ms: int
    check_interval_ms: int
    window_ms: int
    missed_threshold: int
    discover_interval_ms: int
    thread_pool_size: int
    lag_send_interval_ms: int
    command_response_timeout_ms: int

    @classmethod
    def of(cls, config: ServerConfig) -> ClusterSettings:
        def flag(name: str) -> bool:
            value = (config.get(name) or DEFAULTS[name]).strip().lower()
            if value not in ("true", "false"):
                raise ConfigError(f"Invalid value {value} for configuration {name}: Expected value to be either true or false")
            return value == "true"

        def number(name: str) -> int:
            value = config.get(name) or DEFAULTS[name]
            try:
                n = int(value.strip())
            except ValueError:
                n = 0
            if n <= 0:
                raise ConfigError(f"Invalid value {value} for configuration {name}: must be a positive integer")
            return n

        return cls(
            heartbeat=flag("ksql.heartbeat.enable"),
            lag_reporting=flag("ksql.lag.reporting.enable"),
            send_interval_ms=number("ksql.heartbeat.send.interval.ms"),
            check_interval_ms=number("ksql.heartbeat.check.interval.ms"),
            window_ms=number("ksql.heartbeat.window.ms"),
            missed_threshold=number("ksql.heartbeat.missed.threshold.ms"),
            discover_interval_ms=number("ksql.heartbeat.discover.interval.ms"),
            thread_pool_size=number("ksql.heartbeat.thread.pool.size"),
            lag_send_interval_ms=number("ksql.lag.reporting.send.interval.ms"),
            command_response_timeout_ms=number("ksql.server.command.response.timeout.ms"),
        )


def _is_wildcard(host: str) -> bool:
    try:
        return ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def inter_node_listener(config: ServerConfig) -> str:
    """The URL other servers reach this one at (ksqlDB's rules, see the module docstring)."""
    advertised = config.get(ADVERTISED_LISTENER)
    if advertised:
        parts = urlsplit(advertised.strip())
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or not port:
            raise ConfigError(
                f"Invalid value {advertised} for configuration {ADVERTISED_LISTENER}: Must have valid port"
            )
        if _is_wildcard(parts.hostname):
            raise ConfigError(f"Invalid value {advertised} for configuration {ADVERTISED_LISTENER}: Can not be wildcard")
        return f"{parts.scheme}://{_bracketed(parts.hostname)}:{port}"
    internal = config.get(INTERNAL_LISTENER)
    if internal:
        from ksqlpy.server.config import parse_listener

        listener = parse_listener(internal)
    elif config.listeners:
        listener = config.listeners[0]
    else:
        return "http://localhost:8088"
    host = socket.getfqdn() if _is_wildcard(listener.host) else listener.host
    return f"{listener.scheme}://{_bracketed(host)}:{listener.port}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def host_info(url: str) -> str:
    """``http://host:port`` -> ``host:port`` (ksqlDB's ``KsqlHostInfo`` as a string)."""
    parts = urlsplit(url)
    return f"{_bracketed(parts.hostname or 'localhost')}:{parts.port or 8088}"


# ---------------------------------------------------------------------- the agent


@dataclass(slots=True)
class HostStatus:
    alive: bool
    last_status_update_ms: int
    url: str = ""
    active_standby: dict[str, Any] = field(default_factory=dict)
    lags: dict[str, Any] = field(default_factory=lambda: {"stateStoreLags": {}, "updateTimeMs": 0})
    #: per materialized table, the partitions the host holds: {"active": [...], "standby": [...]}
    tables: dict[str, Any] = field(default_factory=dict)


class ClusterAgent:
    """Discovery, heartbeats and lag reports of one server (see the module docstring)."""

    def __init__(self, engine: Any, config: ServerConfig) -> None:
        self.engine = engine
        self.settings = ClusterSettings.of(config)
        self.url = inter_node_listener(config)
        self.local = host_info(self.url)
        self.hosts: dict[str, HostStatus] = {self.local: HostStatus(True, _now_ms(), self.url)}
        self._beats: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._senders: ThreadPoolExecutor | None = None
        #: URLs with a request in flight: a peer that hangs gets no second one meanwhile
        self._in_flight: set[str] = set()
        self._announced: bytes | None = None
        self._reader: Any = None
        self.topic = hosts_topic(config.service_id)

    @property
    def clustered(self) -> bool:
        """Whether peers can exist: servers share a Kafka store, never the embedded one."""
        return bool(getattr(self.engine, "store_kind", "embedded") == "kafka")

    # ---- lifecycle

    def start(self) -> None:
        # Servers sharing a Kafka cluster always learn of each other through the hosts topic, as
        # ksqlDB's learn of each other through Kafka Streams' metadata, so pull queries are routed
        # to the owners of their keys; heartbeats only add liveness (and /clusterStatus's view).
        if not self.settings.heartbeat and not self.clustered:
            return
        self._senders = ThreadPoolExecutor(self.settings.thread_pool_size, thread_name_prefix="ksqlpy-cluster-rpc")
        # ten heartbeats a second per peer would bury the server's log in httpx's request lines
        quiet = logging.getLogger("httpx")
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)
        loops: list[tuple[str, Any, int]] = []
        if self.settings.heartbeat:
            loops.append(("send", self._send_heartbeats, self.settings.send_interval_ms))
            loops.append(("check", self._check_heartbeats, self.settings.check_interval_ms))
        if self.clustered:
            from ksqlpy.runtime.store.base import TopicSpec

            self.engine.standby_placement = self.place_standbys

            self.engine.store.create_topic(
                TopicSpec(name=self.topic, partitions=1, config={"cleanup.policy": "compact", "retention.ms": "-1"}),
                exist_ok=True,
            )
            self._reader = self.engine.store.open_reader([self.topic], group=None, start="earliest")
            loops.append(("discover", self._discover, self.settings.discover_interval_ms))
        if self.settings.lag_reporting:
            loops.append(("lag", self._report_lags, self.settings.lag_send_interval_ms))
        for name, step, interval_ms in loops:
            thread = threading.Thread(
                target=self._loop, args=(step, interval_ms / 1000), name=f"ksqlpy-cluster-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _loop(self, step: Any, interval: float) -> None:
        while not self._stop.is_set():
            try:
                step()
            except Exception:  # one failed round must not end membership
                log.debug("Cluster round %s failed", getattr(step, "__name__", step), exc_info=True)
            self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5.0)
        if self._reader is not None:
            try:  # leaving cleanly: the others forget this server rather than mark it dead
                self._produce(None)
            except Exception:  # a closing store may refuse; peers then see it die
                log.debug("Could not remove this server from %s", self.topic, exc_info=True)
            self._reader.close()
        if self._senders is not None:
            self._senders.shutdown(wait=True, cancel_futures=True)
        if self._client is not None:
            self._client.close()

    # ---- discovery

    def _produce(self, value: bytes | None) -> None:
        import pyarrow as pa

        batch = pa.table(
            {
                "timestamp": pa.array([_now_ms()], pa.int64()),
                "key": pa.array([self.local.encode()], pa.binary()),
                "value": pa.array([value], pa.binary()),
            }
        )
        self.engine.store.produce(self.topic, batch)

    def _discover(self) -> None:
        announcement = orjson.dumps(
            {
                "hostInfo": self.local,
                "url": self.url,
                "activeStandbyPerQuery": self.local_active_standby(),
                "tables": self.local_tables(),
            }
        )
        if announcement != self._announced:
            self._produce(announcement)
            self._announced = announcement
        while True:
            batch = self._reader.poll(1000, timeout=0.05)
            if batch.num_rows == 0:
                break
            for key, value in zip(batch.column("key").to_pylist(), batch.column("value").to_pylist()):
                if key is None:
                    continue
                host = key.decode()
                if host == self.local:
                    continue
                with self._lock:
                    if value is None:
                        self.hosts.pop(host, None)
                        self._beats.pop(host, None)
                        continue
                    found = orjson.loads(value)
                    status = self.hosts.get(host)
                    if status is None:  # a new host starts alive, as in ksqlDB
                        status = self.hosts[host] = HostStatus(True, _now_ms())
                    status.url = str(found.get("url") or f"http://{host}")
                    status.active_standby = dict(found.get("activeStandbyPerQuery") or {})
                    status.tables = dict(found.get("tables") or {})

    def local_tables(self) -> dict[str, dict[str, list[int]]]:
        """Per materialized table, the partitions this server's state holds, split into those whose
        task runs here (active) and warm copies (standby). Only what the state already holds
        counts: a partition just gained is announced once it has been read in."""
        out: dict[str, dict[str, list[int]]] = {}
        engine = self.engine
        for name, materializer in list(getattr(engine, "materializers", {}).items()):
            held = materializer.held
            if held is None:
                spec = engine.store.describe_topic(materializer.source.topic)
                held = frozenset(range(spec.partitions if spec is not None else 1))
            owners = engine.table_owners(name)
            active = held & owners[0] if owners is not None else held
            out[name] = {"active": sorted(active), "standby": sorted(held - active)}
        return out

    def table_hosts(self, name: str) -> dict[int, tuple[list[str], list[str]]]:
        """Per partition of table ``name``: the hosts holding it as active, then as standby, and
        whether each is alive is left to the caller (:meth:`alive`)."""
        local = self.local_tables()
        with self._lock:
            tables = {h: (local if h == self.local else s.tables) for h, s in self.hosts.items()}
        out: dict[int, tuple[list[str], list[str]]] = {}
        for host in sorted(tables, key=lambda h: (h != self.local, h)):  # this server first among equals
            held = tables[host].get(name) or {}
            for p in held.get("active") or ():
                out.setdefault(int(p), ([], []))[0].append(host)
            for p in held.get("standby") or ():
                out.setdefault(int(p), ([], []))[1].append(host)
        return out

    def alive(self, host: str) -> bool:
        """Whether the heartbeat agent counts ``host`` alive (every host, with heartbeats off)."""
        if host == self.local or not self.settings.heartbeat:
            return True
        with self._lock:
            status = self.hosts.get(host)
            return status is not None and status.alive

    def url_of(self, host: str) -> str:
        with self._lock:
            status = self.hosts.get(host)
            return status.url if status is not None and status.url else f"http://{host}"

    def lag_of(self, host: str, app_id: str, partition: int) -> int | None:
        """The offset lag ``host`` last reported for partition ``partition`` of query
        ``app_id``'s stores (the largest over them); None when it reported none."""
        lags = self.local_lags() if host == self.local else None
        with self._lock:
            if lags is None:
                status = self.hosts.get(host)
                lags = status.lags if status is not None else {}
            found = [
                int(entry["lagByPartition"][str(partition)]["offsetLag"])
                for key, entry in (lags.get("stateStoreLags") or {}).items()
                if key.startswith(app_id + "#") and str(partition) in (entry.get("lagByPartition") or {})
            ]
        return max(found) if found else None

    def place_standbys(self, query_id: str, partitions: int, owned: frozenset[int]) -> dict[int, bool]:
        """For each partition of query ``query_id`` whose active host is known (``owned``: this
        server's), whether this server keeps a standby copy of it (see the module docstring)."""
        replicas = int(getattr(self.engine.store, "standby_replicas", 0))
        with self._lock:
            peers = {
                host: status.active_standby[query_id]
                for host, status in self.hosts.items()
                if host != self.local and status.alive and query_id in status.active_standby
            }
        ring = sorted({self.local, *peers})
        active = dict.fromkeys(owned, self.local)
        for host in sorted(peers):  # an announcement may lag a rebalance: this server's own word wins
            for tp in peers[host].get("activePartitions") or ():
                p = int(tp["partition"])
                if 0 <= p < partitions and p not in owned:
                    active.setdefault(p, host)
        placed: dict[int, bool] = {}
        for p, host in active.items():
            at = ring.index(host)
            after = [ring[(at + k) % len(ring)] for k in range(1, min(replicas, len(ring) - 1) + 1)]
            placed[p] = self.local in after
        return placed

    def local_active_standby(self) -> dict[str, Any]:
        """Per persistent query, the partitions this server's consumer holds and its stores."""
        out: dict[str, Any] = {}
        for query_id, query in list(getattr(self.engine, "queries", {}).items()):
            reader = getattr(query, "_reader", None)
            try:
                assigned = list(reader.assignment()) if reader is not None else []
            except RuntimeError:  # the assignment changed under us: next round
                assigned = []
            owned = getattr(query, "owned_partitions", None)
            held = owned() if owned is not None else None
            standby = sorted(held[1]) if held is not None else []
            topic = getattr(getattr(getattr(query, "plan", None), "source", None), "topic", None)
            out[query_id] = {
                "activeStores": _stores(query),
                "activePartitions": [{"topic": tp.topic, "partition": tp.partition} for tp in assigned],
                "standByStores": _stores(query) if standby else [],
                "standByPartitions": [{"topic": topic, "partition": p} for p in standby],
            }
        return out

    # ---- what SHOW QUERIES EXTENDED, EXPLAIN and DESCRIBE EXTENDED say about the cluster

    def decorate(self, entity: dict[str, Any]) -> None:
        """Fill an entity's cluster-wide fields in place: a query description's
        ``ksqlHostQueryStatus`` (every host: its state of the query, ``UNRESPONSIVE`` when dead)
        and ``tasksMetadata`` (ksqlDB's ``StreamsTaskMetadata``: the tasks all hosts run, task
        ``0_<partition>``, with end and committed offsets); a source description's write
        queries count hosts per state, and its statistics name the partitions each host holds."""
        if not self.clustered or not self.settings.heartbeat:
            return
        kind = entity.get("@type")
        if kind == "queryDescription":
            self._decorate_query(entity["queryDescription"])
        elif kind == "query_descriptions":
            for description in entity.get("queryDescriptions") or []:
                self._decorate_query(description)
        elif kind == "sourceDescription":
            self._decorate_source(entity["sourceDescription"])

    def _hosts_running(self, query_id: str) -> dict[str, tuple[bool, dict[str, Any]]]:
        local = self.local_active_standby()
        with self._lock:
            found = {
                host: (status.alive, local if host == self.local else status.active_standby)
                for host, status in self.hosts.items()
            }
        return {h: (alive, per.get(query_id) or {}) for h, (alive, per) in found.items() if query_id in per}

    def _decorate_query(self, description: dict[str, Any]) -> None:
        query_id = str(description.get("id"))
        hosts = self._hosts_running(query_id)
        if not hosts:
            return
        local_state = description.get("state") or "RUNNING"
        description["ksqlHostQueryStatus"] = {
            host: (local_state if host == self.local else "RUNNING") if alive else "UNRESPONSIVE"
            for host, (alive, _) in sorted(hosts.items())
        }
        store = self.engine.store
        group = description.get("consumerGroupId")
        ends: dict[str, dict[int, int]] = {}
        committed: dict[str, dict[int, int]] = {}
        tasks: dict[int, list[dict[str, Any]]] = {}
        for _, (_, held) in sorted(hosts.items()):
            for tp in held.get("activePartitions") or []:
                topic, partition = str(tp["topic"]), int(tp["partition"])
                try:
                    if topic not in ends:
                        ends[topic] = store.end_offsets(topic)
                        committed[topic] = store.committed(group, topic) if group else {}
                except Exception:  # noqa: BLE001 - a topic deleted meanwhile: no offsets to show
                    ends[topic], committed[topic] = {}, {}
                tasks.setdefault(partition, []).append(
                    {
                        "topicPartitionEntity": {"topic": topic, "partition": partition},
                        "endOffset": int(ends[topic].get(partition, 0)),
                        "committedOffset": int(committed[topic].get(partition, 0)),
                    }
                )
        description["tasksMetadata"] = [
            {"taskId": f"0_{p}", "topicOffsets": offsets, "timeCurrentIdlingStarted": None}
            for p, offsets in sorted(tasks.items())
        ]

    def _decorate_source(self, description: dict[str, Any]) -> None:
        name = str(description.get("name"))
        for running in description.get("writeQueries") or []:
            hosts = self._hosts_running(str(running.get("id")))
            if hosts:
                counts: dict[str, int] = {}
                for alive, _ in hosts.values():
                    state = str(running.get("state") or "RUNNING") if alive else "UNRESPONSIVE"
                    counts[state] = counts.get(state, 0) + 1
                running["statusCount"] = counts
        if not description.get("extended"):
            return
        located = self.table_hosts(name)
        if not located:
            return
        per_host: dict[str, tuple[list[int], list[int]]] = {}
        for p, (active, standby) in sorted(located.items()):
            for host in active:
                per_host.setdefault(host, ([], []))[0].append(p)
            for host in standby:
                per_host.setdefault(host, ([], []))[1].append(p)
        text = "; ".join(
            f"{host} active partitions {active} standby partitions {standby}"
            + ("" if self.alive(host) else " (not alive)")
            for host, (active, standby) in sorted(per_host.items())
        )
        stats = str(description.get("statistics") or "")
        description["statistics"] = (stats + " " if stats else "") + f"hosts: {text}"

    # ---- heartbeats

    def receive_heartbeat(self, host: str, timestamp: int) -> None:
        with self._lock:
            beats = self._beats.setdefault(host, [])
            beats.append(timestamp)
            if len(beats) > 1000:
                del beats[:-500]
            if host not in self.hosts and host != self.local:
                # a peer this server has not discovered yet: it is evidently there
                self.hosts[host] = HostStatus(True, _now_ms(), f"http://{host}")

    def _post(self, url: str, body: dict[str, Any]) -> None:
        """Send ``body`` to ``url`` on the sender pool without waiting for the answer (ksqlDB's
        heartbeats and lag reports are asynchronous): one slow peer delays no other."""
        if url in self._in_flight or self._senders is None:
            return
        self._in_flight.add(url)

        import httpx

        def send() -> None:
            try:
                self._http().post(url, json=body)
            except httpx.HTTPError:
                pass  # a dead host misses its beats; the check says so
            finally:
                self._in_flight.discard(url)

        try:
            self._senders.submit(send)
        except RuntimeError:  # shutting down
            self._in_flight.discard(url)

    def _http(self) -> httpx.Client:
        """The client for peers, made for the first request: a server alone never imports httpx
        (with the command line's click and pygments it imports, ~4 MiB of a server's memory)."""
        with self._client_lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(timeout=httpx.Timeout(2.0, connect=1.0))
            return self._client

    def _send_heartbeats(self) -> None:
        with self._lock:
            targets = [s.url for h, s in self.hosts.items() if h != self.local]
        for url in targets:
            self._post(f"{url}/heartbeat", {"hostInfo": self.local, "timestamp": _now_ms()})

    def _check_heartbeats(self) -> None:
        self.check(_now_ms())

    def check(self, window_end: int) -> None:
        """Decide who is alive from the beats in the window ending at ``window_end``."""
        window_start = window_end - self.settings.window_ms
        with self._lock:
            self.hosts[self.local].alive = True
            self.hosts[self.local].last_status_update_ms = window_end
            for host, status in self.hosts.items():
                if host == self.local:
                    continue
                beats = [b for b in self._beats.get(host, []) if b >= window_start]
                self._beats[host] = beats
                if not beats:
                    status.alive = False
                    continue
                status.alive = self._decide(sorted(b for b in beats if b <= window_end), window_start, window_end)
                status.last_status_update_ms = window_end

    def _decide(self, beats: list[int], window_start: int, window_end: int) -> bool:
        """ksqlDB's rule: count consecutive missed beats, reset on each beat received."""
        interval = self.settings.send_interval_ms
        missed = 0
        prev = window_start
        for ts in beats:
            if ts >= window_end:
                break
            missed = (ts - prev - 1) // interval if ts - interval > prev else 0
            prev = ts
        if window_end - prev - 1 > 0:
            missed = (window_end - prev - 1) // interval
        return missed < self.settings.missed_threshold

    # ---- lags

    def local_lags(self) -> dict[str, Any]:
        lags: dict[str, Any] = {}
        store: Any = getattr(self.engine, "store", None)
        for query_id, query in list(getattr(self.engine, "queries", {}).items()):
            stores = _stores(query)
            plan = getattr(query, "plan", None)
            topic = getattr(getattr(plan, "source", None), "topic", None)
            if not stores or topic is None or getattr(plan, "join", None) is not None:
                continue
            reader = getattr(query, "_reader", None)
            try:
                assigned = {tp.partition for tp in reader.assignment() if tp.topic == topic} if reader else set()
                ends = store.end_offsets(topic)
                settled = query.settled()
            except Exception:  # a query stopping meanwhile reports nothing this round
                log.debug("No lags of query %s this round", query_id, exc_info=True)
                continue
            by_partition = {}
            for p in sorted(assigned):
                end = int(ends.get(p, 0))
                current = min(int(settled.get(p, 0)), end)
                by_partition[str(p)] = {
                    "currentOffsetPosition": current,
                    "endOffsetPosition": end,
                    "offsetLag": max(end - current, 0),
                }
            app_id = getattr(query, "group", None) or f"query_{query_id}"
            for name in stores:
                lags[f"{app_id}#{name}"] = {"lagByPartition": by_partition, "size": len(by_partition)}
        return {"stateStoreLags": lags, "updateTimeMs": _now_ms()}

    def receive_lags(self, host: str, lags: Mapping[str, Any]) -> None:
        with self._lock:
            status = self.hosts.get(host)
            if status is None:
                status = self.hosts[host] = HostStatus(True, _now_ms(), f"http://{host}")
            status.lags = {
                "stateStoreLags": dict(lags.get("stateStoreLags") or {}),
                "updateTimeMs": int(lags.get("updateTimeMs") or 0),
            }

    def _report_lags(self) -> None:
        lags = self.local_lags()
        with self._lock:
            self.hosts[self.local].lags = lags
            targets = [s.url for h, s in self.hosts.items() if h != self.local and s.alive]
        for url in targets:
            self._post(f"{url}/lag", {"ksqlHost": self.local, "hostStoreLags": lags})

    # ---- /clusterStatus

    def status_json(self) -> dict[str, Any]:
        local_active = self.local_active_standby()
        local_lags = self.local_lags() if self.settings.lag_reporting else None
        with self._lock:
            return {
                "clusterStatus": {
                    host: {
                        "hostAlive": status.alive,
                        "lastStatusUpdateMs": status.last_status_update_ms,
                        "activeStandbyPerQuery": local_active if host == self.local else status.active_standby,
                        "hostStoreLags": local_lags if host == self.local and local_lags else status.lags,
                    }
                    for host, status in sorted(self.hosts.items())
                }
            }


def _stores(query: Any) -> list[str]:
    """The state stores of a persistent query, by ksqlDB's names (its changelog topics'
    names without the application id and ``-changelog``)."""
    group = getattr(query, "group", None)
    topics_of = getattr(query, "_changelog_topics", None)
    if group is None or topics_of is None:
        return []
    try:
        topics = topics_of(group)
    except Exception:  # noqa: BLE001 - a query not started yet has none to name
        return []
    return sorted(t.removeprefix(f"{group}-").removesuffix("-changelog") for t in topics)
