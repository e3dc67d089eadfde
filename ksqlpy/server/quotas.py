"""Quotas: server-wide pull-query limits, the push-query limit, and per-user rates.

Server-wide, with ksqlDB's property names: ``ksql.query.pull.max.qps`` (pull queries started
per second), ``ksql.query.pull.max.concurrent.requests`` (pull queries answering at once) and
``ksql.max.push.queries`` (push queries streaming at once). Per user, ``quota`` lines of the
quota file (``ksqlpy.quota.file``, else the access-control file)::

    # quota  principal   limits
    quota    User:alice  requests.per.second=20 push.queries=2 insert.bytes.per.second=65536
    quota    User:*      requests.per.second=100

``User:*`` gives each user without a line of their own a budget of their own (not one shared
budget). Rates are token buckets holding one second's worth, so a user may burst to the rate and
then keeps to it. Going over any limit is answered at once with ksqlDB's
``429 {"@type":"generic_error","error_code":42900,...}``, never by waiting; each user's buckets
are their own, so a user at a limit does not slow anyone else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from ksqlpy.server.acl import WatchedFile
from ksqlpy.server.config import ConfigError, ServerConfig
from ksqlpy.server.errors import RATE_LIMITED, RestError
from ksqlpy.server.wire import dumps

PULL_MAX_QPS = "ksql.query.pull.max.qps"
PULL_MAX_CONCURRENT = "ksql.query.pull.max.concurrent.requests"
QUOTA_FILE = "ksqlpy.quota.file"
ACCESS_CONTROL_FILE = "ksqlpy.access.control.file"

REQUESTS_PER_SECOND = "requests.per.second"
PUSH_QUERIES = "push.queries"
INSERT_BYTES_PER_SECOND = "insert.bytes.per.second"
LIMITS = (REQUESTS_PER_SECOND, PUSH_QUERIES, INSERT_BYTES_PER_SECOND)


class RateLimited(RestError):
    """ksqlDB's 429 answer."""

    def __init__(self, message: str) -> None:
        super().__init__(RATE_LIMITED, message)


class TokenBucket:
    """``rate`` tokens a second, holding one second's worth (at least one token). A take needs
    one token in the bucket and may overdraw it: a record larger than a second's budget still
    goes through, and the next take waits until the debt is paid."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(rate, 1.0)
        self.clock = clock
        self.tokens = self.capacity
        self.at = clock()
        self.lock = threading.Lock()

    def take(self, amount: float = 1.0) -> bool:
        with self.lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens < min(amount, 1.0):
                return False
            self.tokens -= amount
            return True


@dataclass(frozen=True, slots=True)
class UserQuota:
    requests_per_second: float | None = None
    push_queries: int | None = None
    insert_bytes_per_second: float | None = None


def parse_quotas(text: str, where: str = "the quota file") -> dict[str, UserQuota]:
    """``quota User:<name> limit=value ...`` lines by principal; other lines are not quotas."""
    quotas: dict[str, UserQuota] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        words = raw.split("#", 1)[0].split()
        if not words or words[0].lower() != "quota":
            continue
        if len(words) < 3 or not words[1].startswith("User:") or len(words[1]) <= 5:
            raise ConfigError(f"Line {number} of {where}: expected 'quota User:<name> limit=value ...'")
        values: dict[str, float] = {}
        for word in words[2:]:
            name, _, value = word.partition("=")
            if name not in LIMITS:
                raise ConfigError(
                    f"Line {number} of {where}: unknown limit {name!r} (one of {', '.join(LIMITS)})"
                )
            try:
                values[name] = float(value)
            except ValueError:
                values[name] = 0.0
            if values[name] <= 0:
                raise ConfigError(
                    f"Line {number} of {where}: {name} must be a positive number, not {value!r}"
                )
        push = values.get(PUSH_QUERIES)
        quotas[words[1]] = UserQuota(
            requests_per_second=values.get(REQUESTS_PER_SECOND),
            push_queries=int(push) if push is not None else None,
            insert_bytes_per_second=values.get(INSERT_BYTES_PER_SECOND),
        )
    return quotas


def _positive(config: ServerConfig, name: str) -> float | None:
    value = config.get(name)
    if value is None or not value.strip():
        return None
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if number <= 0:
        raise ConfigError(f"Invalid value {value} for configuration {name}: must be a positive number")
    return number


def statement_kind(text: str) -> str:
    """``pull``, ``push``, ``insert`` (INSERT VALUES) or ``other`` for one statement's text;
    text that does not parse is ``other`` (running it reports why)."""
    from ksqlpy import parser
    from ksqlpy.parser import ast

    try:
        stmt = parser.parse_statement(text)
    except Exception:  # noqa: BLE001 - the engine reports it with its position
        return "other"
    match stmt:
        case ast.QueryStatement(query=query):
            return "pull" if query.refinement is None else "push"
        case ast.InsertValues():
            return "insert"
    return "other"


class PullTicket:
    """A pull query's place among the concurrent ones; :meth:`release` gives it back once."""

    def __init__(self, quotas: Quotas | None) -> None:
        self.quotas = quotas

    def release(self) -> None:
        if self.quotas is not None:
            self.quotas._release_pull()
            self.quotas = None


