"""The conformance runs of ``tests/qtt`` (QTT cases, stored plans), started in the background.

Those runs take minutes of CPU on worker processes, while most other tests spend their time
waiting (for servers to start, queries to catch up, processes to die). So the test modules
register their runs here when pytest imports them, ``tests/qtt/conftest.py`` starts the
registered runs of the selected tests once collection is over, one after the other in a thread
of this process, and each test then waits for its run's results. The workers run at the lowest
priority (niceness 19): they take the CPU other tests leave idle and never slow those down.
The conformance tests run last; while one waits, its run's workers go back to normal priority
(where allowed).

A listed case that does not pass in the background is run once more when its test asks for
the results, alone and at normal priority: a case starved of CPU for seconds can miss a time
limit (a push query quiet for two seconds counts as done) and must not read as a regression.
A case that fails twice fails the test.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import groupby

from ksqlpy.testing.pool import SupervisedPool
from ksqlpy.testing.qtt import QttCase
from ksqlpy.testing.report import PASSED, SKIPPED, CaseResult
from ksqlpy.testing.runner import RunOptions, run_cases

#: The niceness of the background workers: they run only when nothing else wants the CPU.
NICENESS = 19


@dataclass(slots=True)
class CorpusRun:
    """One test's run of cases: ``load`` gives the cases, ``jobs`` worker processes run them."""

    test: str
    load: Callable[[], Sequence[QttCase]]
    jobs: int
    cases: list[QttCase] = field(default_factory=list)
    results: list[CaseResult] = field(default_factory=list)
    error: BaseException | None = None
    started: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    #: the workers' niceness, and their pool once the run is under way
    niceness: int = NICENESS
    pool: SupervisedPool | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run_in_background(self, stop: threading.Event) -> None:
        try:
            self.cases = list(self.load())
            # as run_cases does: one batch per file, larger files first
            batches = [list(group) for _, group in groupby(self.cases, key=lambda c: c.file)]
            batches.sort(key=len, reverse=True)
            options = RunOptions()
            with self._lock:
                self.pool = SupervisedPool(self.jobs, options, options.case_timeout, self.niceness)
            self.pool.run(batches, self.results.append, stop)
        except BaseException as e:  # noqa: BLE001 - handed to the test, which raises it
            self.error = e
        finally:
            self.done.set()

    def hurry(self) -> None:
        """Nothing else runs now: back to normal priority, for this run's workers."""
        with self._lock:
            self.niceness = 0
            if self.pool is not None:
                self.pool.renice(0)

    def wait(self, listed: set[str]) -> tuple[list[CaseResult], list[str]]:
        """The results of every case (run now when no background run started), the listed
        cases that did not pass in the background having run again; and their ids."""
        if not self.started:
            self.results = run_cases(list(self.load()), jobs=self.jobs)
            return self.results, []
        self.hurry()
        # how much of the run the session's idle CPU covered, for whoever reads the test's output
        print(f"{self.test}: {len(self.results)} of {len(self.cases) or '?'} cases had run in the background")
        self.done.wait()
        results, _ = self._checked()
        by_id = {c.case_id: c for c in self.cases}
        again = [
            by_id[r.case_id]
            for r in results
            if r.case_id in listed and r.status not in (PASSED, SKIPPED) and r.case_id in by_id
        ]
        if not again:
            return results, []
        # in worker processes even for one case: in this process a case's time limit would take
        # over the SIGALRM timer pytest-timeout keeps for the test
        batches = [list(group) for _, group in groupby(again, key=lambda c: c.file)]
        rerun: dict[str, CaseResult] = {}
        options = RunOptions()
        SupervisedPool(min(self.jobs, len(batches)), options, options.case_timeout).run(
            batches, lambda r: rerun.__setitem__(r.case_id, r)
        )
        return [rerun.get(r.case_id, r) for r in results], [c.case_id for c in again]

    def _checked(self) -> tuple[list[CaseResult], list[str]]:
        if self.error is not None:
            raise self.error
        return self.results, []


#: The runs test modules registered, by test name.
RUNS: dict[str, CorpusRun] = {}
_STOP = threading.Event()
_THREAD: list[threading.Thread] = []


def register(test: str, load: Callable[[], Sequence[QttCase]], jobs: int) -> CorpusRun:
    """Register the run ``test`` (a test function's name) needs; returns it."""
    run = RUNS.setdefault(test, CorpusRun(test, load, jobs))
    return run


def start(selected: set[str]) -> None:
    """Start, in one thread and in registration order, the runs of the ``selected`` tests."""
    runs = [run for name, run in RUNS.items() if name in selected and not run.started]
    if not runs or os.environ.get("KSQLPY_QTT_FOREGROUND"):
        return
    for run in runs:
        run.started = True

    def run_all() -> None:
        for run in runs:
            run.run_in_background(_STOP)

    thread = threading.Thread(target=run_all, name="qtt-background", daemon=True)
    thread.start()
    _THREAD.append(thread)


def stop() -> None:
    """End the background runs (the session is over): their workers are killed."""
    _STOP.set()
    for thread in _THREAD:
        thread.join(timeout=30)
