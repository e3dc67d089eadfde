"""Authorization: rules in the shape of Kafka ACLs, checked on every statement before it runs.

The access-control file (``ksqlpy.access.control.file``) holds one rule per line, the columns
of ``kafka-acls --list``::

    # principal   permission  operation  resource  [pattern   name]
    Role:admin    ALLOW       ALL        CLUSTER
    Role:admin    ALLOW       ALL        TOPIC     LITERAL   *
    User:alice    ALLOW       READ       TOPIC     PREFIXED  pageviews
    User:alice    DENY        READ       TOPIC     LITERAL   pageviews_secret

A principal is ``User:<name>`` or ``Role:<role>`` (a role of the password file), ``User:*`` is
everyone. As in Kafka, DENY wins over ALLOW, nothing is allowed without an ALLOW rule, ALL
matches every operation, a LITERAL ``*`` matches every topic, and READ, WRITE, DELETE or ALTER
imply DESCRIBE. The same file may hold per-user quotas (``server/quotas.py`` reads them).

What each statement needs is what ksqlDB's authorization validator asks of Kafka: READ on the
topics a query reads, WRITE on the topic a sink or insert writes (and CREATE on a topic that does
not exist yet), DELETE on the topic of ``DROP ... DELETE TOPIC``; statements that change the
metastore or start persistent queries need CREATE on the CLUSTER, ones that stop, alter or
remove them ALTER on the CLUSTER. A persistent query is authorized once, when its creator
submits it; it then runs as its creator with what it was allowed then, until it is terminated.
The file is read again when it changes, as the password file is.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ksqlpy.server.config import ConfigError, ServerConfig
from ksqlpy.server.errors import ErrorCode, RestError

if TYPE_CHECKING:
    from ksqlpy.parser import ast

log = logging.getLogger("ksqlpy.server.acl")

ACCESS_CONTROL_FILE = "ksqlpy.access.control.file"

#: ksqlDB's ``ERROR_CODE_FORBIDDEN_KAFKA_ACCESS``: Kafka refused the user's access to a topic.
FORBIDDEN_KAFKA_ACCESS = ErrorCode(403, 40301)

#: The principal of requests that carry no user (authentication off), as Kafka names it.
ANONYMOUS = "ANONYMOUS"


class Operation(enum.Enum):
    READ = "READ"
    WRITE = "WRITE"
    CREATE = "CREATE"
    DELETE = "DELETE"
    ALTER = "ALTER"
    DESCRIBE = "DESCRIBE"
    ALL = "ALL"


class ResourceType(enum.Enum):
    TOPIC = "TOPIC"
    CLUSTER = "CLUSTER"


class Pattern(enum.Enum):
    LITERAL = "LITERAL"
    PREFIXED = "PREFIXED"


#: Kafka: an ALLOW of any of these also allows DESCRIBE.
_IMPLY_DESCRIBE = frozenset(
    {Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER, Operation.ALL}
)


@dataclass(frozen=True, slots=True)
class Rule:
    principal: str  # ``User:alice``, ``Role:admin``, ``User:*``
    allow: bool
    operation: Operation
    resource: ResourceType
    pattern: Pattern = Pattern.LITERAL
    name: str = "*"

    def covers(
        self, principals: frozenset[str], operation: Operation, resource: ResourceType, name: str
    ) -> bool:
        if self.principal not in principals or self.resource is not resource:
            return False
        if self.operation is not Operation.ALL and self.operation is not operation:
            implied = self.allow and operation is Operation.DESCRIBE and self.operation in _IMPLY_DESCRIBE
            if not implied:
                return False
        if resource is ResourceType.CLUSTER:
            return True
        if self.pattern is Pattern.PREFIXED:
            return name.startswith(self.name)
        return self.name == "*" or self.name == name


def parse_rules(text: str, where: str = "the access-control file") -> list[Rule]:
    """The rules of an access-control file; ``quota`` lines are left to ``server/quotas.py``."""
    rules: list[Rule] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        words = raw.split("#", 1)[0].split()
        if not words or words[0].lower() == "quota":
            continue
        problem = _rule_problem(words)
        if problem is not None:
            raise ConfigError(f"Line {number} of {where}: {problem}: {raw.strip()!r}")
        principal, permission, operation, resource = words[:4]
        pattern, name = (words[4].upper(), words[5]) if len(words) == 6 else ("LITERAL", "*")
        rules.append(
            Rule(
                principal=principal,
                allow=permission.upper() == "ALLOW",
                operation=Operation(operation.upper()),
                resource=ResourceType(resource.upper()),
                pattern=Pattern(pattern),
                name=name,
            )
        )
    return rules


def _rule_problem(words: list[str]) -> str | None:
    if len(words) not in (4, 6):
        return "expected 'principal ALLOW|DENY operation resource [LITERAL|PREFIXED name]'"
    permission, operation, resource = (w.upper() for w in words[1:4])
    if not (words[0].startswith(("User:", "Role:")) and len(words[0]) > 5):
        return f"the principal {words[0]!r} is neither User:<name> nor Role:<role>"
    if permission not in ("ALLOW", "DENY"):
        return f"the permission {words[1]!r} is neither ALLOW nor DENY"
    if operation not in Operation.__members__:
        return f"unknown operation {words[2]!r} (one of {', '.join(Operation.__members__)})"
    if resource not in ResourceType.__members__:
        return f"unknown resource {words[3]!r} (TOPIC or CLUSTER)"
    if len(words) == 6 and words[4].upper() not in Pattern.__members__:
        return f"unknown pattern {words[4]!r} (LITERAL or PREFIXED)"
    if resource == "TOPIC" and len(words) == 4:
        return "a TOPIC rule needs a pattern and a name"
    return None


class WatchedFile:
    """A file's text, read again when it changes; a file that goes away keeps its last text.

    The first :meth:`text` raises :class:`ConfigError` when the file cannot be read, so its
    owner calls it once at start-up."""

    def __init__(self, path: str, what: str) -> None:
        self.path = path
        self.what = what
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._text = ""

    def text(self) -> tuple[str, bool]:
        """The text, and whether it changed since the last call."""
        with self._lock:
            try:
                mtime = os.stat(self.path).st_mtime
                if mtime == self._mtime:
                    return self._text, False
                text = Path(self.path).read_text(encoding="utf-8")
            except OSError as e:
                if self._mtime is None:
                    raise ConfigError(f"Cannot read the {self.what} {self.path}: {e.strerror}") from None
                return self._text, False
            self._text, self._mtime = text, mtime
            return text, True


class AccessDenied(RestError):
    """ksqlDB's 403 for a Kafka ACL denial, naming what was denied."""

    def __init__(self, operation: Operation, resource: ResourceType, names: Iterable[str]) -> None:
        verb = operation.value.capitalize()
        if resource is ResourceType.CLUSTER:
            message = f"Authorization denied to {verb} on Kafka cluster"
        else:
            message = f"Authorization denied to {verb} on topic(s): [{', '.join(sorted(set(names)))}]"
        super().__init__(FORBIDDEN_KAFKA_ACCESS, message)
        self.operation = operation
        self.topics = tuple(sorted(set(names)))


