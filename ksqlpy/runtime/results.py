"""What the engine hands back: one frozen dataclass per ksqlDB REST entity kind.

``Session.execute`` yields these; ``server/entities.py`` turns each into the JSON object ksqlDB
puts on the wire (``@type``, ``statementText``, ``warnings`` and the payload). The dataclasses
carry exactly the information that JSON needs, in Python terms: SQL types as
:mod:`ksqlpy.sqltypes` values, closed sets as enums, lists as tuples. They know nothing about
HTTP or JSON.

Entity kind (``@type``) to class:

=========================  ==========================================================
``currentStatus``          :class:`CommandStatusEntity`
``streams`` / ``tables``   :class:`SourceList` (``kind`` picks which)
``source_descriptions``    :class:`SourceDescriptionList`
``sourceDescription``      :class:`SourceDescription`
``queries``                :class:`QueryList`
``query_descriptions``     :class:`QueryDescriptionList`
``queryDescription``       :class:`QueryDescription`
``kafka_topics[_extended]`` :class:`TopicList` (``extended`` picks which)
``properties``             :class:`PropertyList`
``function_names``         :class:`FunctionList`
``describe_function``      :class:`FunctionDescription`
``type_list``              :class:`TypeList`
``variables``              :class:`VariableList`
``terminate_query``        :class:`TerminateQueryEntity`
``warning_entity``         :class:`WarningEntity`
``assert_topic``           :class:`AssertTopicEntity`
``assert_schema``          :class:`AssertSchemaEntity`
``connector_list``         :class:`ConnectorList`
=========================  ==========================================================

Non-entity results of the engine facade: :class:`ServerInfo` (``/info``), :class:`Health`
(``/healthcheck``) and :class:`CommandStatus` (``/status``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from ksqlpy import sqltypes
from ksqlpy.parser.ast import SourceKind

__all__ = [
    "AssertSchemaEntity",
    "AssertTopicEntity",
    "CommandState",
    "CommandStatus",
    "CommandStatusEntity",
    "ConnectorInfo",
    "ConnectorList",
    "Entity",
    "FieldInfo",
    "FieldKind",
    "FunctionArgument",
    "FunctionDescription",
    "FunctionList",
    "FunctionNameInfo",
    "FunctionType",
    "FunctionVariant",
    "Health",
    "KsqlEntity",
    "PropertyInfo",
    "PropertyList",
    "QueryDescription",
    "QueryDescriptionList",
    "QueryList",
    "QueryState",
    "QueryType",
    "RunningQuery",
    "ServerInfo",
    "SourceDescription",
    "SourceDescriptionList",
    "SourceInfo",
    "SourceKind",
    "SourceList",
    "TerminateQueryEntity",
    "TopicInfo",
    "TopicList",
    "TypeList",
    "VariableList",
    "WarningEntity",
]


# --- closed sets -----------------------------------------------------------------------------


class CommandState(enum.Enum):
    """Life cycle of a command in the command log (ksqlDB ``CommandStatus.Status``)."""

    QUEUED = "QUEUED"
    PARSING = "PARSING"
    EXECUTING = "EXECUTING"
    RUNNING = "RUNNING"
    TERMINATED = "TERMINATED"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"


class QueryState(enum.Enum):
    """State of a running query on one server (ksqlDB ``KsqlQueryStatus``)."""

    RUNNING = "RUNNING"
    ERROR = "ERROR"
    UNRESPONSIVE = "UNRESPONSIVE"
    PAUSED = "PAUSED"


class QueryType(enum.Enum):
    """ksqlDB's ``KsqlQueryType``."""

    PERSISTENT = "PERSISTENT"
    PUSH = "PUSH"
    PULL = "PULL"


class FieldKind(enum.Enum):
    """The special column kinds DESCRIBE marks; ordinary value columns carry ``None``."""

    KEY = "KEY"
    HEADER = "HEADER"


class FunctionType(enum.Enum):
    SCALAR = "SCALAR"
    AGGREGATE = "AGGREGATE"
    TABLE = "TABLE"


