"""``ksqlpy migrations``: ksql-migrations' commands for versioned schema changes over REST.

``add_arguments``/``run`` plug it into ``ksqlpy``'s subcommands; the commands live in
:mod:`cli.migrations.commands`.
"""

from __future__ import annotations

from cli.migrations.commands import add_arguments, run

__all__ = ["add_arguments", "run"]
