"""Supervised worker processes for running many QTT cases in parallel.

A case can hang where no signal reaches it (a C call waiting on a lock, a deadlocked query
thread) or kill its process outright. A plain ``multiprocessing.Pool`` then waits forever. Here
the parent supervises: each worker reports when it starts a case and when the case ends; a
worker silent on one case for longer than the case's time limit plus a grace period, or one
that dies, is killed, that case is reported as an error, the rest of its file goes to a fresh
worker, and the run goes on.

Workers are not forked from the parent, which may hold threads (a test session's servers, a
DuckDB thread pool) whose locks a forked child would inherit held. They are forked from a fork
server: a fresh process, started once per parent, that has imported :mod:`ksqlpy.testing.warmup`
(the runtime, the planner, the parser built) and runs no thread of its own. A worker then starts
in milliseconds rather than the second and a half a spawned interpreter takes to import and warm
up, which every worker replacement (see :data:`CASES_PER_WORKER`) and every run would pay again.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from ksqlpy.testing.qtt import QttCase
from ksqlpy.testing.report import ERROR, CaseResult

#: Seconds a worker may overrun a case's own time limit before it is killed.
GRACE = 30.0
#: Files a worker runs before it is replaced (bounds memory that leaks across cases)...
FILES_PER_WORKER = 8
#: ...once it has also run this many cases: corpora of one case per file (stored plans) would
#: otherwise replace workers every few cases.
CASES_PER_WORKER = 120
#: What the fork server imports before forking workers.
PRELOAD = ["ksqlpy.testing.warmup"]


def _serve(conn: Connection, options: Any) -> None:
    """Worker loop: receive a file's cases, run them one by one, report each."""
    from ksqlpy.testing.runner import run_case

    while True:
        try:
            cases = conn.recv()
        except EOFError:
            return
        if cases is None:
            return
        for case in cases:
            conn.send(("start", case.case_id))
            conn.send(("done", run_case(case, options)))
        conn.send(("idle", None))


@dataclass(slots=True)
class _Worker:
    process: Any
    conn: Connection
    batch: deque[QttCase] = field(default_factory=deque)
    started: float | None = None
    files: int = 0
    cases: int = 0

    @property
    def busy(self) -> bool:
        return bool(self.batch)


class SupervisedPool:
    """Runs batches of cases (one file each) on ``jobs`` supervised worker processes, at
    ``niceness`` (see :meth:`renice`)."""

    def __init__(self, jobs: int, options: Any, case_timeout: float, niceness: int = 0) -> None:
        self._context = multiprocessing.get_context("forkserver")
        # Only the fork server's first start reads it: every pool of this process shares it.
        self._context.set_forkserver_preload(PRELOAD)
        self._jobs = jobs
        self._options = options
        self._limit = case_timeout + GRACE
        self._workers: list[_Worker] = []
        self._niceness = niceness

    def run(
        self,
        batches: Sequence[Sequence[QttCase]],
        on_result: Callable[[CaseResult], None],
        stop: threading.Event | None = None,
    ) -> None:
        """Run every batch, or until ``stop`` is set (then the workers are killed and the cases
        not run yet get no result)."""
        pending: deque[list[QttCase]] = deque(list(b) for b in batches if b)
        try:
            while (pending or any(w.busy for w in self._workers)) and not (stop is not None and stop.is_set()):
                self._assign(pending)
                self._collect(on_result, pending)
        finally:
            self._shutdown()

    def renice(self, niceness: int) -> None:
        """Run the workers, and those started later, at ``niceness``: a run in the background of
        other work (niceness 19) takes only the CPU that work leaves idle. Going back to a lower
        niceness takes a privilege (root's); without it the workers stay as they are."""
        self._niceness = niceness
        for worker in list(self._workers):
            _renice(worker.process.pid, niceness)

    # -- internals ------------------------------------------------------------------------

    def _start_worker(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child, self._options), daemon=True)
        process.start()
        child.close()
        if self._niceness:
            _renice(process.pid, self._niceness)
        worker = _Worker(process, parent)
        self._workers.append(worker)
        return worker

    def _assign(self, pending: deque[list[QttCase]]) -> None:
        while len(self._workers) < self._jobs and pending:
            self._start_worker()
        for worker in self._workers:
            if not worker.busy and pending:
                batch = pending.popleft()
                worker.batch.extend(batch)
                worker.files += 1
                worker.conn.send(batch)

    def _collect(self, on_result: Callable[[CaseResult], None], pending: deque[list[QttCase]]) -> None:
        busy = [w for w in self._workers if w.busy]
        ready = wait([w.conn for w in busy], timeout=1.0)
        for worker in busy:
            if worker.conn in ready:
                self._receive(worker, on_result, pending)
            elif worker.started is not None and time.monotonic() - worker.started > self._limit:
                self._fail(worker, f"case did not finish within {self._limit:g} seconds; worker killed",
                           on_result, pending)

    def _receive(self, worker: _Worker, on_result: Callable[[CaseResult], None],
                 pending: deque[list[QttCase]]) -> None:
        try:
            while worker.conn.poll():
                kind, payload = worker.conn.recv()
                if kind == "start":
                    worker.started = time.monotonic()
                elif kind == "done":
                    worker.started = None
                    worker.cases += 1
                    worker.batch.popleft()
                    on_result(payload)
                elif (
                    kind == "idle"
                    and not worker.busy
                    and worker.files >= FILES_PER_WORKER
                    and worker.cases >= CASES_PER_WORKER
                ):
                    self._retire(worker)
                    return
        except (EOFError, OSError):
            code = worker.process.exitcode
            self._fail(worker, f"worker process died (exit code {code})", on_result, pending)

    def _fail(self, worker: _Worker, reason: str, on_result: Callable[[CaseResult], None],
              pending: deque[list[QttCase]]) -> None:
        """Report the worker's current case as an error, requeue the rest of its file."""
        self._retire(worker, kill=True)
        if not worker.batch:
            return
        case = worker.batch.popleft()
        on_result(CaseResult(case_id=case.case_id, file=case.file, name=case.name,
                             format=case.format, status=ERROR, error=reason))
        if worker.batch:
            pending.appendleft(list(worker.batch))
        worker.batch.clear()

    def _retire(self, worker: _Worker, kill: bool = False) -> None:
        if worker in self._workers:
            self._workers.remove(worker)
        try:
            if kill:
                worker.process.kill()
            else:
                worker.conn.send(None)
        except OSError:
            pass
        worker.process.join(timeout=10)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=5)
        worker.conn.close()

    def _shutdown(self) -> None:
        for worker in list(self._workers):
            self._retire(worker, kill=worker.busy)


def _renice(pid: int | None, niceness: int) -> None:
    if pid is None:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, pid, niceness)
    except OSError:  # gone already, or not allowed to lower it
        pass
