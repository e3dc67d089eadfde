"""Pull queries from any server of a cluster: ksqlDB's HA routing (``HARouting``, ``KsLocator``).

On a cluster each server's state holds some partitions of a table (``runtime.materialize``):
those whose task it runs (active) and those it keeps warm copies of (standby). A pull query over
such a table is answered by the servers holding its partitions:

* **Locate.** A key lookup reads the partitions of its keys (Kafka's default partitioner over the
  serialized key); a scan reads every partition. Each partition's hosts come from what the
  servers announce on the cluster's hosts topic (``server.cluster``): active first, then standbys.
* **Filter.** Standbys only with ``ksql.query.pull.enable.standby.reads=true``; hosts the heartbeat
  agent counts dead are dropped; with ``ksql.query.pull.max.allowed.offset.lag`` set, so are hosts
  whose reported lag on the partition exceeds it, or that reported none.
* **Route in rounds.** Partitions are grouped by their first remaining host, one request goes per
  host; a partition whose host failed moves to its next host in the next round. A partition
  without any valid host fails the query before any request ("Partition 2 failed to find valid
  host. Hosts scanned: [...]"), one whose hosts all failed after ("Exhausted standby hosts to
  try."). This server answers its own group locally; others get ``POST /query`` on their inter-node listener with
  ``requestProperties`` ``request.ksql.query.pull.skip.forwarding=true``,
  ``request.ksql.internal.request=true`` and ``request.ksql.query.pull.partition="0,2"``, and
  answer from those partitions, locally, without forwarding again.
* **Merge.** The rows of all hosts, under the header this server's own answer has (LIMIT applied
  to the whole).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from ksqlpy.errors import AnalysisError, ExecutionError
from ksqlpy.runtime.pull import INTERNAL_REQUEST, PARTITIONS, SKIP_FORWARDING, PullTarget, pull_target
from ksqlpy.runtime.rows import Row
from ksqlpy.server.cluster import ClusterAgent

if TYPE_CHECKING:  # imported when a pull query is first forwarded: most servers never do
    import httpx

log = logging.getLogger("ksqlpy.pullroute")

STANDBY_READS = "ksql.query.pull.enable.standby.reads"
MAX_LAG = "ksql.query.pull.max.allowed.offset.lag"
#: How long a forwarded pull query may take before its partitions move to the next host.
FORWARD_TIMEOUT = 30.0


def _true(value: Any) -> bool:
    return str(value).strip().lower() == "true"


def _max_lag(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise AnalysisError(f"Invalid value {value} for configuration {MAX_LAG}: Not a number of type LONG") from None


def forwarded(properties: Mapping[str, str]) -> bool:
    """Whether a request came from another server and is to be answered here only."""
    return _true(properties.get(SKIP_FORWARDING, "false"))


def _result(future: Future[list[Row] | None]) -> list[Row] | None:
    """A forwarded request's rows; any failure of it moves its partitions on (None)."""
    try:
        return future.result()
    except Exception:
        log.info("Forwarding a pull query failed", exc_info=True)
        return None


