"""``python -m ksqlpy.testing``: the same as ``ksqlpy test``."""

from __future__ import annotations

import argparse
import sys

from ksqlpy.testing import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ksqlpy test", description="Run QTT or ksql-test-runner tests.")
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
