"""The ``ksqlpy`` command: ``server``, ``shell``, ``test`` (and later ``migrations``)."""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module with add_arguments/run, help)
SUBCOMMANDS = {
    "server": ("ksqlpy.server.cli", "run the ksqlpy server (embedded store unless bootstrap.servers is set)"),
    "shell": ("cli.main", "interactive shell connected to a ksqlpy (or ksqlDB) server"),
    "migrations": ("cli.migrations", "manage versioned schema migrations (ksql-migrations' commands)"),
    "test": ("ksqlpy.testing.cli", "run conformance (QTT) cases or ksql-test-runner style tests"),
}


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named on the command line (its first word not starting with '-')."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in SUBCOMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ksqlpy", description="A streaming SQL database speaking ksqlDB's dialect.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen subcommand's module is imported: the shell and the test runner pull in
    # prompt_toolkit, httpx and the QTT machinery, which cost the server most of a second to start.
    chosen = _chosen(sys.argv[1:] if argv is None else argv)
    modules = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        if chosen is not None and name != chosen:
            sub.add_parser(name, help=help_text, description=help_text)
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(modules[args.command].run(args) or 0)

if __name__ == "__main__":
    sys.exit(main())
