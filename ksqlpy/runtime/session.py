"""A session: statements executed with one set of property overrides and variables.

``execute(text)`` runs each statement in turn and yields its result entity (None for
statements that produce none). ``execute_query(text)`` starts a push or pull query. Statements
that change the metastore are recorded in the command log before they take effect, with
variables already substituted, so replaying the log rebuilds the same state.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ksqlpy import parser
from ksqlpy.errors import AnalysisError, KsqlpyError, NotFoundError, ParseError
from ksqlpy.parser import ast
from ksqlpy.planner import ddl
from ksqlpy.planner.catalog import Catalog, Column, Source
from ksqlpy.planner.physical import QueryPlan
from ksqlpy.planner.plans import (
    PlanContext,
    PlannedQuery,
    TopicShape,
    fit_to_sink,
    insert_target,
    plan_create_as_select,
    plan_insert_into,
)
from ksqlpy.planner.plans.queries import analyze, analyze_query
from ksqlpy.planner.properties import WithClause
from ksqlpy.planner.statement_text import planned_statement_text
from ksqlpy.planner.steps import (
    AlterSourceCommand,
    DropSourceCommand,
    DropTypeCommand,
    KsqlPlan,
    RegisterTypeCommand,
)
from ksqlpy.planner.steps.catalog import command_of
from ksqlpy.planner.steps.commands import ColumnSpec
from ksqlpy.planner.steps.schema import type_text
from ksqlpy.planner.types import resolve_type
from ksqlpy.runtime import describe
from ksqlpy.runtime import results as r
from ksqlpy.runtime.commandlog import Command
from ksqlpy.runtime.depth import too_complex
from ksqlpy.runtime.query import PushQuery, QueryState
from ksqlpy.runtime.serde import sr
from ksqlpy.runtime.store.base import TopicSpec

if TYPE_CHECKING:
    from ksqlpy.runtime.engine import Engine

KIND_WORD = {ast.SourceKind.STREAM: "stream", ast.SourceKind.TABLE: "table"}


class QueryEndpointError(AnalysisError):
    """A SELECT or PRINT sent where statements are expected (REST: 40002)."""


class Session:
    def __init__(self, engine: Engine, properties: Mapping[str, Any], variables: Mapping[str, str]) -> None:
        self.engine = engine
        self.properties: dict[str, Any] = dict(properties)
        self.variables: dict[str, str] = {k.upper(): v for k, v in variables.items()}
        self._replay_query_id: str | None = None
        self._replay_seq = -1
        #: the command transaction a statement runs in on a cluster (see commandrunner.py)
        self._tx: Any = None

    # ------------------------------------------------------------------ entry points

    def execute(self, text: str) -> Iterator[r.Entity | None]:
        for stmt_text in parser.split_statements(text):
            stmt = self._parse(stmt_text)
            try:
                try:
                    entity = self._execute_distributed(stmt) if self._distributes(stmt) else self._execute(stmt)
                except RecursionError:
                    raise too_complex(stmt) from None
                yield entity
            except KsqlpyError as e:
                if e.statement_text is None:
                    e.statement_text = stmt.text or stmt_text
                raise

    def _distributes(self, stmt: ast.Statement) -> bool:
        """Whether ``stmt`` goes through the cluster's command topic (a statement that changes the
        metastore, on a server with a command runner)."""
        if self.engine.runner is None or self._replay_seq >= 0 or self.engine.replaying:
            return False
        if isinstance(stmt, ast.TerminateQuery):  # a transient query is closed where it runs
            qid = (stmt.query_id or "").upper()
            return not any(k.upper() == qid for k in self.engine.transient)
        return isinstance(stmt, _DISTRIBUTED)

    def _execute_distributed(self, stmt: ast.Statement) -> r.Entity | None:
        """Run ``stmt`` in a command transaction: validated with this server caught up, then
        written, then applied here by the runner before the answer."""

        def run(tx: Any) -> r.Entity | None:
            self._tx = tx
            try:
                return self._execute(stmt)
            finally:
                self._tx = None

        return self.engine.runner.distribute(run)  # type: ignore[no-any-return]

    def execute_all(self, text: str) -> list[r.Entity | None]:
        return list(self.execute(text))

    def execute_query(self, text: str) -> Any:
        statements = parser.split_statements(text)
        if len(statements) != 1:
            raise AnalysisError("Expected exactly one statement: a SELECT or PRINT.")
        try:
            stmt = self._parse(statements[0], cached=True)
        except ParseError:
            # Not ksqlDB syntax (ORDER BY, subqueries...): maybe plain SQL over materialized tables.
            from ksqlpy.runtime.pull import start_sql_pull

            answered = start_sql_pull(self, statements[0])
            if answered is None:
                raise
            return answered
        try:
            match stmt:
                case ast.QueryStatement():
                    return self._start_query(stmt)
                case ast.PrintTopic():
                    from ksqlpy.runtime.printing import print_topic

                    return print_topic(self, stmt)
            raise AnalysisError(
                f"Statement type `{type(stmt).__name__}' not supported for this resource"
            )
        except RecursionError:
            raise too_complex(stmt) from None
        except KsqlpyError as e:
            if e.statement_text is None:
                e.statement_text = stmt.text
            raise

    def start_prepared_pull(self, text: str) -> Any | None:
        """``text`` answered as a pull query over a table planned before for the same text, or
        None (then :meth:`execute_query` runs it). Only reads the catalog, so servers may call
        it without serializing it with statements."""
        from ksqlpy.runtime.pull import start_bound_pull, start_prepared_pull

        statements = parser.split_statements(text)
        if len(statements) != 1:
            return None
        try:
            # a key lookup of a shape planned before, with other key values: not even parsed
            answered = start_bound_pull(self, statements[0])
        except KsqlpyError as e:
            if e.statement_text is None:
                e.statement_text = statements[0]
            raise
        if answered is not None:
            return answered
        try:
            stmt = self._parse(statements[0], cached=True)
        except KsqlpyError:
            return None
        if not isinstance(stmt, ast.QueryStatement) or stmt.query.refinement is not None:
            return None

        try:
            return start_prepared_pull(self, stmt)
        except KsqlpyError as e:
            if e.statement_text is None:
                e.statement_text = stmt.text
            raise

    def start_ready_pull(self, text: str) -> Any | None:
        """``text`` answered when it is a key lookup planned before (with other key values) over
        a table nothing was written to since it last caught up (or nothing of its keys), else
        None: it neither parses nor waits, so a server may answer it on its event loop."""
        from ksqlpy.runtime.pull import start_ready_pull

        statements = parser.split_statements(text)
        if len(statements) != 1:
            return None
        try:
            return start_ready_pull(self, statements[0])
        except KsqlpyError as e:
            if e.statement_text is None:
                e.statement_text = statements[0]
            raise

    def plan_pull(self, text: str) -> Callable[[], Any | None] | None:
        """``text`` planned when it is a pull query over materialized tables: calling the result
        waits for them to catch up and answers (or gives None: then :meth:`execute_query` runs
        it and reports why). None for anything else. A server plans under its statement lock and
        answers outside it, so no statement waits behind a pull query's catch-up."""
        from ksqlpy.runtime.pull import plan_pull, plan_sql_answer

        statements = parser.split_statements(text)
        if len(statements) != 1:
            return None
        try:
            stmt = self._parse(statements[0], cached=True)
        except ParseError:
            return plan_sql_answer(self, statements[0])
        except KsqlpyError:
            return None
        if not isinstance(stmt, ast.QueryStatement):
            return None
        try:
            answer = plan_pull(self, stmt)
        except RecursionError:
            raise too_complex(stmt) from None
        if answer is None:
            return None

        def answered() -> Any | None:
            try:
                return answer()
            except KsqlpyError as e:
                if e.statement_text is None:
                    e.statement_text = stmt.text
                raise

        return answered

    def replay(self, command: Command, seq: int) -> None:
        """Apply a command read back from the log: its stored plan when it has one (never the
        statement planned again), else its statement (TERMINATE, and logs from before plans)."""
        if command.plan is not None:
            self.engine.apply_plan(KsqlPlan.from_json(command.plan), command.properties, generation=seq)
            return
        self._replay_query_id = command.query_id
        self._replay_seq = seq
        for stmt_text in parser.split_statements(command.statement):
            self._execute(parser.parse_statement(stmt_text))

    def run_internal(self, text: str) -> None:
        engine = self.engine
        was, engine.replaying = engine.replaying, True
        try:
            for stmt_text in parser.split_statements(text):
                self._execute(parser.parse_statement(stmt_text))
        finally:
            engine.replaying = was

    # ------------------------------------------------------------------ helpers

    def _parse(self, stmt_text: str, *, cached: bool = False) -> ast.Statement:
        text = stmt_text
        if self.variables and self._substitution_enabled():
            text = parser.substitute_variables(text, self.variables)
        try:
            return _parse_cached(text) if cached else parser.parse_statement(text)
        except KsqlpyError as e:
            e.statement_text = text
            raise

    def _substitution_enabled(self) -> bool:
        v = self.properties.get("ksql.variable.substitution.enable", "true")
        return str(v).lower() != "false"

    @property
    def config(self) -> dict[str, str]:
        return self.engine.config.merged(self.properties)

    def _record(
        self,
        stmt_text: str,
        query_id: str | None = None,
        plan: KsqlPlan | None = None,
        *,
        command_id: str | None = None,
        message: str = "",
    ) -> int:
        """Record a command; ``command_id`` and ``message`` say what its status will be, on
        every server that applies it."""
        if self._replay_seq >= 0:
            return self._replay_seq
        if self._tx is not None:  # on a cluster: written, and applied by this server's runner
            stored = plan.to_json() if plan is not None else None
            command = Command(stmt_text, dict(self.properties), query_id, stored, command_id, message)
            return int(self._tx.record(command))
        return self.engine.record_command(
            stmt_text, self.properties, query_id, plan, command_id=command_id, message=message
        )

    def _apply(self, plan: KsqlPlan, seq: int) -> Any:
        """Apply a plan just recorded (on replay of a statement without a stored plan, too); on a
        cluster the command runner applied it already."""
        if self._tx is not None:
            return None
        return self.engine.apply_plan(plan, self.properties, generation=seq)

    def _plan_context(self) -> PlanContext:
        store = self.engine.store

        def topic(name: str) -> TopicShape | None:
            spec = store.describe_topic(name)
            return None if spec is None else TopicShape(spec.partitions, spec.replicas)

        return PlanContext(catalog=self.engine.catalog, config=self.config, topic=topic)

    def _status(
        self, stmt: Any, command_id: str, message: str, seq: int, query_id: str | None = None
    ) -> r.CommandStatusEntity:
        status = r.CommandStatus(status=r.CommandState.SUCCESS, message=message, query_id=query_id)
        self.engine.command_statuses[command_id] = status
        return r.CommandStatusEntity(
            statement_text=stmt.text,
            command_id=command_id,
            status=r.CommandState.SUCCESS,
            message=message,
            query_id=query_id,
            sequence_number=seq,
        )

    # ------------------------------------------------------------------ dispatch

    def _execute(self, stmt: ast.Statement) -> r.Entity | None:
        match stmt:
            case ast.CreateSource():
                return self._create_source(stmt)
            case ast.CreateAsSelect():
                return self._create_as_select(stmt)
            case ast.InsertInto():
                return self._insert_into(stmt)
            case ast.InsertValues():
                from ksqlpy.runtime.insert import insert_values

                insert_values(self, stmt)
                return None
            case ast.DropSource():
                return self._drop_source(stmt)
            case ast.TerminateQuery():
                return self._terminate(stmt)
            case ast.SetProperty(name=name, value=value):
                self.engine.config.check_overridable(name)
                self.properties[name] = value
                return None
            case ast.UnsetProperty(name=name):
                self.properties.pop(name, None)
                return None
            case ast.DefineVariable(name=name, value=value):
                self.variables[name.upper()] = value
                return None
            case ast.UndefineVariable(name=name):
                self.variables.pop(name.upper(), None)
                return None
            case ast.RegisterType():
                return self._register_type(stmt)
            case ast.DropType():
                return self._drop_type(stmt)
            case ast.AlterSource():
                return self._alter_source(stmt)
            case ast.Show() | ast.DescribeSource() | ast.DescribeFunction() | ast.Explain():
                return describe.describe(self, stmt)
            case ast.AssertTopic():
                return self._assert_topic(stmt)
            case ast.QueryStatement() | ast.PrintTopic():
                raise QueryEndpointError(
                    "The following statement types should be issued to the websocket endpoint '/query':\n"
                    "\t* PRINT\n\t* SELECT",
                    pos=stmt.pos,
                )
            case ast.PauseQuery() | ast.ResumeQuery() | ast.AssertSchema():
                raise AnalysisError(f"{type(stmt).__name__} is not supported yet.", pos=stmt.pos)
        raise AnalysisError(f"Unsupported statement: {stmt.text}")

    # ------------------------------------------------------------------ DDL

    def _create_source(self, stmt: ast.CreateSource) -> r.Entity:
        engine = self.engine
        kind_word = KIND_WORD[stmt.kind]
        existing = engine.catalog.find(stmt.name)
        if stmt.or_replace and stmt.is_source:
            raise AnalysisError(
                f"Cannot add {kind_word} '{stmt.name}': CREATE OR REPLACE is not supported on source {kind_word}s.",
                pos=stmt.pos,
            )
        if existing is not None:
            if stmt.if_not_exists:
                return r.WarningEntity(
                    statement_text=stmt.text, message=f"Cannot add {kind_word} {stmt.name}: A {kind_word} with the same name already exists."
                )
            if not stmt.or_replace:
                raise AnalysisError(
                    f"Cannot add {kind_word} '{stmt.name}': A {_kind_of(existing)} with the same name already exists",
                    pos=stmt.pos,
                )
            if existing.is_source or stmt.is_source:
                raise AnalysisError(
                    f"Cannot add {kind_word} '{stmt.name}': CREATE OR REPLACE is not supported on source {kind_word}s.",
                    pos=stmt.pos,
                )
        source = ddl.source_from_create(
            stmt, engine.catalog, self.config, infer=sr.schema_inference(engine.schema_registry)
        )
        self._validate_formats(source)
        self._ensure_source_topic(source, stmt)
        plan = KsqlPlan(statement_text=stmt.text, ddl_command=command_of(source, or_replace=stmt.or_replace))
        noun = "Stream" if stmt.kind is ast.SourceKind.STREAM else "Table"
        command_id, message = f"{kind_word}/`{stmt.name}`/create", f"{noun} created"
        seq = self._record(stmt.text, plan=plan, command_id=command_id, message=message)
        self._apply(plan, seq)
        return self._status(stmt, command_id, message, seq)

    def _validate_formats(self, source: Source) -> None:
        from ksqlpy.runtime.codec import fields_of, serde_spec
        from ksqlpy.runtime.serde import validate_format

        validate_format(serde_spec(source.key_format), fields_of(source.key_columns), is_key=True)
        validate_format(serde_spec(source.value_format), fields_of(source.value_columns), is_key=False)

    def _ensure_source_topic(self, source: Source, stmt: ast.CreateSource) -> None:
        store = self.engine.store
        spec = store.describe_topic(source.topic)
        props = WithClause.of(stmt.properties)
        if spec is None:
            partitions = props.integer("PARTITIONS")
            if partitions is None:
                raise AnalysisError(
                    f"Topic '{source.topic}' does not exist. If you want to create a new topic for the "
                    f"{KIND_WORD[stmt.kind]} please re-run the statement providing the required 'PARTITIONS' "
                    "configuration in the WITH clause (and optionally 'REPLICAS'). For example: "
                    f"CREATE {stmt.kind.value} {stmt.name} (ID INT PRIMARY KEY, VALUE STRING) WITH "
                    f"(KAFKA_TOPIC='{source.topic}', PARTITIONS=2, REPLICAS=1, FORMAT='JSON');",
                    pos=stmt.pos,
                )
            config = {"cleanup.policy": "compact" if stmt.kind is ast.SourceKind.TABLE else "delete"}
            retention = props.integer("RETENTION_MS")
            if retention is not None:
                config["retention.ms"] = str(retention)
            store.create_topic(
                TopicSpec(name=source.topic, partitions=partitions, replicas=props.integer("REPLICAS") or 1, config=config),
                exist_ok=True,
            )
            self._topic_created = True
        else:
            partitions = props.integer("PARTITIONS")
            if partitions is not None and partitions != spec.partitions:
                raise AnalysisError(
                    f"A Kafka topic with the name '{source.topic}' already exists, with different partition/replica "
                    f"configuration than required. KSQL expects {partitions} partitions (topic has "
                    f"{spec.partitions}), 1 replication factor (topic has {spec.replicas}).",
                    pos=stmt.pos,
                )

    def _create_as_select(self, stmt: ast.CreateAsSelect) -> r.Entity:
        engine = self.engine
        kind_word = KIND_WORD[stmt.kind]
        existing = engine.catalog.find(stmt.name)
        if existing is not None and not stmt.or_replace:
            if stmt.if_not_exists:
                return r.WarningEntity(
                    statement_text=stmt.text, message=f"Cannot add {kind_word} {stmt.name}: A {kind_word} with the same name already exists."
                )
            raise AnalysisError(
                f"Cannot add {kind_word} '{stmt.name}': A {_kind_of(existing)} with the same name already exists",
                pos=stmt.pos,
            )
        query_id = self._replay_query_id
        if existing is not None:  # CREATE OR REPLACE keeps the query's id (and its state)
            query_id = next(
                (q.query_id for q in engine.queries.values() if q.plan.sink is not None and q.plan.sink.name == stmt.name),
                query_id,
            )
        if query_id is None:
            prefix = "CSAS" if stmt.kind is ast.SourceKind.STREAM else "CTAS"
            query_id = f"{prefix}_{stmt.name}_{engine.next_query_number()}"
        try:
            planned = plan_create_as_select(stmt, self._plan_context(), query_id)
            self._validate_formats(planned.sink)
            self._check_runnable(planned)
        except KsqlpyError as e:
            # ksqlDB plans the statement as its sanitizer rewrote it, and quotes that text
            if e.statement_text is None:
                e.statement_text = planned_statement_text(stmt, engine.catalog)
            raise
        command_id, message = f"{kind_word}/`{stmt.name}`/create", f"Created query with ID {query_id}"
        seq = self._record(stmt.text, query_id, plan=planned.plan, command_id=command_id, message=message)
        self._apply(planned.plan, seq)
        return self._status(stmt, command_id, message, seq, query_id)

    def _check_runnable(self, planned: PlannedQuery) -> None:
        """A plan is recorded only once the runtime can run it: compiling it is pure."""
        from ksqlpy.runtime.compile import compile_query

        assert planned.plan.query_plan is not None
        catalog = Catalog(sources={**self.engine.catalog.sources, planned.sink.name: planned.sink}, types=self.engine.catalog.types)
        compile_query(planned.plan.query_plan, catalog, planned.sink, self.config, statement=planned.plan.statement_text)

    def _create_sink_topic(self, sink: Source, properties: tuple[ast.Property, ...]) -> None:
        store = self.engine.store
        existing = store.describe_topic(sink.topic)
        if existing is None:
            config = {"cleanup.policy": "compact" if sink.is_table else "delete"}
            store.create_topic(
                TopicSpec(name=sink.topic, partitions=sink.partitions, replicas=sink.replicas, config=config),
                exist_ok=True,
            )

    def _insert_into(self, stmt: ast.InsertInto) -> r.Entity:
        engine = self.engine
        target = insert_target(stmt, engine.catalog)
        if target.is_table:
            raise AnalysisError(
                f"INSERT INTO can only be used to insert into a stream. {target.name} is a table.", pos=stmt.pos
            )
        if target.header_columns:  # a query's rows carry no headers to fill them with
            raise AnalysisError(f"Cannot insert into {target.name} because it has header columns", pos=stmt.pos)
        if target.is_source:
            raise AnalysisError(f"Cannot insert into read-only stream: {target.name}", pos=stmt.pos)
        stmt = fit_to_sink(stmt, target, self._plan_context())
        analyzed = analyze_query(stmt.query, self._plan_context(), sink_name=stmt.target, persistent=True)
        step = analyzed.step
        if analyzed.is_table:
            raise AnalysisError(
                f"Incompatible data sink and query result. Data sink ({target.name}) type is KSTREAM but select "
                "query result is KTABLE.",
                pos=stmt.pos,
            )
        result = tuple((c.name, c.type, c.is_key) for c in step.columns)
        expected = tuple((c.name, c.type, c.is_key) for c in target.key_columns + target.value_columns)
        if result != expected:
            raise AnalysisError(
                "Incompatible schema between results and sink.\n"
                f"Result schema is {_schema_text(result)}\nSink schema is {_schema_text(expected)}",
                pos=stmt.pos,
            )
        query_id = self._replay_query_id or f"INSERTQUERY_{engine.next_query_number()}"
        planned = plan_insert_into(stmt, target, self._plan_context(), query_id)
        self._check_runnable(planned)
        command_id, message = f"stream/`{target.name}`/create", f"Created query with ID {query_id}"
        seq = self._record(stmt.text, query_id, plan=planned.plan, command_id=command_id, message=message)
        self._apply(planned.plan, seq)
        return self._status(stmt, command_id, message, seq, query_id)

    def _drop_source(self, stmt: ast.DropSource) -> r.Entity:
        engine = self.engine
        kind_word = KIND_WORD[stmt.kind]
        source = engine.catalog.find(stmt.name)
        if source is None:
            if stmt.if_exists:
                return self._status(stmt, f"{kind_word}/{stmt.name}/drop", f"Source `{stmt.name}` does not exist.", -1)
            raise AnalysisError(f"{kind_word.capitalize()} {stmt.name} does not exist.", pos=stmt.pos)
        if source.kind is not stmt.kind:
            actual = KIND_WORD[source.kind]
            raise AnalysisError(
                f"Incompatible data source type is {actual.upper()}, but statement was DROP {stmt.kind.value}",
                pos=stmt.pos,
            )
        readers = sorted(
            q.query_id
            for q in engine.queries.values()
            if q.plan.source.name == stmt.name
            or stmt.name in getattr(getattr(engine.ksql_plans.get(q.query_id), "query_plan", None), "sources", ())
        )
        writers = sorted(
            q.query_id for q in engine.queries.values() if q.plan.sink is not None and q.plan.sink.name == stmt.name
        )
        if readers or writers:
            raise AnalysisError(
                f"Cannot drop {stmt.name}.\nThe following queries read from this source: [{', '.join(readers)}].\n"
                f"The following queries write into this source: [{', '.join(writers)}].\n"
                "You need to terminate them before dropping " + stmt.name + ".",
                pos=stmt.pos,
            )
        if stmt.delete_topic and source.is_source:
            raise AnalysisError(f"Cannot delete topic for read-only source: {source.name}", pos=stmt.pos)
        plan = KsqlPlan(statement_text=stmt.text, ddl_command=DropSourceCommand(source_name=stmt.name))
        command_id = f"{kind_word}/{stmt.name}/drop"
        message = f"Source `{stmt.name}` (topic: {source.topic}) was dropped."
        seq = self._record(stmt.text, plan=plan, command_id=command_id, message=message)
        self._apply(plan, seq)
        if stmt.delete_topic:
            engine.store.delete_topic(source.topic)
        return self._status(stmt, command_id, message, seq)

    def _terminate(self, stmt: ast.TerminateQuery) -> r.Entity:
        engine = self.engine
        if stmt.query_id is None:
            seq = self._record(stmt.text, command_id="terminate/ALL/execute", message="Query terminated.")
            for qid in list(engine.queries) if self._tx is None else ():
                engine.terminate(qid, drop_state=True)
            return self._status(stmt, "terminate/ALL/execute", "Query terminated.", seq)
        qid = stmt.query_id
        transient = next((k for k in engine.transient if k.upper() == qid.upper()), None)
        if transient is not None:
            engine.close_query(transient)
            return r.TerminateQueryEntity(statement_text=stmt.text, query_id=transient, was_terminated=True)
        match = next((k for k in engine.queries if k.upper() == qid.upper()), None)
        if match is None:
            raise AnalysisError(f"Unknown queryId: {qid}", pos=stmt.pos)
        command_id = f"terminate/{match}/execute"
        seq = self._record(stmt.text, command_id=command_id, message="Query terminated.")
        if self._tx is None:
            engine.terminate(match, drop_state=True)
        return self._status(stmt, command_id, "Query terminated.", seq)

    def _register_type(self, stmt: ast.RegisterType) -> r.Entity:
        types = self.engine.catalog.types
        if stmt.name in types:
            if stmt.if_not_exists:
                return self._status(stmt, f"type/{stmt.name}/create", f"Type {stmt.name} already exists", -1)
            raise AnalysisError(
                f"Cannot register custom type '{stmt.name}' since it is already registered with type: "
                f"{types[stmt.name]}",
                pos=stmt.pos,
            )
        t = resolve_type(stmt.type, types)
        plan = KsqlPlan(statement_text=stmt.text, ddl_command=RegisterTypeCommand(type=type_text(t), type_name=stmt.name))
        command_id, message = f"type/{stmt.name}/create", f"Registered custom type with name '{stmt.name}' and SQL type {t}"
        seq = self._record(stmt.text, plan=plan, command_id=command_id, message=message)
        self._apply(plan, seq)
        return self._status(stmt, command_id, message, seq)

    def _drop_type(self, stmt: ast.DropType) -> r.Entity:
        types = self.engine.catalog.types
        if stmt.name not in types:
            if stmt.if_exists:
                return self._status(stmt, f"type/{stmt.name}/drop", f"Type {stmt.name} does not exist.", -1)
            raise AnalysisError(f"Type {stmt.name} does not exist.", pos=stmt.pos)
        plan = KsqlPlan(statement_text=stmt.text, ddl_command=DropTypeCommand(type_name=stmt.name))
        command_id, message = f"type/{stmt.name}/drop", f"Dropped type '{stmt.name}'"
        seq = self._record(stmt.text, plan=plan, command_id=command_id, message=message)
        self._apply(plan, seq)
        return self._status(stmt, command_id, message, seq)

    def _alter_source(self, stmt: ast.AlterSource) -> r.Entity:
        engine = self.engine
        source = engine.catalog.source(stmt.name, stmt.pos)
        if source.kind is not stmt.kind:
            raise AnalysisError(f"Incompatible data source type is {source.kind.value}, but statement was ALTER {stmt.kind.value}")
        if source.is_source:
            kind_word = KIND_WORD[source.kind]
            raise AnalysisError(
                f"Cannot alter {kind_word} '{source.name}': ALTER operations are not supported on source {kind_word}s.",
                pos=stmt.pos,
            )
        if any(q.plan.sink is not None and q.plan.sink.name == source.name for q in engine.queries.values()):
            raise AnalysisError("ALTER command is not supported for CREATE ... AS statements.", pos=stmt.pos)
        columns = list(source.columns)
        for el in stmt.add_columns:
            if source.column(el.name) is not None:
                raise AnalysisError(
                    f"Cannot add column `{el.name}` to schema. A column with the same name already exists.", pos=el.pos
                )
            columns.append(Column(name=el.name, type=resolve_type(el.type, engine.catalog.types)))
        added = tuple(
            ColumnSpec(name=c.name, type=type_text(c.type), index=i)
            for i, c in enumerate(columns[len(source.columns):], start=len(source.value_columns))
        )
        plan = KsqlPlan(
            statement_text=stmt.text,
            ddl_command=AlterSourceCommand(source_name=source.name, ksql_type=source.kind.value, new_columns=added),
        )
        kind_word = KIND_WORD[stmt.kind]
        command_id, message = f"{kind_word}/{stmt.name}/alter", f"{kind_word.capitalize()} altered."
        seq = self._record(stmt.text, plan=plan, command_id=command_id, message=message)
        self._apply(plan, seq)
        return self._status(stmt, command_id, message, seq)

    def _assert_topic(self, stmt: ast.AssertTopic) -> r.Entity:
        exists = self.engine.store.describe_topic(stmt.topic) is not None
        if exists != stmt.exists:
            what = "does not exist" if stmt.exists else "exists"
            raise AssertionFailed(f"Topic {stmt.topic} {what}.")
        return r.AssertTopicEntity(statement_text=stmt.text, topic_name=stmt.topic, exists=exists)

    # ------------------------------------------------------------------ queries

    def _push_query_prefix(self, query: ast.Query, source: Source) -> str:
        """ksqlDB serves a push query as a *scalable* one (id ``SCALABLE_PUSH_QUERY_…``) when
        ``ksql.query.push.v2.enabled`` is on, the query only filters and projects, it starts at
        ``latest`` and its source is written by a running persistent query."""
        config = self.config
        enabled = str(config.get("ksql.query.push.v2.enabled", "false")).lower() == "true"
        plain = not (query.group_by or query.partition_by or query.window) and isinstance(query.from_, ast.Table)
        latest = self.engine.config.offset_reset(self.properties) == "latest"
        fed = any(q.plan.sink is not None and q.plan.sink.name == source.name for q in self.engine.queries.values())
        return "SCALABLE_PUSH_QUERY_" if enabled and plain and latest and fed else "transient_"

    def _start_query(self, stmt: ast.QueryStatement) -> Any:
        from ksqlpy.runtime.streaming import StreamingQuery

        engine = self.engine
        query = stmt.query
        if query.refinement is None:
            from ksqlpy.runtime.pull import start_pull

            return start_pull(self, stmt)
        if isinstance(query.from_, ast.Join):
            return self._start_join_query(stmt)
        source, step, _ = analyze(query, self._plan_context(), sink_name=None, persistent=False)
        prefix = self._push_query_prefix(query, source)
        query_id = f"{prefix}{source.name}_{uuid.uuid4().int % 10**19}"
        plan = QueryPlan(query_id=query_id, step=step, sink=None, limit=query.limit, statement=stmt.text)
        runner = PushQuery(
            plan, engine.store, engine.plog, group=None, start=engine.config.offset_reset(self.properties)
        )
        # A scalable push query sees the rows its source's persistent query produces, and ksqlDB
        # leaves out those without a key.
        runner.skip_null_keys = prefix.startswith("SCALABLE")
        columns = tuple(_field(c) for c in step.columns)
        sq = StreamingQuery(engine, query_id, columns, runner=runner)
        engine.transient[query_id] = sq
        runner.start()
        return sq

    def _start_join_query(self, stmt: ast.QueryStatement) -> Any:
        """A push query over a join: the join tree as a persistent query's, then the query's
        own analyzed step over the join's result."""
        from ksqlpy.runtime.compile import compile_join_tree
        from ksqlpy.runtime.join.push import PushJoinQuery
        from ksqlpy.runtime.streaming import StreamingQuery

        engine = self.engine
        query = stmt.query
        ctx = self._plan_context()
        analyzed = analyze_query(query, ctx, sink_name=None, persistent=False)
        join = analyzed.join
        assert join is not None
        node = compile_join_tree(
            join.step, engine.catalog, join.source, self.config, sources=analyzed.source_names  # type: ignore[arg-type]
        )
        query_id = f"transient_{join.source.name}_{uuid.uuid4().int % 10**19}"
        plan = QueryPlan(
            query_id=query_id, step=analyzed.step, sink=None, limit=query.limit, statement=stmt.text, join=node
        )
        runner = PushJoinQuery(
            plan, engine.store, engine.plog, group=None, start=engine.config.offset_reset(self.properties)
        )
        columns = tuple(_field(c) for c in analyzed.step.columns)
        sq = StreamingQuery(engine, query_id, columns, runner=runner)
        engine.transient[query_id] = sq
        runner.start()
        return sq