class PullRouter:
    """Routes one server's table pull queries across its cluster (see the module docstring)."""

    def __init__(self, engine: Any, agent: ClusterAgent) -> None:
        self.engine = engine
        self.agent = agent
        self._client: httpx.Client | None = None

    def _http(self) -> httpx.Client:
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=httpx.Timeout(FORWARD_TIMEOUT, connect=2.0))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def target(self, text: str, properties: Mapping[str, str], variables: Mapping[str, str]) -> PullTarget | None:
        """Where ``text``'s rows live, when it is a pull query this server should route."""
        if forwarded(properties) or PARTITIONS in properties:
            return None
        if not self.agent.clustered:
            return None
        if len(self.agent.hosts) < 2:
            return None
        return pull_target(self.engine.session(properties, variables), text)

    def hosts(self, target: PullTarget, config: Mapping[str, str]) -> dict[int, list[str]]:
        """Per partition to read, the hosts that may answer it, in the order to try them."""
        located = self.agent.table_hosts(target.table)
        standbys = _true(config.get(STANDBY_READS, "false"))
        max_lag = config.get(MAX_LAG)
        app_id = self._app_id(target.table)
        wanted = sorted(target.key_partitions) if target.key_partitions is not None else range(target.partitions)
        out: dict[int, list[str]] = {}
        for p in wanted:
            active, standby = located.get(p, ([], []))
            hosts = active + (standby if standbys else [])
            hosts = [h for h in dict.fromkeys(hosts) if self.agent.alive(h)]
            if max_lag is not None and app_id is not None:
                limit = _max_lag(max_lag)
                hosts = [h for h in hosts if (lag := self.agent.lag_of(h, app_id, p)) is not None and lag <= limit]
            out[p] = hosts
        return out

    def _app_id(self, table: str) -> str | None:
        for query in list(getattr(self.engine, "queries", {}).values()):
            plan = getattr(query, "plan", None)
            if plan is not None and plan.sink is not None and plan.sink.name == table:
                group = getattr(query, "group", None)
                return str(group) if group is not None else None
        return None

    def answer(
        self,
        target: PullTarget,
        text: str,
        properties: Mapping[str, str],
        variables: Mapping[str, str],
        local: Callable[[Mapping[str, str]], Any],
        *,
        authorization: str | None = None,
    ) -> Any:
        """Answer ``text`` from the hosts of its partitions; ``local(properties)`` answers here."""
        config = self.engine.session(properties, variables).config
        candidates = self.hosts(target, config)
        empty = [p for p, hosts in candidates.items() if not hosts]
        if empty:
            # as HARouting: before any request, partitions no valid host holds fail the query,
            # naming every host located for them (filtered out by liveness, standby or lag)
            located = self.agent.table_hosts(target.table)
            raise ExecutionError(
                "Unable to execute pull query. ["
                + ", ".join(
                    f"Partition {p} failed to find valid host. Hosts scanned: "
                    f"[{', '.join(located.get(p, ([], []))[0] + located.get(p, ([], []))[1])}]"
                    for p in sorted(empty)
                )
                + "]"
            )
        pending = dict(candidates)
        rows: list[Row] = []
        mine: frozenset[int] = frozenset()
        while pending:
            by_host: dict[str, list[int]] = {}
            for p, hosts in pending.items():
                if not hosts:
                    raise ExecutionError("Unable to execute pull query: Exhausted standby hosts to try.")
                by_host.setdefault(hosts[0], []).append(p)
            local_parts = by_host.pop(self.agent.local, None)
            with ThreadPoolExecutor(max(1, len(by_host))) as pool:
                futures = {
                    h: pool.submit(self._forward, h, text, properties, variables, ps, authorization) for h, ps in by_host.items()
                }
                if local_parts is not None:
                    mine = mine | frozenset(local_parts)
                answered = {h: _result(f) for h, f in futures.items()}
            next_round: dict[int, list[str]] = {}
            for host, parts in by_host.items():
                got = answered.get(host)
                if got is None:
                    log.info("Pull query partitions %s move on from host %s", parts, host)
                    for p in parts:
                        next_round[p] = pending[p][1:]
                else:
                    rows.extend(got)
            pending = next_round
        # this server answers its partitions (none, for the header alone) as any local pull query
        header = local({**properties, PARTITIONS: ",".join(str(p) for p in sorted(mine)) or "-1"})
        merged = header.drain() + rows
        if target.limit is not None:
            merged = merged[: target.limit]
        header._rows = merged
        return header

    def _forward(
        self,
        host: str,
        text: str,
        properties: Mapping[str, str],
        variables: Mapping[str, str],
        parts: list[int],
        authorization: str | None,
    ) -> list[Row] | None:
        """Rows of ``parts`` from ``host`` (ksqlDB's ``forwardTo``), None when it could not answer.
        The caller's credentials go along, so the other server authorizes the same user."""
        body = {
            "ksql": text,
            "streamsProperties": dict(properties),
            "sessionVariables": dict(variables),
            "requestProperties": {
                SKIP_FORWARDING: True,
                INTERNAL_REQUEST: True,
                PARTITIONS: ",".join(str(p) for p in sorted(parts)),
            },
        }
        import httpx

        headers = {"content-type": "application/json", "accept": "application/json"}
        if authorization is not None:
            headers["authorization"] = authorization
        try:
            response = self._http().post(
                f"{self.agent.url_of(host)}/query", content=orjson.dumps(body), headers=headers
            )
        except httpx.HTTPError as e:
            log.info("Forwarding a pull query to %s failed: %s", host, e)
            return None
        if response.status_code != 200:
            log.info("Forwarding a pull query to %s failed: %s %s", host, response.status_code, response.text[:300])
            return None
        try:
            items = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return None
        out: list[Row] = []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            if "errorMessage" in item or item.get("@type") in ("generic_error", "statement_error"):
                return None
            row = item.get("row")
            if isinstance(row, dict):
                out.append(Row(tuple(row.get("columns") or ()), False))
        return out


__all__ = ["PullRouter", "forwarded"]
