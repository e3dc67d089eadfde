"""Runs QTT cases against a fresh ksqlpy engine each, as ksqlDB's ``TestExecutor`` and
``RestTestExecutor`` do.

A case runs on an in-memory embedded store with ksqlDB's test defaults (:data:`BASE_CONFIG`)
plus the case's ``properties``:

1. create the topics the case names, the topics its CREATE STREAM/TABLE statements read, and
   those its inputs are produced to;
2. execute the statements (REST cases: the statements before the first ``SELECT``);
3. produce the inputs, serialized with the formats of the source reading each topic; runs of
   consecutive records to one topic go as one batch, and the engine is left to process each
   run before the next (joins depend on that interleaving), and a QTT case's run to a topic of
   several partitions piece by piece where the partition changes; then wait until every
   persistent query is idle;
4. read each expected output topic back in the order its records were produced (see
   :mod:`ksqlpy.testing.append_order`) and compare; check ``post`` conditions;
5. REST cases: run the queries, then compare ``responses``.

``expectedException`` cases pass when a statement (or, later, processing) fails with an error
containing the expected message.

:func:`run_cases` runs many cases, in worker processes when ``jobs > 1`` (a worker takes whole
files, so results of one file arrive together).
"""

from __future__ import annotations

import re
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import groupby
from typing import Any

from ksqlpy.errors import KsqlpyError, Position
from ksqlpy.testing import responses as rest
from ksqlpy.testing.compare import ProducedRecord, compare_responses, compare_topic
from ksqlpy.testing.conditions import check_post_conditions
from ksqlpy.testing.pool import SupervisedPool
from ksqlpy.testing.qtt import QttCase, QttRecord
from ksqlpy.testing.records import RecordCodecError, UnsupportedFormat, produce_batch, raw_batch, read_records
from ksqlpy.testing.report import ERROR, FAILED, PASSED, SKIPPED, CaseResult

#: ksqlDB's QTT defaults (``TestExecutor.BASE_CONFIG``) in ksqlpy's property names; the
#: processing log stream is left out, as ksqlDB's test metastore has none.
BASE_CONFIG: dict[str, str] = {
    "ksql.service.id": "some.ksql.service.id",
    "ksql.streams.state.dir": ":memory:",
    "ksql.streams.auto.offset.reset": "earliest",
    "ksql.streams.cache.max.bytes.buffering": "0",
    "ksql.logging.processing.stream.auto.create": "false",
}

#: Partitions of a REST case's topics when nothing says otherwise (ksqlDB's test ``Topic``).
REST_DEFAULT_PARTITIONS = 4

#: Seconds a case may take before it is reported as an error.
CASE_TIMEOUT = 60.0
#: Seconds to wait for persistent queries to process what is available.
IDLE_TIMEOUT = 20.0
#: Seconds a push query may take to reach its LIMIT.
PUSH_TIMEOUT = 10.0


class CaseFailure(Exception):
    """The case ran but did not do what its file expects."""


class CaseTimeout(Exception):
    """The case took longer than the time allowed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    case_timeout: float = CASE_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT


@dataclass(slots=True)
class _Run:
    """What a running case has gathered so far (kept when it fails)."""

    outputs: list[ProducedRecord] = field(default_factory=list)
    responses: list[Mapping[str, Any]] | None = None
    #: The error a case that expects one failed with (it passed by failing as expected).
    expected_failure: str | None = None


# ---------------------------------------------------------------------------------------------
# Many cases
# ---------------------------------------------------------------------------------------------


def run_cases(
    cases: Sequence[QttCase],
    *,
    jobs: int = 1,
    options: RunOptions = RunOptions(),
    on_file: Callable[[str, list[CaseResult]], None] | None = None,
) -> list[CaseResult]:
    """Run ``cases``; ``on_file`` is called with each file's results as the file completes."""
    by_file = [list(group) for _, group in groupby(cases, key=lambda c: c.file)]
    results: list[CaseResult] = []
    if jobs <= 1 or len(by_file) <= 1:
        batches: Iterable[list[CaseResult]] = (_run_file(group, options) for group in by_file)
        for batch in batches:
            results.extend(batch)
            if on_file is not None and batch:
                on_file(batch[0].file, batch)
        return results
    # Larger files first so that workers finish together.
    by_file.sort(key=len, reverse=True)
    expected = {group[0].file: len(group) for group in by_file}
    done: dict[str, list[CaseResult]] = {}

    def on_result(result: CaseResult) -> None:
        results.append(result)
        batch = done.setdefault(result.file, [])
        batch.append(result)
        if len(batch) == expected[result.file] and on_file is not None:
            on_file(result.file, batch)

    SupervisedPool(jobs, options, options.case_timeout).run(by_file, on_result)
    return results


