"""What every worker of :mod:`ksqlpy.testing.pool` needs before its first case, done once.

The pool's fork server imports this module; each worker is then forked from it with the
runtime, the planner and the test functions imported and the SQL parser built (about a second
and a half of CPU a worker would otherwise spend, for every worker the pool starts). Nothing
here opens a DuckDB database or starts a thread: a process forked while another thread holds a
lock inherits the lock held.
"""

from __future__ import annotations

# imported for the workers
import ksqlpy.planner.functions
import ksqlpy.runtime.engine
import ksqlpy.runtime.session
import ksqlpy.testing.plans
import ksqlpy.testing.runner  # noqa: F401
from ksqlpy.parser import parse_statement
from ksqlpy.testing.test_udfs import register_test_functions


def warm_up() -> None:
    """Register the test functions and build the parser (its tables and lexer patterns)."""
    register_test_functions()
    parse_statement("CREATE STREAM S (K STRING KEY, V INT) WITH (KAFKA_TOPIC='t', VALUE_FORMAT='JSON');")
    parse_statement("SELECT K, COUNT(*) FROM S WINDOW TUMBLING (SIZE 1 SECOND) WHERE V > 1 GROUP BY K EMIT CHANGES;")


warm_up()
