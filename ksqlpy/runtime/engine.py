"""The engine facade: one object the server, the shell (through the server) and the test runner use.

``Engine.open(config)`` opens the topic store (embedded unless ``bootstrap.servers`` is set),
replays the command log and restarts persistent queries; on Kafka it then keeps tailing the
command topic, which it shares with the other servers of its cluster
(:mod:`ksqlpy.runtime.commandrunner`). ``engine.session(...)`` gives a
:class:`~ksqlpy.runtime.session.Session` whose ``execute(text)`` runs statements and yields one
result entity per statement, and whose ``execute_query(text)`` starts a push or pull query.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ksqlpy import __version__
from ksqlpy.errors import KsqlpyError, NotFoundError, PlanError, TopicError
from ksqlpy.parser import build_lexers
from ksqlpy.planner.catalog import Catalog, Column
from ksqlpy.planner.physical import QueryPlan
from ksqlpy.planner.steps.commands import KsqlPlan
from ksqlpy.runtime import results as r
from ksqlpy.runtime.commandlog import Command, CommandLog
from ksqlpy.runtime.config import EngineConfig
from ksqlpy.runtime.depth import allow_deep_statements
from ksqlpy.runtime.partitions import StandbyPlacement
from ksqlpy.runtime.processing_log import PROCESSING_LOG_DDL, ProcessingLog
from ksqlpy.runtime.query import PersistentQuery, QueryState, new_connection
from ksqlpy.runtime.rows import Row
from ksqlpy.runtime.serde.registry import configure_registry
from ksqlpy.runtime.store.base import TopicSpec as TopicSpecType
from ksqlpy.runtime.store.base import TopicStore
from ksqlpy.runtime.streaming import StreamingQuery

log = logging.getLogger("ksqlpy.engine")


def _warm_up() -> None:
    """Set up ahead what the first statements would otherwise set up as they run: the
    evaluation database and its functions, the parser's lexer states, and the modules every
    persistent query's start imports."""
    try:
        new_connection().close()
    except Exception:  # the first query sets it up then, and says what fails
        log.debug("setting up the evaluation database failed", exc_info=True)
    build_lexers()
    import ksqlpy.runtime.group_by
    import ksqlpy.runtime.join.runner  # noqa: F401


__all__ = ["Engine", "Row", "StreamingQuery"]