def _run_file(cases: Sequence[QttCase], options: RunOptions) -> list[CaseResult]:
    return [run_case(case, options) for case in cases]


# ---------------------------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------------------------


def run_case(case: QttCase, options: RunOptions = RunOptions()) -> CaseResult:
    """Run one case on a fresh engine and say how it went."""
    if case.skip_reason is not None:
        return _result(case, SKIPPED, _Run(), case.skip_reason, 0.0)
    run = _Run(responses=[] if case.is_rest else None)
    started = time.perf_counter()
    status, error = PASSED, None
    try:
        with _time_limit(options.case_timeout):
            if case.is_rest:
                _run_rest(case, run, options)
            else:
                _run_qtt(case, run, options)
    except CaseFailure as e:
        status, error = FAILED, str(e)
    except CaseTimeout as e:
        status, error = ERROR, str(e)
    except Exception as e:  # noqa: BLE001 - any crash is reported as the case's error
        status, error = ERROR, _crash_text(e)
    if status == PASSED:
        error = run.expected_failure
    return _result(case, status, run, error, time.perf_counter() - started)


def _result(case: QttCase, status: str, run: _Run, error: str | None, seconds: float) -> CaseResult:
    return CaseResult(
        case_id=case.case_id,
        file=case.file,
        name=case.name,
        format=case.format,
        status=status,
        outputs=tuple(run.outputs),
        responses=None if run.responses is None else tuple(run.responses),
        error=error,
        seconds=seconds,
    )


def _crash_text(e: BaseException) -> str:
    frames = traceback.extract_tb(e.__traceback__)
    where = f" (at {frames[-1].filename.split('/ksqlpy/')[-1]}:{frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{where}"


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Interrupt the case after ``seconds`` (main thread only; elsewhere no limit)."""
    import threading

    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"case did not finish within {seconds:g} seconds")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------------------------
# Engine
# ---------------------------------------------------------------------------------------------


def _config_text(value: Any) -> str:
    match value:
        case bool():
            return "true" if value else "false"
        case Decimal() | int() | float() | str():
            return str(value)
        case None:
            return ""
        case _:
            import json

            return json.dumps(value, default=str)


#: What ksqlDB's REST test server adds to :data:`BASE_CONFIG`.
REST_CONFIG: dict[str, str] = {"ksql.query.push.v2.enabled": "true"}


def engine_config(case: QttCase) -> dict[str, str]:
    config = dict(BASE_CONFIG)
    if case.is_rest:
        config.update(REST_CONFIG)
    config.update(case.configs)
    config.update({name: _config_text(value) for name, value in case.properties.items()})
    # The store stays in memory whatever the case says.
    config["ksql.streams.state.dir"] = ":memory:"
    return config


def open_engine(case: QttCase) -> Any:
    """A started engine for ``case``, on an in-memory :class:`AppendOrderStore` (sinks are read
    back in the order their records were produced, as ksqlDB's harness compares them)."""
    from ksqlpy.runtime.config import EngineConfig
    from ksqlpy.runtime.engine import Engine
    from ksqlpy.testing.append_order import AppendOrderStore
    from ksqlpy.testing.test_udfs import register_test_functions

    # ksqlDB's test harness loads its test-only UDFs; they never exist in a production engine
    register_test_functions()
    config = EngineConfig.of(engine_config(case))
    interval = float(config.values.get("ksqlpy.store.maintenance.interval.seconds", 30.0))
    engine = Engine(AppendOrderStore(maintenance_interval=interval or None), config)
    try:
        engine.start()
    except BaseException:
        engine.store.close()
        raise
    return engine


_CREATE_SOURCE = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:SOURCE\s+)?(?:STREAM|TABLE)\b", re.IGNORECASE)
_AS_SELECT = re.compile(r"\bAS\s+SELECT\b", re.IGNORECASE)
_KAFKA_TOPIC = re.compile(r"\bkafka_topic\s*=\s*'((?:[^']|'')*)'", re.IGNORECASE)
_PARTITIONS = re.compile(r"\bpartitions\s*=\s*(\d+)", re.IGNORECASE)