# --- building blocks shared by several entities ----------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldInfo:
    """One column as DESCRIBE / EXPLAIN show it: ``{"name", "schema", "type"?, "headerKey"?}``."""

    name: str
    type: sqltypes.SqlType
    kind: FieldKind | None = None
    header_key: str | None = None  # HEADER('k') columns only


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningQuery:
    """One row of SHOW QUERIES, also used for DESCRIBE's read/write queries."""

    id: str
    query_string: str
    sinks: tuple[str, ...] = ()
    sink_topics: tuple[str, ...] = ()
    query_type: QueryType = QueryType.PERSISTENT
    state: QueryState = QueryState.RUNNING
    #: state -> number of servers in it; empty means ``{state: 1}`` (this one server)
    status_count: Mapping[QueryState, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceInfo:
    """One row of SHOW STREAMS / SHOW TABLES."""

    name: str
    topic: str
    key_format: str
    value_format: str
    is_windowed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicInfo:
    """One row of SHOW TOPICS [EXTENDED]: ``replica_info`` has one entry per partition."""

    name: str
    replica_info: tuple[int, ...]
    consumer_count: int = 0  # EXTENDED only
    consumer_group_count: int = 0  # EXTENDED only


@dataclass(frozen=True, slots=True, kw_only=True)
class PropertyInfo:
    """One row of SHOW PROPERTIES."""

    name: str
    value: str | None
    scope: str = "KSQL"  # KSQL, STREAMS, CONSUMER, PRODUCER, ...
    editable: bool = True
    level: str = "SERVER"  # SERVER or QUERY


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionNameInfo:
    """One row of SHOW FUNCTIONS."""

    name: str
    type: FunctionType
    category: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionArgument:
    name: str
    type: str  # ksqlDB's UDF type text, e.g. ``VARCHAR``, ``ARRAY<T>``
    description: str = ""
    is_variadic: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionVariant:
    """One signature of a function, as DESCRIBE FUNCTION lists it."""

    arguments: tuple[FunctionArgument, ...]
    return_type: str
    description: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorInfo:
    name: str
    type: str = "source"
    class_name: str = ""
    state: str = "UNKNOWN"


# --- entities --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KsqlEntity:
    """Fields every entity has: the statement it answers and server notices."""

    statement_text: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandStatusEntity(KsqlEntity):
    """``currentStatus``: CREATE, DROP, CSAS/CTAS, INSERT SELECT, TERMINATE persistent, ALTER ...

    ``command_id`` is ``<type>/<entity>/<action>`` (``stream/`PV`/create``, ``stream/PV/drop``,
    ``terminate/CTAS_CNT_5/execute``); ``message`` uses ksqlDB's texts (``Stream created``,
    ``Created query with ID CTAS_CNT_5``, ``Query terminated.``).
    """

    command_id: str
    status: CommandState = CommandState.SUCCESS
    message: str = ""
    query_id: str | None = None  # the persistent query a CSAS/CTAS/INSERT SELECT started
    sequence_number: int = -1  # position in the command log; -1 when not enqueued

    @property
    def command_status(self) -> CommandStatus:
        return CommandStatus(status=self.status, message=self.message, query_id=self.query_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceList(KsqlEntity):
    """``streams`` or ``tables`` (SHOW STREAMS / SHOW TABLES), by ``kind``."""

    kind: SourceKind
    sources: tuple[SourceInfo, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDescription(KsqlEntity):
    """``sourceDescription`` (DESCRIBE src [EXTENDED]); also an item of SHOW ... EXTENDED.

    Without EXTENDED, ksqlDB sends ``partitions``/``replication`` 0 and empty statistics; the
    engine fills them only when ``extended`` is true.
    """

    name: str
    kind: SourceKind
    fields: tuple[FieldInfo, ...]
    topic: str
    key_format: str
    value_format: str
    read_queries: tuple[RunningQuery, ...] = ()
    write_queries: tuple[RunningQuery, ...] = ()
    window_type: str | None = None  # TUMBLING, HOPPING, SESSION
    timestamp: str = ""  # the TIMESTAMP column, "" when ROWTIME is used
    statistics: str = ""
    error_stats: str = ""
    extended: bool = False
    partitions: int = 0
    replication: int = 0
    statement: str = ""  # the normalised CREATE statement of the source
    source_constraints: tuple[str, ...] = ()  # sources created from this one's topic


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDescriptionList(KsqlEntity):
    """``source_descriptions``: SHOW STREAMS EXTENDED / SHOW TABLES EXTENDED."""

    descriptions: tuple[SourceDescription, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryList(KsqlEntity):
    """``queries``: SHOW QUERIES."""

    queries: tuple[RunningQuery, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryDescription(KsqlEntity):
    """``queryDescription``: EXPLAIN query-id / EXPLAIN statement; item of SHOW QUERIES EXTENDED."""

    id: str
    query_string: str
    fields: tuple[FieldInfo, ...]
    sources: tuple[str, ...] = ()
    sinks: tuple[str, ...] = ()
    sink_topics: tuple[str, ...] = ()
    topology: str = ""
    execution_plan: str = ""
    window_type: str | None = None
    overridden_properties: Mapping[str, str] = field(default_factory=dict)
    query_type: QueryType = QueryType.PERSISTENT
    state: QueryState = QueryState.RUNNING
    query_errors: tuple[str, ...] = ()
    consumer_group_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryDescriptionList(KsqlEntity):
    """``query_descriptions``: SHOW QUERIES EXTENDED."""

    descriptions: tuple[QueryDescription, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicList(KsqlEntity):
    """``kafka_topics`` or ``kafka_topics_extended`` (SHOW TOPICS [EXTENDED])."""

    topics: tuple[TopicInfo, ...]
    extended: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PropertyList(KsqlEntity):
    """``properties``: SHOW PROPERTIES."""

    properties: tuple[PropertyInfo, ...]
    overwritten: tuple[str, ...] = ()  # names overridden for this request/session
    defaults: tuple[str, ...] = ()  # names still at their default value


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionList(KsqlEntity):
    """``function_names``: SHOW FUNCTIONS."""

    functions: tuple[FunctionNameInfo, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionDescription(KsqlEntity):
    """``describe_function``: DESCRIBE FUNCTION f."""

    name: str
    type: FunctionType
    variants: tuple[FunctionVariant, ...]
    description: str = ""
    author: str = "Confluent"
    version: str = ""
    path: str = "internal"


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeList(KsqlEntity):
    """``type_list``: SHOW TYPES (custom types registered with CREATE TYPE)."""

    types: Mapping[str, sqltypes.SqlType]


@dataclass(frozen=True, slots=True, kw_only=True)
class VariableList(KsqlEntity):
    """``variables``: SHOW VARIABLES, name -> value in definition order."""

    variables: Mapping[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminateQueryEntity(KsqlEntity):
    """``terminate_query``: TERMINATE of a transient (push) query id."""

    query_id: str
    was_terminated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class WarningEntity(KsqlEntity):
    """``warning_entity``: a notice that is the whole answer to a statement."""

    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AssertTopicEntity(KsqlEntity):
    """``assert_topic``: ASSERT [NOT EXISTS] TOPIC that held (a failed one raises, REST 41700)."""

    topic_name: str
    exists: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class AssertSchemaEntity(KsqlEntity):
    """``assert_schema``: ASSERT [NOT EXISTS] SCHEMA that held."""

    subject: str | None
    schema_id: int | None
    exists: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorList(KsqlEntity):
    """``connector_list``: SHOW CONNECTORS (ksqlpy runs no connectors: normally empty)."""

    connectors: tuple[ConnectorInfo, ...] = ()


Entity: TypeAlias = (
    CommandStatusEntity
    | SourceList
    | SourceDescription
    | SourceDescriptionList
    | QueryList
    | QueryDescription
    | QueryDescriptionList
    | TopicList
    | PropertyList
    | FunctionList
    | FunctionDescription
    | TypeList
    | VariableList
    | TerminateQueryEntity
    | WarningEntity
    | AssertTopicEntity
    | AssertSchemaEntity
    | ConnectorList
)


# --- facade results that are not statement entities -----------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandStatus:
    """Status of one command (``/status/{type}/{entity}/{action}``, ``commandStatus`` field)."""

    status: CommandState
    message: str = ""
    query_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerInfo:
    """``/info``: all four fields are required by some clients."""

    version: str
    kafka_cluster_id: str
    service_id: str
    status: str = "RUNNING"  # RUNNING, ERROR, DEGRADED


@dataclass(frozen=True, slots=True, kw_only=True)
class Health:
    """``/healthcheck``: ``details`` maps a subsystem (metastore, kafka, commandRunner) to health."""

    is_healthy: bool
    details: Mapping[str, bool] = field(default_factory=dict)
    server_state: str = "READY"  # INITIALIZING, READY, TERMINATING, TERMINATED