@functools.lru_cache(maxsize=512)
def _parse_cached(text: str) -> ast.Statement:
    """Parsed query texts: clients repeat the same (pull) queries, parsing costs milliseconds,
    and the AST is immutable, so one parse serves every repetition. Failures are not kept."""
    return parser.parse_statement(text)


#: Statements that change the metastore: on a cluster they go through the command topic.
_DISTRIBUTED = (
    ast.CreateSource,
    ast.CreateAsSelect,
    ast.InsertInto,
    ast.DropSource,
    ast.TerminateQuery,
    ast.RegisterType,
    ast.DropType,
    ast.AlterSource,
)


class AssertionFailed(KsqlpyError):
    """ASSERT TOPIC/SCHEMA did not hold (REST: 417)."""


def _field(c: Any) -> Any:
    from ksqlpy import sqltypes

    return sqltypes.Field(c.name, c.type)


def _kind_of(source: Source) -> str:
    return "stream" if source.kind is ast.SourceKind.STREAM else "table"


def _schema_text(cols: tuple[tuple[str, Any, bool], ...]) -> str:
    return ", ".join(f"`{n}` {t}{' KEY' if k else ''}" for n, t, k in cols)



__all__ = ["AssertionFailed", "NotFoundError", "QueryEndpointError", "QueryState", "Session"]