def topics_to_create(case: QttCase) -> dict[str, int]:
    """Topics that exist before the statements run, with their partition counts: the case's
    ``topics``, the topics CREATE STREAM/TABLE statements name and the input topics (ksqlDB's
    ``TestCaseBuilderUtil.getAllTopics``).

    REST cases run, as in ksqlDB's harness, on topics of :data:`REST_DEFAULT_PARTITIONS`
    partitions unless something asks otherwise: their expected pull-query rows come in the
    order of those partitions. Other cases get one partition, so that records keep the order
    the case gives them (ksqlDB runs them through a single-threaded test driver)."""
    default = REST_DEFAULT_PARTITIONS if case.is_rest else 1
    topics: dict[str, int] = {}
    explicit = {node.name for node in case.topics if node.partitions}
    for node in case.topics:
        topics[node.name] = node.partitions or default
    for statement in case.statements:
        if not _CREATE_SOURCE.match(statement) or _AS_SELECT.search(statement):
            continue
        name = _KAFKA_TOPIC.search(statement)
        if name is None:
            continue
        partitions = _PARTITIONS.search(statement)
        topic = name.group(1).replace("''", "'")
        if partitions and topic not in explicit:
            # ksqlDB's harness never checks a CREATE's PARTITIONS against the topic it made for
            # the case's ``topics``: the statement is accepted, so the topic gets its count here
            topics[topic] = int(partitions.group(1))
        else:
            topics.setdefault(topic, default)
    for record in case.inputs:
        wanted = (record.partition or 0) + 1
        topics[record.topic] = max(topics.get(record.topic, default), wanted)
    # A topic whose partition count the post conditions check, and that nothing above sized,
    # exists from the start with that count, as ksqlDB's harness creates every topic of a case
    # (its default: 4 partitions); a CREATE ... AS SELECT then writes to it as it is.
    for condition in case.post.topics if case.post is not None else ():
        if (
            condition.partitions
            and condition.name not in explicit
            and topics.get(condition.name, default) == default
            and not _sized_by_statement(case, condition.name)
        ):
            topics[condition.name] = condition.partitions
    return topics


def _sized_by_statement(case: QttCase, topic: str) -> bool:
    """Whether a CREATE statement of ``case`` gives ``topic`` a PARTITIONS count."""
    for statement in case.statements:
        name = _KAFKA_TOPIC.search(statement)
        if name is not None and name.group(1).replace("''", "'") == topic and _PARTITIONS.search(statement):
            return True
    return False


def create_topics(engine: Any, case: QttCase) -> None:
    from ksqlpy.runtime.store.base import TopicSpec

    for name, partitions in topics_to_create(case).items():
        engine.store.create_topic(TopicSpec(name=name, partitions=partitions), exist_ok=True)
    register_schemas(engine, case)


def register_schemas(engine: Any, case: QttCase) -> None:
    """Register the key and value schemas the case's ``topics`` give (ksqlDB's harness does
    so before running the statements)."""
    from ksqlpy.testing.schemas import register_topic_schemas

    register_topic_schemas(engine.schema_registry, case, engine_config(case))


def source_for_topic(engine: Any, topic: str, *, sink: bool) -> Any:
    """The source over ``topic``: the first created for inputs, the last for outputs."""
    found = [s for s in engine.catalog.sources.values() if s.topic == topic]
    if not found:
        return None
    return found[-1] if sink else found[0]


def feed_inputs(
    engine: Any, records: Sequence[QttRecord], options: RunOptions, *, in_order: bool = False
) -> None:
    """Produce inputs run by run (a run: consecutive records to one topic), letting the
    queries process each run before the next when the case writes to several topics.

    With ``in_order`` (ksqlDB's test driver processes one record after the other), a run to a
    topic of several partitions is also cut where the partition changes, and each piece is
    processed before the next: a query reads a batch partition by partition, which would
    otherwise reorder records of different partitions."""
    runs = [(topic, list(group)) for topic, group in groupby(records, key=lambda r: r.topic)]
    several = len({topic for topic, _ in runs}) > 1
    for topic, group in runs:
        source = source_for_topic(engine, topic, sink=False)
        try:
            batch = (
                produce_batch(source, group, engine.schema_registry) if source is not None else raw_batch(group)
            )
        except (RecordCodecError, UnsupportedFormat) as e:
            raise CaseFailure(f"Failed to serialize input for topic {topic}: {e}") from e
        spec = engine.store.describe_topic(topic)
        pieces = _partition_runs(batch, spec.partitions) if in_order and spec is not None else [batch]
        for piece in pieces:
            engine.store.produce(topic, piece)
            if several or len(pieces) > 1:
                wait_idle(engine, options)
    wait_idle(engine, options)