@dataclass(frozen=True, slots=True)
class Need:
    """One permission a statement needs: ``operation`` on a topic (``name``) or on the cluster."""

    operation: Operation
    resource: ResourceType
    name: str = ""


def topic(operation: Operation, name: str) -> Need:
    return Need(operation, ResourceType.TOPIC, name)


def cluster(operation: Operation) -> Need:
    return Need(operation, ResourceType.CLUSTER)


class Topics:
    """What the checks need to know of the engine: source topics and existing topics."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._topics: set[str] | None = None

    def source_topic(self, name: str) -> str | None:
        source = self.engine.catalog.find(name)
        return None if source is None else str(source.topic)

    def topics(self) -> set[str]:
        if self._topics is None:
            self._topics = {t.name for t in self.engine.store.list_topics()}
        return self._topics

    def topic_of_print(self, written: str) -> str:
        """PRINT names a topic as written; an unquoted name matches a topic ignoring case."""
        found = self.topics()
        if written in found:
            return written
        return next((t for t in sorted(found) if t.upper() == written.upper()), written)


def _relation_sources(relation: ast.Relation) -> list[str]:
    from ksqlpy.parser import ast

    if isinstance(relation, ast.Table):
        return [relation.name]
    return [relation.left.name, *(j.source.name for j in relation.rights)]


def _with_topic(properties: tuple[ast.Property, ...]) -> str | None:
    from ksqlpy.parser import ast

    for p in properties:
        if p.name == "KAFKA_TOPIC" and isinstance(p.value, ast.StringLiteral):
            return p.value.value
    return None


def needs_of(stmt: ast.Statement, catalog: Topics) -> list[Need]:
    """The permissions ``stmt`` needs; a source the catalog lacks needs nothing here (running the
    statement reports it missing)."""
    from ksqlpy.parser import ast  # checking the access-control file at start needs no grammar

    def reads(query: ast.Query) -> list[Need]:
        topics = (catalog.source_topic(name) for name in _relation_sources(query.from_))
        return [topic(Operation.READ, t) for t in topics if t is not None]

    def writes(name: str) -> list[Need]:
        needs = [topic(Operation.WRITE, name)]
        if name not in catalog.topics():
            needs.append(topic(Operation.CREATE, name))
        return needs

    match stmt:
        case ast.QueryStatement(query=query):
            return reads(query)
        case ast.PrintTopic():
            return [topic(Operation.READ, catalog.topic_of_print(stmt.topic))]
        case ast.CreateSource():
            name = _with_topic(stmt.properties) or stmt.name
            created = [topic(Operation.CREATE, name)] if name not in catalog.topics() else []
            return [cluster(Operation.CREATE), topic(Operation.READ, name), *created]
        case ast.CreateAsSelect():
            existing = catalog.source_topic(stmt.name) if stmt.or_replace else None
            sink = _with_topic(stmt.properties) or existing or stmt.name
            return [cluster(Operation.CREATE), *reads(stmt.query), *writes(sink)]
        case ast.InsertInto():
            target = catalog.source_topic(stmt.target)
            return [cluster(Operation.CREATE), *reads(stmt.query), *(writes(target) if target else [])]
        case ast.InsertValues():
            target = catalog.source_topic(stmt.target)
            return [topic(Operation.WRITE, target)] if target else []
        case ast.DropSource():
            target = catalog.source_topic(stmt.name)
            deleted = [topic(Operation.DELETE, target)] if stmt.delete_topic and target else []
            return [cluster(Operation.ALTER), *deleted]
        case ast.TerminateQuery() | ast.PauseQuery() | ast.ResumeQuery() | ast.AlterSource() | ast.DropType():
            return [cluster(Operation.ALTER)]
        case ast.RegisterType():
            return [cluster(Operation.CREATE)]
        case ast.DescribeSource(name=str() as name):
            target = catalog.source_topic(name)
            return [topic(Operation.DESCRIBE, target)] if target else []
        case ast.AssertTopic():
            return [topic(Operation.DESCRIBE, stmt.topic)]
        case ast.Explain(statement=inner) if inner is not None:
            return needs_of(inner, catalog)
    return []


class Authorizer:
    """The rules of the access-control file and the checks made with them."""

    def __init__(self, path: str, roles_of: Callable[[str], frozenset[str]], denials: Any = None) -> None:
        self.file = WatchedFile(path, "access-control file")
        self.roles_of = roles_of
        self.denials = denials  # a prometheus Counter labelled by operation, or None
        self._rules: list[Rule] = []
        self._loaded = False
        self._rules_lock = threading.Lock()
        self.rules()  # a malformed file is a start-up error

    def rules(self) -> list[Rule]:
        with self._rules_lock:
            text, changed = self.file.text()
            if changed:
                try:
                    self._rules, self._loaded = parse_rules(text, self.file.path), True
                except ConfigError:
                    if not self._loaded:
                        raise
                    log.exception("Keeping the previous access-control rules")
            return self._rules

    def principals(self, user: str | None) -> frozenset[str]:
        name = user or ANONYMOUS
        roles = self.roles_of(name) if user else frozenset()
        return frozenset({f"User:{name}", "User:*", *(f"Role:{role}" for role in roles)})

    def allowed(self, user: str | None, need: Need) -> bool:
        principals = self.principals(user)
        rules = self.rules()
        covering = [r for r in rules if r.covers(principals, need.operation, need.resource, need.name)]
        if any(not r.allow for r in covering):
            return False  # DENY wins, as in Kafka
        return bool(covering)

    def check(self, user: str | None, address: str, statement: str, needs: Iterable[Need]) -> None:
        """Raise :class:`AccessDenied` for the first operation some of whose needs are denied."""
        denied: dict[tuple[Operation, ResourceType], list[str]] = {}
        for need in needs:
            if not self.allowed(user, need):
                denied.setdefault((need.operation, need.resource), []).append(need.name)
        if not denied:
            return
        (operation, resource), names = next(iter(denied.items()))
        what = (
            "the cluster" if resource is ResourceType.CLUSTER else f"topic(s) {', '.join(sorted(set(names)))}"
        )
        log.warning(
            "Denied %s on %s to user %r from %s: %s",
            operation.value,
            what,
            user or ANONYMOUS,
            address,
            _printable(statement[:500]),
        )
        if self.denials is not None:
            self.denials.labels(operation.value, resource.value).inc()
        raise AccessDenied(operation, resource, names)

    def check_statement(
        self,
        user: str | None,
        address: str,
        text: str,
        catalog: Topics,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        """Check one statement's text; text that does not parse is left to the engine to refuse."""
        from ksqlpy import parser

        if variables:
            text = parser.substitute_variables(text, variables)
        try:
            stmt = parser.parse_statement(text)
        except Exception:  # noqa: BLE001 - the engine reports it with its position
            return
        self.check(user, address, text, needs_of(stmt, catalog))

    def visible(self, user: str | None, entity: Any) -> Any:
        """SHOW STREAMS / TABLES / TOPICS with only what ``user`` may DESCRIBE."""
        from ksqlpy.runtime import results as r

        def may(name: str) -> bool:
            return self.allowed(user, topic(Operation.DESCRIBE, name))

        match entity:
            case r.SourceList():
                return dataclasses.replace(entity, sources=tuple(s for s in entity.sources if may(s.topic)))
            case r.SourceDescriptionList():
                kept = tuple(d for d in entity.descriptions if may(d.topic))
                return dataclasses.replace(entity, descriptions=kept)
            case r.TopicList():
                return dataclasses.replace(entity, topics=tuple(t for t in entity.topics if may(t.name)))
        return entity


def _printable(text: str) -> str:
    """A statement for a log line: control characters escaped, so no forged lines."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def authorizer(
    config: ServerConfig, roles_of: Callable[[str], frozenset[str]], denials: Any = None
) -> Authorizer | None:
    """The server's authorizer, or None when no access-control file is set (everything allowed)."""
    path = (config.get(ACCESS_CONTROL_FILE) or "").strip()
    return Authorizer(path, roles_of, denials) if path else None