class Engine:
    """A running ksqlpy engine over one topic store."""

    def __init__(self, store: TopicStore, config: EngineConfig) -> None:
        self.store = store
        self.config = config
        self.catalog = Catalog()
        self._warm_up: threading.Thread | None = None
        self.queries: dict[str, PersistentQuery] = {}
        self.transient: dict[str, Any] = {}
        #: table name -> its Materializer (ksqlpy.runtime.materialize)
        self.materializers: dict[str, Any] = {}
        self.command_statuses: dict[str, r.CommandStatus] = {}
        self.lock = threading.RLock()
        self.plog = ProcessingLog(
            store,
            f"{config.service_id}ksql_processing_log",
            include_rows=config.get_bool("ksql.logging.processing.rows.include", False),
        )
        self.commands = CommandLog(store, config.service_id)
        #: AVRO/PROTOBUF/JSON_SR schemas: Confluent Schema Registry when configured, else in the store
        self.schema_registry = configure_registry(
            store,
            config.get("ksql.schema.registry.url"),
            user_info=config.get("ksql.schema.registry.basic.auth.user.info"),
        )
        self.cluster_id = "ksqlpy-" + uuid.uuid5(uuid.NAMESPACE_DNS, config.service_id).hex[:16]
        allow_deep_statements()
        self.state = "INITIALIZING"
        #: the stored plan (ksqlDB's ``ksqlPlanV1``) of each running persistent query
        self.ksql_plans: dict[str, Any] = {}
        self._query_counter = 0
        self.replaying = False
        #: offset of the last command applied (-1: none); query ids follow it on a server
        self.last_command_offset = -1
        #: "command-offset": query ids number from the command log as ksqlDB's servers number them
        #: (``CSAS_<SINK>_<offset of the last command applied + 1>``, so every server of a cluster
        #: agrees); "sequential" (the default, as ksqlDB's test and standalone engines): one count
        #: of queries, as the conformance cases expect
        self.query_ids = config.get("ksqlpy.query.ids", "sequential") or "sequential"
        #: where this server keeps standby copies of queries' state (``partitions.StandbyPlacement``);
        #: the server's cluster agent installs one once it knows the cluster's members
        self.standby_placement: StandbyPlacement | None = None
        #: the command topic's tail when the store is Kafka (a cluster), else None
        self.runner: Any = None
        if store.kind == "kafka":
            from ksqlpy.runtime.commandrunner import CommandRunner

            self.runner = CommandRunner(self, store, self.commands.topic, config.service_id)  # type: ignore[arg-type]

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    def open(cls, config: Mapping[str, Any] | None = None) -> Engine:
        """An engine over its store, started: the command log replayed, queries running."""
        engine = cls.create(config)
        try:
            engine.start()
        except BaseException:
            engine.store.close()
            raise
        return engine

    @classmethod
    def create(cls, config: Mapping[str, Any] | None = None) -> Engine:
        """An engine over its store (opened), INITIALIZING until :meth:`start`: a server serves
        meanwhile, answering that it is not ready yet."""
        from ksqlpy.runtime.store import open_store

        cfg = EngineConfig.of(config or {})
        return cls(open_store(cfg.as_store_config()), cfg)

    def start(self) -> None:
        """Replay the command log, start the queries it left running; READY after."""
        from ksqlpy.runtime.session import Session

        self.store.ready()
        self.plog.ensure_topic()
        self.replaying = True
        try:
            if self.runner is not None:
                self.runner.catch_up()
            else:
                for seq, command in self.commands.replay():
                    self.apply_command(seq, command)
        finally:
            self.replaying = False
        replayed = self._replayed
        if self.config.get_bool("ksql.logging.processing.stream.auto.create", True):
            name = "KSQL_PROCESSING_LOG"
            if self.catalog.find(name) is None:
                Session(self, {}, {}).run_internal(PROCESSING_LOG_DDL.format(topic=self.plog.topic))
        for q in list(self.queries.values()):
            if q.state is QueryState.CREATED:
                q.start()
        for m in list(self.materializers.values()):
            m.start()
        if self.runner is not None:
            self.runner.start()
        # The evaluation database and its functions are set up on first use (~0.15 s of CPU),
        # the parser's lexer states too (~0.1 s): now, in the background, rather than when the
        # first statements run.
        # Not a daemon, and joined by close(): a process exiting while DuckDB sets up in a daemon
        # thread is aborted by the C++ runtime ("FATAL: exception not rethrown").
        self._warm_up = threading.Thread(target=_warm_up, name="ksqlpy-warm-up")
        self._warm_up.start()
        self.state = "READY"
        if replayed:
            log.info(
                "Restored %d statements from the command log: %d streams/tables, %d running queries.",
                replayed, len(self.catalog.sources), len(self.queries),
            )
            for q in self.queries.values():
                log.info("Query %s resumes %s.", q.query_id, self._resume_text(q))

    _replayed = 0

    def apply_command(self, seq: int, command: Command) -> None:
        """Apply command ``seq`` read back from the command log (on start, or as the command
        runner tails the topic). On start, a stored plan this build cannot run stops the start
        rather than leaving a stream, table or query silently behind; a statement without a plan
        that no longer applies is skipped."""
        from ksqlpy.runtime.session import Session

        session = Session(self, command.properties, {})
        command_id = command.command_id
        if command_id is not None:
            self.command_statuses[command_id] = r.CommandStatus(
                status=r.CommandState.EXECUTING, message="Executing statement", query_id=command.query_id
            )
        try:
            try:
                session.replay(command, seq)
                self._replayed += 1
                if command_id is not None:
                    self.command_statuses[command_id] = r.CommandStatus(
                        status=r.CommandState.SUCCESS, message=command.message, query_id=command.query_id
                    )
            except KsqlpyError as e:
                if command_id is not None:
                    self.command_statuses[command_id] = r.CommandStatus(
                        status=r.CommandState.ERROR, message=e.message, query_id=command.query_id
                    )
                if not self.replaying:
                    raise
                if command.plan is not None:
                    raise KsqlpyError(
                        f"Command {seq} of the command log ({command.statement.strip()[:80]!r}) cannot be "
                        f"applied by this version of ksqlpy: {e.message}"
                    ) from e
                log.warning("Skipped command %d on replay, it no longer applies: %s", seq, e)
        finally:
            self.last_command_offset = max(self.last_command_offset, seq)

    def _resume_text(self, q: Any) -> str:
        """Where a restored query picks up: ``at offset 1200 of pageviews`` per partition."""
        try:
            topic = q.plan.source.topic
            committed = self.store.committed(q.group, topic) if q.group else {}
        except Exception:  # noqa: BLE001 - a log line must not stop the start
            return "from its committed positions"
        if not committed:
            return f"from the {q.start_position} offsets of {topic} (nothing committed yet)"
        where = ", ".join(f"partition {p} at offset {o}" for p, o in sorted(committed.items()))
        return f"reading {topic} {where}"

    def close(self) -> None:
        self.state = "TERMINATING"
        if self.runner is not None:
            self.runner.stop()
        for q in list(self.transient.values()):
            q.close()
        for q in list(self.queries.values()):
            q.stop()
        for m in list(self.materializers.values()):
            m.stop()
        self.schema_registry.close()
        self.store.close()
        if self._warm_up is not None:
            self._warm_up.join()
        self.state = "TERMINATED"

    def warmed_up(self) -> None:
        """Wait until the background set-up begun by :meth:`start` has ended."""
        if self._warm_up is not None:
            self._warm_up.join()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- sessions

    def session(
        self, properties: Mapping[str, Any] | None = None, variables: Mapping[str, str] | None = None
    ) -> Any:
        from ksqlpy.runtime.session import Session

        return Session(self, properties or {}, variables or {})

    # ---------------------------------------------------------------- queries

    def next_query_number(self) -> int:
        """The number of the next query's id (see :attr:`query_ids`)."""
        if self.query_ids == "command-offset":
            return self.last_command_offset + 1
        with self.lock:
            n = self._query_counter
            self._query_counter += 1
            return n

    def record_command(
        self,
        statement: str,
        properties: Mapping[str, Any],
        query_id: str | None,
        plan: Any = None,
        *,
        command_id: str | None = None,
        message: str = "",
    ) -> int:
        """Append a command (with its plan, a :class:`KsqlPlan`, when it has one) to the log."""
        if self.replaying:
            return -1
        stored = plan.to_json() if plan is not None else None
        seq = self.commands.append(Command(statement, dict(properties), query_id, stored, command_id, message))
        self.last_command_offset = max(self.last_command_offset, seq)
        return seq

    def start_persistent(
        self, plan: QueryPlan, properties: Mapping[str, Any] | None = None, *, start: bool = True
    ) -> PersistentQuery:
        """Start (or, on replay, restart) a persistent query; where a query without committed
        positions starts reading is ``auto.offset.reset`` as set in its statement's session.
        ``start=False``: registered only, for the caller to start."""
        from ksqlpy.runtime.group_by import GroupByQuery, uses_repartition_topic
        from ksqlpy.runtime.join.runner import JoinQuery

        runner: type[PersistentQuery] = PersistentQuery
        if plan.join is not None:
            runner = JoinQuery
        elif uses_repartition_topic(plan.step, self.store):
            runner = GroupByQuery
        query = runner(
            plan,
            self.store,
            self.plog,
            group=self.query_group(plan.query_id),
            start=self.config.offset_reset(properties),
        )
        if isinstance(query, JoinQuery):
            query.configure(self.config.merged(properties or {}))
        query.standby_placement = self._place_standbys
        self.queries[plan.query_id] = query
        if start and not self.replaying:
            query.start()
        return query

    def _place_standbys(self, query_id: str, partitions: int, owned: frozenset[int]) -> Mapping[int, bool] | None:
        """The installed standby placement's answer (None while there is none)."""
        placement = self.standby_placement
        return None if placement is None else placement(query_id, partitions, owned)

    def apply_plan(
        self, plan: KsqlPlan, properties: Mapping[str, Any] | None = None, *, generation: int = 0
    ) -> PersistentQuery | None:
        """Apply a stored plan (ksqlDB's ``ksqlPlanV1``) as it is, without planning its text
        again: its DDL command changes the catalog, and its query plan, when it has one, is
        compiled (:mod:`ksqlpy.runtime.compile`) and started. A plan that does not compile
        changes nothing. Tables are materialized as the statements that create them
        materialize them; ``generation`` is the command's place in the log (see
        :meth:`materialize`). Returns the started query, if any."""
        from ksqlpy.planner.steps import commands as cmd

        properties = dict(properties or {})
        command = plan.ddl_command
        with self.lock:
            match command:
                case cmd.CreateSourceCommand():
                    return self._apply_create(plan, command, properties, generation)
                case cmd.RegisterTypeCommand():
                    self.catalog.types[command.type_name] = _parse_type(command.type, self.catalog.types)
                case cmd.DropTypeCommand():
                    self.catalog.types.pop(command.type_name, None)
                case cmd.DropSourceCommand():
                    dropped = self.catalog.find(command.source_name)
                    self.catalog.remove(command.source_name)
                    if dropped is not None and dropped.is_table:
                        self.unmaterialize(command.source_name)
                case cmd.AlterSourceCommand():
                    from dataclasses import replace

                    source = self.catalog.source(command.source_name)
                    added = tuple(
                        Column(name=c.name, type=_parse_type(c.type, self.catalog.types)) for c in command.new_columns
                    )
                    altered = replace(source, columns=source.columns + added)
                    self.catalog.add(altered)
                    if altered.is_table:
                        self.materialize(altered, generation)
                case None:
                    pass
                case _:
                    raise PlanError(f"Unsupported DDL command: {command.TYPE}")
            if plan.query_plan is None:
                return None
            # INSERT INTO: a query into an existing stream
            sink = self.catalog.find(plan.query_plan.sink or "")
            if sink is None:
                raise PlanError(f"The sink of query {plan.query_plan.query_id} does not exist: {plan.query_plan.sink}")
            return self._start_plan(plan, sink, properties, generation, materialize=False)

    def _apply_create(
        self, plan: KsqlPlan, command: Any, properties: Mapping[str, Any], generation: int
    ) -> PersistentQuery | None:
        from ksqlpy.runtime.compile import source_from_command

        spec = self.store.describe_topic(command.topic_name)
        if spec is None:
            spec = self._topic_like(plan.query_plan)
        source = source_from_command(
            command, self.catalog.types, statement=plan.statement_text, partitions=spec.partitions, replicas=spec.replicas
        )
        if plan.query_plan is None:
            self._ensure_topic(source)
            self.catalog.add(source)
            if source.is_table:
                self.materialize(source, generation)
            return None
        return self._start_plan(plan, source, properties, generation, materialize=True, replace_sink=command.or_replace)

    def _start_plan(
        self,
        plan: KsqlPlan,
        sink: Any,
        properties: Mapping[str, Any],
        generation: int,
        *,
        materialize: bool,
        replace_sink: bool = False,
    ) -> PersistentQuery:
        """Compile a plan's query writing to ``sink`` and start it; ``materialize``: the plan
        creates ``sink`` (CREATE ... AS SELECT), which joins the catalog once the plan compiles."""
        from dataclasses import replace

        from ksqlpy.planner.aggregate import aggregate_window_info
        from ksqlpy.planner.physical import AggregateStep
        from ksqlpy.runtime.compile import compile_query

        assert plan.query_plan is not None
        compiled = compile_query(
            plan.query_plan, self.catalog, sink, self.config.merged(properties), statement=plan.statement_text
        )
        if materialize and isinstance(compiled.step, AggregateStep):
            # the sink's windows are kept as long as the aggregation's retention says
            window = aggregate_window_info(compiled.step)
            if window is not None and sink.window is not None:
                window = replace(window, emit_strategy=sink.window.emit_strategy)
            sink = replace(sink, window=window)
            compiled = replace(compiled, sink=sink)
        if replace_sink:  # CREATE OR REPLACE: the new query takes over from the old one
            for q in list(self.queries.values()):
                if q.plan.sink is not None and q.plan.sink.name == sink.name:
                    self.terminate(q.query_id)
        if materialize:
            self._ensure_topic(sink)
            self.catalog.add(sink)
        query = self.start_persistent(compiled, properties, start=False)
        self.ksql_plans[compiled.query_id] = plan
        self._count_query_id(compiled.query_id)
        try:
            if materialize and sink.is_table:
                # The table's materializer exists before the query starts: the query may feed its
                # rows into the table's state (materialize.py, "Fed partitions") from its first batch.
                self.materialize(sink, generation)
                query.materializer_of = functools.partial(self.materializers.get, sink.name)
        finally:
            if not self.replaying:
                query.start()
        return query

    def _count_query_id(self, query_id: str) -> None:
        """Keep new query numbers past those of queries read back from the log."""
        number = query_id.rsplit("_", 1)[-1]
        if number.isdigit():
            with self.lock:
                self._query_counter = max(self._query_counter, int(number) + 1)

    def _topic_like(self, query_plan: Any) -> TopicSpecType:
        """The shape of a topic to create for a plan's stream or table: a query's sink gets as
        many partitions as the topic it reads (as CREATE ... AS SELECT without PARTITIONS)."""
        for name in query_plan.sources if query_plan is not None else ():
            src = self.catalog.find(name)
            spec = self.store.describe_topic(src.topic) if src is not None else None
            if spec is not None:
                return spec
        return TopicSpecType(name="", partitions=1, replicas=1)

    def _ensure_topic(self, source: Any) -> None:
        if self.store.describe_topic(source.topic) is None:
            config = {"cleanup.policy": "compact" if source.is_table else "delete"}
            spec = TopicSpecType(
                name=source.topic, partitions=source.partitions, replicas=source.replicas, config=config
            )
            self.store.create_topic(spec, exist_ok=True)

    def materialize(self, source: Any, generation: int) -> None:
        """Keep table ``source`` materialized for pull queries (replacing an earlier one of the
        same name). ``generation`` is the command that created the table: a new generation
        rebuilds the state from the topic, the same one resumes where it stopped."""
        from ksqlpy.runtime.materialize import Materializer

        self.unmaterialize(source.name, drop_state=False)
        group = f"_confluent-ksql-{self.config.service_id}materialize_{source.name}_{max(generation, 0)}"
        owned = functools.partial(self.held_partitions, source.name) if self.store.kind == "kafka" else None
        known = functools.partial(self.table_owners_known, source.name) if owned is not None else None
        m = Materializer(source, self.store, self.plog, group=group, owned=owned, owners_known=known)
        self.materializers[source.name] = m
        if not self.replaying:
            m.start()

    def table_owners(self, name: str) -> tuple[frozenset[int], frozenset[int]] | None:
        """The partitions of table ``name`` whose task this server runs (active) and those it
        keeps a standby copy of, as the persistent query writing the table holds them; None when
        no query here writes it with state that follows partitions (a source table, a join):
        then this server keeps every partition."""
        for query in list(self.queries.values()):
            plan = getattr(query, "plan", None)
            if plan is None or plan.sink is None or plan.sink.name != name:
                continue
            owned = getattr(query, "owned_partitions", None)
            return owned() if owned is not None else None
        return None

    def table_owners_known(self, name: str) -> bool:
        """Whether :meth:`table_owners` is settled for table ``name``: False while the query
        writing it waits for its first assignment (it names no partitions then)."""
        for query in list(self.queries.values()):
            plan = getattr(query, "plan", None)
            if plan is None or plan.sink is None or plan.sink.name != name:
                continue
            known = getattr(query, "owners_known", None)
            return bool(known()) if known is not None else True
        return True

    def held_partitions(self, name: str) -> frozenset[int] | None:
        """The partitions of table ``name`` this server materializes (active and standby)."""
        owners = self.table_owners(name)
        return None if owners is None else owners[0] | owners[1]

    def unmaterialize(self, name: str, *, drop_state: bool = True) -> None:
        """Stop materializing table ``name``; on DROP, also delete its state (not on replay,
        where a later command may have re-created the table under the same name)."""
        from ksqlpy.runtime.materialize import drop_state as drop

        m = self.materializers.pop(name, None)
        if m is not None:
            m.stop()
        if drop_state and not self.replaying:
            with self.store.transaction() as tx:
                drop(tx.state, name)

    def query_group(self, query_id: str) -> str:
        return f"_confluent-ksql-{self.config.service_id}query_{query_id}"

    def terminate(self, query_id: str, *, drop_state: bool = False) -> None:
        """Stop a persistent query. ``drop_state`` (TERMINATE, not CREATE OR REPLACE, which
        keeps the state for the query that replaces it) also deletes its state and changelog
        topics, as ksqlDB deletes a terminated query's internal topics."""
        query = self.queries.pop(query_id, None)
        if query is None:
            raise NotFoundError(f"Unknown queryId: {query_id}")
        self.ksql_plans.pop(query_id, None)
        query.stop()
        if drop_state and not self.replaying:
            try:
                query.drop_state()
            except TopicError as e:
                # on a cluster every server drops a terminated query's internal topics; the
                # first one to get there deletes them
                log.warning("Query %s terminated; its internal topics: %s", query_id, e.message)

    def close_query(self, query_id: str) -> bool:
        q = self.transient.pop(query_id, None)
        if q is None:
            return False
        q.close()
        return True

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until every persistent query has processed all records available to it.

        Used by the test runner and tests: a query is idle when its last poll found nothing new.
        Two consecutive idle rounds are required, so records a query just produced for a
        downstream query are seen by it too.
        """
        deadline = time.monotonic() + timeout
        stable = 0
        while time.monotonic() < deadline:
            queries = list(self.queries.values()) + list(self.materializers.values())
            busy = any(not q.is_idle() for q in queries) or any(not q.caught_up() for q in queries)
            stable = 0 if busy else stable + 1
            if stable >= 2:
                return True
            time.sleep(0.02)
        if timeout < 5:
            return False  # a short wait is a check, whose caller polls again
        still = [
            f"{name} ({'reading' if not q.is_idle() else 'not caught up'})"
            for name, q in {**self.queries, **{f"materializer of {n}": m for n, m in self.materializers.items()}}.items()
            if not q.is_idle() or not q.caught_up()
        ]
        log.warning("Queries still busy after %.0f s: %s.", timeout, ", ".join(still) or "none")
        return False

    # ---------------------------------------------------------------- server facade

    def server_info(self) -> r.ServerInfo:
        status = "RUNNING" if not any(q.state is QueryState.ERROR for q in self.queries.values()) else "ERROR"
        return r.ServerInfo(
            version=__version__, kafka_cluster_id=self.cluster_id, service_id=self.config.service_id, status=status
        )

    def health(self) -> r.Health:
        return r.Health(
            is_healthy=self.state == "READY",
            details={"metastore": True, "kafka": True, "commandRunner": self.state == "READY"},
            server_state=self.state,
        )

    def command_status(self, command_id: str) -> r.CommandStatus | None:
        return self.command_statuses.get(command_id)

    def check_property(self, name: str) -> None:
        self.config.check_overridable(name)

    def insert_row(self, target: str, row: Mapping[str, Any], properties: Mapping[str, Any] | None = None) -> None:
        from ksqlpy.runtime.insert import insert_json_row

        insert_json_row(self, target, row)

    def insert_rows(
        self, target: str, rows: Sequence[Mapping[str, Any]], properties: Mapping[str, Any] | None = None
    ) -> None:
        """Insert rows in one batch; a row that does not convert raises
        :class:`~ksqlpy.runtime.insert.InsertRowError` (its index) after the rows before it."""
        from ksqlpy.runtime.insert import insert_json_rows

        insert_json_rows(self, target, rows)

    @property
    def store_kind(self) -> str:
        return self.store.kind

    @property
    def data_dir(self) -> str:
        return self.config.state_dir


def _parse_type(text: str, types: Mapping[str, Any]) -> Any:
    """A type as plans write it (``STRUCT<`CITY` STRING>``), custom types resolved."""
    from ksqlpy.planner.steps.schema import LogicalSchema

    return LogicalSchema.parse(f"`X` {text}", types).columns[0].type