def _partition_runs(batch: Any, partitions: int) -> list[Any]:
    """``batch`` (a produce batch: ``partition``, ``key``, ...) cut where the partition its
    records go to changes; a record with neither, which the store spreads round-robin, stands
    alone."""
    if partitions <= 1 or batch.num_rows <= 1:
        return [batch]
    from ksqlpy.runtime.store.partitioner import partitions_for_keys

    keys = batch.column("key").combine_chunks()
    hashed = partitions_for_keys(keys, partitions).to_pylist()
    given = batch.column("partition").to_pylist()
    targets = [
        g if g is not None else None if k is None else h
        for g, k, h in zip(given, keys.to_pylist(), hashed, strict=True)
    ]
    pieces = []
    start = 0
    for i in range(1, len(targets)):
        if targets[i] is None or targets[i] != targets[i - 1]:
            pieces.append(batch.slice(start, i - start))
            start = i
    pieces.append(batch.slice(start))
    return pieces


def wait_idle(engine: Any, options: RunOptions) -> None:
    if not engine.wait_idle(options.idle_timeout):
        raise CaseFailure(f"persistent queries did not become idle within {options.idle_timeout:g}s")


def read_topic(engine: Any, topic: str, timeout: float = 5.0) -> list[ProducedRecord]:
    """Every record of ``topic`` in the order it was produced, decoded with the formats of the
    source writing it."""
    import pyarrow as pa

    from ksqlpy.testing.append_order import AppendOrderStore

    store = engine.store
    if store.describe_topic(topic) is None:
        return []
    expected = sum(store.end_offsets(topic).values())
    tables = []
    got = 0
    deadline = time.monotonic() + timeout
    with store.open_reader([topic], group=None, start="earliest") as reader:
        while got < expected and time.monotonic() < deadline:
            table = reader.poll(max_records=100_000, timeout=0.05)
            if table.num_rows:
                tables.append(table)
                got += table.num_rows
    if not tables:
        return []
    batch = pa.concat_tables(tables)
    if isinstance(store, AppendOrderStore):
        batch = store.in_append_order(batch)
    source = source_for_topic(engine, topic, sink=True)
    try:
        return read_records(batch, source, engine.schema_registry)
    except (RecordCodecError, UnsupportedFormat) as e:
        raise CaseFailure(f"Failed to deserialize records of topic {topic}: {e}") from e


def _query_errors_note(engine: Any) -> str:
    """Why outputs may be missing: the errors queries stopped with, for the failure text."""
    errors = query_errors(engine)
    return "" if not errors else "\nQuery errors:\n  " + "\n  ".join(errors)


def query_errors(engine: Any) -> list[str]:
    """Errors persistent queries stopped with (processing failures)."""
    errors = []
    for query in list(engine.queries.values()):
        error = getattr(query, "error", None)
        if error is not None:
            errors.append(str(error))
    return errors


# ---------------------------------------------------------------------------------------------
# Query validation cases
# ---------------------------------------------------------------------------------------------


def _error_text(e: BaseException) -> str:
    text = str(e)
    statement = getattr(e, "statement_text", None)
    return f"{text}\nStatement: {statement}" if statement else text


def _expect_exception(case: QttCase, run: _Run, text: str) -> None:
    """A statement or processing failed with ``text``: pass if the case expects it (the text
    stays the case's error, so reports say what it failed with)."""
    expected = case.expected_exception
    if expected is None:
        raise CaseFailure(f"Statement failed: {text}")
    if expected.message and expected.message not in text:
        raise CaseFailure(
            f"Expected an error containing: {expected.message}\nbut the error was: {text}"
        )
    run.expected_failure = text


def _execute_all(session: Any, statements: Sequence[str]) -> list[Any]:
    """Execute ``statements`` as ksqlDB's harness does; returns the non-empty results.

    ksqlDB's harness joins the statements with newlines and parses them as one text, so an
    error's line counts from the first statement (the third statement's errors are on line 3).
    A session positions errors within their own statement: each is run alone and its error
    moved down by the lines before it.
    """
    results: list[Any] = []
    lines_before = 0
    for statement in statements:
        leading = statement[: len(statement) - len(statement.lstrip())]
        try:
            results.extend(e for e in session.execute(statement) if e is not None)
        except KsqlpyError as e:
            offset = lines_before + leading.count("\n")
            if e.pos is not None and offset:
                e.pos = Position(e.pos.line + offset, e.pos.column)
            raise
        lines_before += statement.count("\n") + 1
    return results