class Quotas:
    """The server's limits and each user's buckets and counts."""

    def __init__(self, config: ServerConfig) -> None:
        self.pull_qps = _positive(config, PULL_MAX_QPS)
        concurrent = _positive(config, PULL_MAX_CONCURRENT)
        self.pull_concurrent = int(concurrent) if concurrent is not None else None
        self.pull_bucket = TokenBucket(self.pull_qps) if self.pull_qps is not None else None
        self.pull_running = 0
        path = (config.get(QUOTA_FILE) or config.get(ACCESS_CONTROL_FILE) or "").strip()
        self.file = WatchedFile(path, "quota file") if path else None
        self._quotas: dict[str, UserQuota] = {}
        self._loaded = False
        self.lock = threading.Lock()
        self.buckets: dict[tuple[str, str], TokenBucket] = {}
        self.push_by_user: dict[str, int] = {}
        self.refusals: Any = None  # a prometheus Counter labelled by limit, set by the app
        self.user_quotas()  # a malformed file is a start-up error

    # --- per-user limits ------------------------------------------------------------------

    def user_quotas(self) -> dict[str, UserQuota]:
        if self.file is None:
            return self._quotas
        text, changed = self.file.text()
        if changed:
            try:
                quotas = parse_quotas(text, self.file.path)
            except ConfigError:
                if not self._loaded:
                    raise
                return self._quotas  # keep the last good quotas
            with self.lock:
                self._quotas, self._loaded = quotas, True
                self.buckets.clear()  # new rates take effect at once
        return self._quotas

    def quota_of(self, user: str | None) -> UserQuota | None:
        if user is None:
            return None
        quotas = self.user_quotas()
        return quotas.get(f"User:{user}") or quotas.get("User:*")

    def _bucket(self, user: str, limit: str, rate: float) -> TokenBucket:
        with self.lock:
            bucket = self.buckets.get((user, limit))
            if bucket is None or bucket.rate != rate:
                bucket = self.buckets[(user, limit)] = TokenBucket(rate)
            return bucket

    def admit_request(self, user: str | None) -> None:
        quota = self.quota_of(user)
        if user is None or quota is None or quota.requests_per_second is None:
            return
        if not self._bucket(user, REQUESTS_PER_SECOND, quota.requests_per_second).take():
            raise self.refuse(
                REQUESTS_PER_SECOND,
                f"User {user} is at its rate limit of {quota.requests_per_second:g} requests per second.",
            )

    def admit_insert(self, user: str | None, size: int) -> None:
        """Take ``size`` bytes of the user's insert budget, or raise :class:`RateLimited`."""
        quota = self.quota_of(user)
        if user is None or quota is None or quota.insert_bytes_per_second is None:
            return
        if not self._bucket(user, INSERT_BYTES_PER_SECOND, quota.insert_bytes_per_second).take(size):
            raise self.refuse(
                INSERT_BYTES_PER_SECOND,
                f"User {user} is at its insert rate limit of {quota.insert_bytes_per_second:g} bytes per second.",
            )

    # --- pull queries -----------------------------------------------------------------------

    @property
    def limits_pull(self) -> bool:
        return self.pull_bucket is not None or self.pull_concurrent is not None

    def admit_query(self, text: str) -> PullTicket:
        """Admit a ``/query`` statement: a pull query takes a pull place, anything else none."""
        if not self.limits_pull or statement_kind(text.strip()) != "pull":
            return PullTicket(None)
        return self.admit_pull()

    def admit_pull(self) -> PullTicket:
        if self.pull_bucket is not None and not self.pull_bucket.take():
            raise self.refuse(
                PULL_MAX_QPS,
                f"Host is at rate limit for pull queries. Currently set to {self.pull_qps:g} qps.",
            )
        with self.lock:
            if self.pull_concurrent is not None and self.pull_running >= self.pull_concurrent:
                raise self.refuse(
                    PULL_MAX_CONCURRENT,
                    "Host is at concurrency limit for pull queries. Currently set to "
                    f"{self.pull_concurrent} maximum concurrent operations.",
                )
            self.pull_running += 1
        return PullTicket(self)

    def refuse(self, limit: str, message: str) -> RateLimited:
        if self.refusals is not None:
            self.refusals.labels(limit).inc()
        return RateLimited(message)

    def _release_pull(self) -> None:
        with self.lock:
            self.pull_running -= 1

    # --- push queries -----------------------------------------------------------------------

    def admit_push(self, user: str | None, running: int, limit: int) -> None:
        """Count a push query of ``user`` (``running`` of ``limit`` run server-wide)."""
        if running >= limit:
            raise self.refuse(
                "ksql.max.push.queries",
                f"Not executing query since there are already {limit} running push queries.",
            )
        if user is None:
            return
        quota = self.quota_of(user)
        most = quota.push_queries if quota is not None else None
        with self.lock:
            if most is not None and self.push_by_user.get(user, 0) >= most:
                raise self.refuse(
                    PUSH_QUERIES, f"User {user} is at its limit of {most} concurrent push queries."
                )
            if user is not None:
                self.push_by_user[user] = self.push_by_user.get(user, 0) + 1

    def release_push(self, user: str | None) -> None:
        if user is None:
            return
        with self.lock:
            left = self.push_by_user.get(user, 0) - 1
            if left > 0:
                self.push_by_user[user] = left
            else:
                self.push_by_user.pop(user, None)


class QuotaMiddleware:
    """Each user's requests per second, checked once the user is known (inside authentication)."""

    def __init__(self, app: Any, quotas: Quotas) -> None:
        self.app = app
        self.quotas = quotas

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self.quotas.admit_request(scope.get("ksqlpy.user"))
        except RateLimited as e:
            await _drain(receive)
            body = dumps(e.body())
            await send(
                {
                    "type": "http.response.start",
                    "status": 429,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        await self.app(scope, receive, send)


async def _drain(receive: Any) -> None:
    """Read and drop what a refused request still sends (bounded), so an HTTP/1.1 connection
    can carry the next request and HTTP/2 gets no data for a stream that has ended."""
    read = 0
    with anyio.move_on_after(2.0):
        while read <= 1 << 20:
            message = await receive()
            if message["type"] != "http.request":
                return
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                return
