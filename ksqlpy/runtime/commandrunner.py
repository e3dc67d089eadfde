"""The command runner: every server of a Kafka cluster tails the command topic and applies it.

Servers with the same ``ksql.service.id`` and ``bootstrap.servers`` share one command topic, as
ksqlDB's do. Each one's runner reads it (committed records only) and applies every command's
stored plan in order, on start and then continuously on a background thread, so a statement run on
any server shows on every other within a poll or two.

A statement that changes the metastore is written the way ksqlDB's ``DistributingExecutor``
writes it: a transactional producer (``transactional.id`` = the service id) is initialised, which
fences any other server's open transaction; the transaction begins; this server's runner catches
up with the end of the topic; the statement is validated against the metastore as it now is;
the command is produced and committed; and the answer waits until this server's runner applied
it. A writer fenced by another is retried from the start, so the statement is validated again
and the loser of a race gets the error its statement now deserves ("A stream with the same name
already exists").

Unlike ksqlDB, a server keeps its producer for its next statement while nothing was committed to
the topic after its own last command (initialising one takes tens of milliseconds, most of a
statement's time). That changes no outcome: only the writer initialised last can add to the
topic, so another server that wrote meanwhile (a new producer is then initialised, fencing it)
or only initialised its own (this one's produce then fails as fenced, and the statement is tried
again with a new producer) never goes unnoticed.

One lock orders the runner's polls with a writer's catch-up and apply, so a command is applied
exactly once per server. The background thread applies what it read only under
:attr:`CommandRunner.guard` as well — a server makes that its statement lock, so a command from
another server never changes the metastore under a statement or a pull query being planned
here. It polls without the guard and never waits for the guard while holding its own lock, so a
writer (guard, then lock) and the thread cannot wait on each other.

Every server keeps the status of every command it read (``/status/<commandId>``, as ksqlDB's
command runner records it): ``QUEUED`` once read, ``EXECUTING`` while applied, then ``SUCCESS``
with the message its writer answered, or ``ERROR`` with why it failed here.

The embedded store has no runner: one process owns its DuckDB file, and commands are applied as
they are recorded (:mod:`ksqlpy.runtime.commandlog`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ksqlpy.errors import KsqlpyError, TopicError
from ksqlpy.runtime import results as r
from ksqlpy.runtime.commandlog import Command
from ksqlpy.runtime.store.kafka_commands import CommandFenced, KafkaCommandTail, KafkaCommandWriter

if TYPE_CHECKING:
    from ksqlpy.runtime.engine import Engine
    from ksqlpy.runtime.store.kafka import KafkaStore

log = logging.getLogger("ksqlpy.commandrunner")

#: How long a writer waits for the runner to catch up, and for its own command to be applied
#: (ksqlDB: ``ksql.server.command.response.timeout.ms``, default 5000, and a catch-up timeout).
CATCH_UP_TIMEOUT = 30.0
#: How often the background thread takes what the command topic's consumer fetched (seconds).
TAIL_INTERVAL = 0.05
#: Attempts of a statement whose writer was fenced by another server's.
WRITE_ATTEMPTS = 5
#: Failures of applied commands kept for the writer that waits on them.
_KEPT_FAILURES = 64


class CommandTransaction:
    """A command being written: :meth:`record` produces, commits, and applies it locally."""

    def __init__(self, runner: CommandRunner, writer: KafkaCommandWriter) -> None:
        self._runner = runner
        self._writer = writer
        self.committed = False
        #: the command's offset, once produced
        self.seq: int | None = None

    def record(self, command: Command) -> int:
        seq = self.seq = self._writer.append(command.encode())
        self._writer.commit()
        self.committed = True
        self._runner.apply_through(seq)
        failure = self._runner.failures.pop(seq, None)
        if failure is not None:
            raise failure
        return seq


class CommandRunner:
    """Applies the command topic to one engine; see the module docstring."""

    def __init__(self, engine: Engine, store: KafkaStore, topic: str, service_id: str) -> None:
        self.engine = engine
        self.topic = topic
        self.transactional_id = service_id
        self._producer_settings = store.client_settings("producer")
        self._tail = KafkaCommandTail(store.client_settings("consumer"), topic)
        self.lock = threading.RLock()
        #: command offset -> why applying it failed (on this server)
        self.failures: dict[int, KsqlpyError] = {}
        #: held by the background thread while it applies commands (see the module docstring)
        self.guard: Any = threading.Lock()
        #: commands the background thread read and has yet to apply
        self._pending: list[tuple[int, bytes]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: the command topic's transactional producer, kept between statements (see _writer_for)
        self._writer: KafkaCommandWriter | None = None
        #: the command topic's committed end just after this server's writer last committed
        self._written_end: int | None = None

    # ------------------------------------------------------------------ reading

    def catch_up(self, timeout: float = CATCH_UP_TIMEOUT) -> None:
        """Apply every command committed before now."""
        with self.lock:
            self._apply_all([])  # what the background thread read already comes first
            end = self._tail.end_offset()
            # Right after this server's own write, the end is the commit marker after its command:
            # the tail never reads a marker, so it would wait for the broker to report the
            # partition's end (a long-polled fetch: up to the tail's fetch wait) to count it.
            marker = self._written_end - 1 if self._written_end is not None else None
            deadline = time.monotonic() + timeout
            while not self._tail.reached(end, marker):
                self._apply_all(self._tail.poll(0.1))
                if time.monotonic() > deadline:
                    raise TopicError(
                        f"Timed out after {timeout:.0f} s catching up with the command topic {self.topic}"
                    )

    def apply_through(self, seq: int, timeout: float = CATCH_UP_TIMEOUT) -> None:
        """Apply commands up to and including the one at offset ``seq``."""
        with self.lock:
            self._apply_all([])
            deadline = time.monotonic() + timeout
            while not self._tail.reached(seq + 1):
                self._apply_all(self._tail.poll(0.1))
                if time.monotonic() > deadline:
                    raise TopicError(
                        f"Timed out after {timeout:.0f} s waiting for command {seq} of the command topic"
                    )

    def _apply_all(self, records: list[tuple[int, bytes]]) -> None:
        """Apply ``records`` after any the background thread read before (call under the lock)."""
        if self._pending:
            records, self._pending = self._pending + records, []
        for seq, value in records:
            try:
                self.engine.apply_command(seq, Command.decode(value))
            except Exception as e:  # one command's failure must not stop the ones after it
                if self.engine.replaying:
                    raise
                log.warning("Command %d of the command topic failed on this server: %s", seq, e)
                self.failures[seq] = e if isinstance(e, KsqlpyError) else KsqlpyError(str(e))
                while len(self.failures) > _KEPT_FAILURES:
                    self.failures.pop(next(iter(self.failures)))

    # ------------------------------------------------------------------ the background tail

    @property
    def running(self) -> bool:
        """Whether the background thread tails the command topic."""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ksqlpy-command-runner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # the consumer fetches in the background: taking what it has is instant, so a
                # writer never waits on this thread's poll, and the thread waits unlocked
                with self.lock:
                    fetched = self._tail.poll(0)
                    self._queued(fetched)  # before any writer's catch-up may apply them
                    self._pending.extend(fetched)
                if self._pending:
                    with self.guard, self.lock:
                        self._apply_all([])
            except Exception:  # the runner must outlive one bad poll
                log.exception("The command runner could not read the command topic; retrying.")
                self._stop.wait(1.0)
            self._stop.wait(TAIL_INTERVAL)

    def _queued(self, records: list[tuple[int, bytes]]) -> None:
        """Mark commands read but not applied yet as ``QUEUED``."""
        statuses = self.engine.command_statuses
        for seq, value in records:
            try:
                command = Command.decode(value)
            except Exception:  # applying it says what is wrong with it
                log.debug("Command %d of the command topic does not decode", seq, exc_info=True)
                continue
            if command.command_id is not None:
                statuses[command.command_id] = r.CommandStatus(
                    status=r.CommandState.QUEUED, message="Statement written to command topic", query_id=command.query_id
                )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        with self.lock:
            self._drop_writer()
            self._tail.close()

    # ------------------------------------------------------------------ writing

    def _writer_for(self, end: int) -> KafkaCommandWriter:
        """The writer of the next transaction, with the command topic's committed end at ``end``:
        the one kept from this server's last write while nothing was committed after it; else a
        new one, whose initialisation fences every other server's writer (see the module
        docstring). Call under the lock."""
        writer = self._writer
        if writer is not None and writer.usable and end == self._written_end:
            return writer
        self._drop_writer()
        writer = self._writer = KafkaCommandWriter(self._producer_settings, self.topic, self.transactional_id)
        return writer

    def _drop_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._written_end = None

    @contextmanager
    def transaction(self) -> Iterator[CommandTransaction]:
        """Begin a command transaction with this server caught up (see the module docstring)."""
        with self.lock:
            writer = self._writer_for(self._tail.end_offset())
            tx = CommandTransaction(self, writer)
            try:
                writer.begin()
                self.catch_up()
                yield tx
                if not tx.committed:
                    writer.abort()
            except BaseException:
                if not tx.committed:
                    writer.abort()
                raise
            finally:
                if tx.committed and tx.seq is not None:
                    # the command and the transaction's commit marker (markers take offsets)
                    self._written_end = tx.seq + 2
                if not writer.usable:
                    self._drop_writer()

    def distribute(self, run: Any) -> Any:
        """``run(tx)`` inside a command transaction, again while another server's writer fences
        this one's."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self.transaction() as tx:
                    return run(tx)
            except CommandFenced:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
                log.info(
                    "Another server began writing to the command topic meanwhile; validating the statement again."
                )
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")
