"""Membership rules of ``server/cluster.py``: the inter-node listener, ksqlDB's heartbeat
arithmetic, and the ``/heartbeat``, ``/lag`` and ``/clusterStatus`` wire shapes on a real server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
from server.conftest import ServerThread, server_config  # type: ignore[import-not-found]

from ksqlpy.runtime.engine import Engine
from ksqlpy.server.app import create_app
from ksqlpy.server.cluster import ClusterAgent, inter_node_listener
from ksqlpy.server.config import ConfigError, ServerConfig


def _config(**props: str) -> ServerConfig:
    return ServerConfig.load(environ={}, overrides={"ksql.streams.state.dir": ":memory:", **props})


def test_inter_node_listener_follows_ksqldb_rules() -> None:
    first = _config(listeners="http://10.0.0.5:8088,http://127.0.0.1:9000")
    assert inter_node_listener(first) == "http://10.0.0.5:8088"
    internal = _config(listeners="http://10.0.0.5:8088", **{"ksql.internal.listener": "http://10.0.0.6:8099"})
    assert inter_node_listener(internal) == "http://10.0.0.6:8099"
    advertised = _config(
        listeners="http://0.0.0.0:8088",
        **{"ksql.internal.listener": "http://10.0.0.6:8099", "ksql.advertised.listener": "https://node-1:8443"},
    )
    assert inter_node_listener(advertised) == "https://node-1:8443"
    # a wildcard is replaced by this machine's name where it is only bound to...
    assert inter_node_listener(_config(listeners="http://0.0.0.0:8088")) == f"http://{socket.getfqdn()}:8088"
    # ...and refused where it is meant to be advertised
    with pytest.raises(ConfigError, match="Can not be wildcard"):
        _config(**{"ksql.advertised.listener": "http://0.0.0.0:8088"})
    with pytest.raises(ConfigError, match="Must have valid port"):
        _config(**{"ksql.advertised.listener": "http://node-1"})


def test_heartbeat_settings_are_checked_at_start() -> None:
    with pytest.raises(ConfigError, match="ksql.heartbeat.send.interval.ms"):
        _config(**{"ksql.heartbeat.send.interval.ms": "soon"})
    assert _config(**{"ksql.heartbeat.enable": "true"}).unsupported() == []


def test_a_host_is_dead_after_the_missed_threshold_of_beats() -> None:
    agent = ClusterAgent(None, _config(listeners="http://127.0.0.1:8088"))
    peer = "127.0.0.1:9999"
    for ts in range(10_000, 12_001, 100):  # a beat every 100 ms, up to 12000
        agent.receive_heartbeat(peer, ts)
    agent.check(12_050)
    assert agent.hosts[peer].alive and agent.hosts[peer].last_status_update_ms == 12_050
    # (windowEnd - lastBeat - 1) // interval: 299 ms after the last beat is 2 missed, still alive
    agent.check(12_300)
    assert agent.hosts[peer].alive
    # 3 missed in a row (ksql.heartbeat.missed.threshold.ms, a count) is dead
    agent.check(12_301)
    assert not agent.hosts[peer].alive
    # beats again: alive again
    agent.receive_heartbeat(peer, 12_400)
    agent.check(12_450)
    assert agent.hosts[peer].alive
    # nothing in the whole window: dead
    agent.check(20_000)
    assert not agent.hosts[peer].alive


def _announce(agent: ClusterAgent, host: str, query_id: str, active: list[int]) -> None:
    agent.receive_heartbeat(host, 0)
    agent.hosts[host].active_standby = {
        query_id: {"activePartitions": [{"topic": "t", "partition": p} for p in active]}
    }


def test_standbys_are_placed_on_the_next_live_hosts_after_the_active() -> None:
    """Every server derives the same placement: n standbys per partition, on the n live hosts
    after its active one in the order of their ids, one per host, never on the active."""
    hosts = ["127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003"]
    owned = {hosts[0]: [0, 3], hosts[1]: [1, 4], hosts[2]: [2, 5]}

    def placements(replicas: int) -> dict[str, set[int]]:
        out = {}
        for me in hosts:
            engine = SimpleNamespace(store=SimpleNamespace(standby_replicas=replicas))
            agent = ClusterAgent(engine, _config(listeners=f"http://{me}"))
            for peer in hosts:
                if peer != me:
                    _announce(agent, peer, "CTAS_T_1", owned[peer])
            placed = agent.place_standbys("CTAS_T_1", 6, frozenset(owned[me]))
            assert set(placed) == set(range(6))  # every partition's active host is known
            out[me] = {p for p, here in placed.items() if here}
        return out

    one = placements(1)
    assert one == {hosts[0]: {2, 5}, hosts[1]: {0, 3}, hosts[2]: {1, 4}}
    two = placements(2)
    assert all(two[h] == set(range(6)) - set(owned[h]) for h in hosts)
    assert placements(5) == two  # at most one copy per server: no more than the others
    # a dead host holds no standby: its partitions' copies move to the next live host
    engine = SimpleNamespace(store=SimpleNamespace(standby_replicas=1))
    agent = ClusterAgent(engine, _config(listeners=f"http://{hosts[0]}"))
    _announce(agent, hosts[1], "CTAS_T_1", [1, 4])
    _announce(agent, hosts[2], "CTAS_T_1", [2, 5])
    agent.hosts[hosts[2]].alive = False
    placed = agent.place_standbys("CTAS_T_1", 6, frozenset({0, 3}))
    assert {p for p, here in placed.items() if here} == {1, 4}
    assert 2 not in placed  # the dead host's partitions: undecided until reassigned


@pytest.fixture
def heartbeat_server() -> Iterator[str]:
    config = server_config(
        **{
            "ksql.heartbeat.enable": "true",
            "ksql.lag.reporting.enable": "true",
            "ksql.server.command.response.timeout.ms": "300",
        }
    )
    engine = Engine.open(config.engine_properties())
    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    try:
        yield f"http://127.0.0.1:{config.listeners[0].port}"
    finally:
        thread.stop()
        engine.close()


def test_heartbeat_lag_and_cluster_status_wire_shapes(heartbeat_server: str) -> None:
    url = heartbeat_server
    local = url.removeprefix("http://")
    beat = httpx.post(f"{url}/heartbeat", json={"hostInfo": "peer-1:8088", "timestamp": 1_700_000_000_000})
    assert beat.status_code == 200 and beat.json() == {"isOk": True}
    lags = {
        "stateStoreLags": {
            "_confluent-ksql-default_query_CTAS_T_1#Aggregate-Aggregate-Materialize": {
                "lagByPartition": {"0": {"currentOffsetPosition": 3, "endOffsetPosition": 5, "offsetLag": 2}},
                "size": 1,
            }
        },
        "updateTimeMs": 1_700_000_000_100,
    }
    lag = httpx.post(f"{url}/lag", json={"ksqlHost": "peer-1:8088", "hostStoreLags": lags})
    assert lag.status_code == 200 and lag.json() == {"isOk": True}
    bad = httpx.post(f"{url}/heartbeat", json={"hostInfo": "peer-1", "timestamp": 1})
    assert bad.status_code == 400 and "hostInfo" in bad.json()["message"]
    status = httpx.get(f"{url}/clusterStatus").json()["clusterStatus"]
    assert set(status) == {local, "peer-1:8088"}
    me = status[local]
    assert me["hostAlive"] is True and me["activeStandbyPerQuery"] == {}
    assert set(me) == {"hostAlive", "lastStatusUpdateMs", "activeStandbyPerQuery", "hostStoreLags"}
    assert status["peer-1:8088"]["hostStoreLags"] == lags


def test_a_request_waits_for_the_command_it_names(heartbeat_server: str) -> None:
    url = heartbeat_server
    (created,) = httpx.post(
        f"{url}/ksql",
        json={"ksql": "CREATE STREAM waited (id INT KEY) WITH (kafka_topic='waited', value_format='JSON', partitions=1);"},
    ).json()
    seq = created["commandSequenceNumber"]
    shown = httpx.post(f"{url}/ksql", json={"ksql": "SHOW STREAMS;", "commandSequenceNumber": seq})
    assert shown.status_code == 200 and "WAITED" in {s["name"] for s in shown.json()[0]["streams"]}
    # a command this server has not applied (within ksql.server.command.response.timeout.ms): 503
    later = httpx.post(f"{url}/ksql", json={"ksql": "SHOW STREAMS;", "commandSequenceNumber": seq + 1000})
    assert later.status_code == 503
    assert later.json() == {
        "@type": "generic_error",
        "error_code": 50301,
        "message": f"Timed out while waiting for a previous command to execute. command sequence number: {seq + 1000}",
    }
    bad = httpx.post(f"{url}/ksql", json={"ksql": "SHOW STREAMS;", "commandSequenceNumber": "soon"})
    assert bad.status_code == 400


def test_internal_endpoints_only_on_the_internal_listener() -> None:
    from server.conftest import free_port  # type: ignore[import-not-found]

    internal_port = free_port()
    config = server_config(
        **{"ksql.heartbeat.enable": "true", "ksql.internal.listener": f"http://127.0.0.1:{internal_port}"}
    )
    thread = ServerThread(create_app(None, config), config)
    thread.start()
    public = f"http://127.0.0.1:{config.listeners[0].port}"
    internal = f"http://127.0.0.1:{internal_port}"
    try:
        beat = {"hostInfo": "peer-1:8088", "timestamp": 1}
        refused = httpx.post(f"{public}/heartbeat", json=beat)
        assert refused.status_code == 400
        assert refused.json() == {
            "@type": "generic_error",
            "error_code": 50000,
            "message": "Can't call internal endpoint on public listener",
        }
        assert httpx.post(f"{internal}/heartbeat", json=beat).json() == {"isOk": True}
        # the cluster knows this server by its internal listener
        assert set(httpx.get(f"{public}/clusterStatus").json()["clusterStatus"]) == {
            f"127.0.0.1:{internal_port}",
            "peer-1:8088",
        }
    finally:
        thread.stop()