def _run_qtt(case: QttCase, run: _Run, options: RunOptions) -> None:
    engine = open_engine(case)
    try:
        create_topics(engine, case)
        session = engine.session()
        try:
            if case.plan_file is not None:
                from ksqlpy.testing.plans import apply_plans

                apply_plans(engine, case)
            else:
                _execute_all(session, case.statements)
        except KsqlpyError as e:
            _expect_exception(case, run, _error_text(e))
            return
        feed_inputs(engine, case.inputs, options, in_order=True)
        topics = list(dict.fromkeys(r.topic for r in case.outputs))
        actual = {topic: read_topic(engine, topic) for topic in topics}
        run.outputs.extend(r for topic in topics for r in actual[topic])
        if case.expected_exception is not None:
            errors = query_errors(engine)
            if errors:
                _expect_exception(case, run, "\n".join(errors))
                return
            raise CaseFailure(
                "Expected test to throw an error containing: "
                f"{case.expected_exception.message or case.expected_exception.type}"
            )
        inserts_only = not case.inputs
        for topic in topics:
            expected = [r for r in case.outputs if r.topic == topic]
            problem = compare_topic(topic, expected, actual[topic], inserts_only=inserts_only)
            if problem is not None:
                raise CaseFailure(problem + _query_errors_note(engine))
        if case.post is not None:
            problem = check_post_conditions(engine, case.post)
            if problem is not None:
                raise CaseFailure(problem)
    finally:
        engine.close()


# ---------------------------------------------------------------------------------------------
# REST cases
# ---------------------------------------------------------------------------------------------


def split_statements(statements: Sequence[str]) -> tuple[list[str], list[str]]:
    """Admin statements, then queries (ksqlDB: from the first statement starting ``SELECT ``)."""
    for index, statement in enumerate(statements):
        if statement.startswith("SELECT "):
            return list(statements[:index]), list(statements[index:])
    return list(statements), []


def _expect_error(case: QttCase, run: _Run, text: str) -> None:
    expected = case.expected_error
    if expected is None:
        raise CaseFailure(f"Server failed to execute statement: {text}")
    if expected.message and expected.message not in text:
        raise CaseFailure(f"Expected error mismatch.\nExpected: {expected.message}\nActual: {text}")
    run.expected_failure = text


def _run_rest(case: QttCase, run: _Run, options: RunOptions) -> None:
    assert run.responses is not None
    engine = open_engine(case)
    try:
        create_topics(engine, case)
        admin, queries = split_statements(case.statements)
        session = engine.session(properties=dict(case.properties))
        try:
            for entity in _execute_all(session, admin):
                run.responses.append({"admin": rest.entity_json(entity)})
        except KsqlpyError as e:
            _expect_error(case, run, _error_text(e))
            return
        if not case.wait_for_query_header:
            feed_inputs(engine, case.inputs, options)
        for index, text in enumerate(queries):
            produce: Callable[[], None] | None = None
            if case.wait_for_query_header and index == 0:
                def produce() -> None:
                    feed_inputs(engine, case.inputs, options)
            try:
                rows = rest.run_query(session, text, after_header=produce, timeout=PUSH_TIMEOUT)
            except KsqlpyError as e:
                _expect_error(case, run, _error_text(e))
                return
            run.responses.append({"query": rows})
        if case.expected_error is not None:
            raise CaseFailure(
                f"Expected last statement to return an error: {case.expected_error.message}"
            )
        topics = list(dict.fromkeys(r.topic for r in case.outputs))
        actual = {topic: read_topic(engine, topic) for topic in topics}
        run.outputs.extend(r for topic in topics for r in actual[topic])
        for topic in topics:
            expected = [r for r in case.outputs if r.topic == topic]
            problem = compare_topic(topic, expected, actual[topic], ignore_headers=True)
            if problem is not None:
                raise CaseFailure(problem + _query_errors_note(engine))
        problem = compare_responses(
            run.responses, case.responses or (), case.statements, verify_order=case.verify_order
        )
        if problem is not None:
            raise CaseFailure(problem)
    finally:
        engine.close()
