"""ksql-test-runner's three files (statements, inputs, expected outputs) as one QTT case.

The statements file holds SQL statements; the input file is ``{"inputs": [record, ...]}`` and
the output file ``{"outputs": [record, ...]}``, records in QTT form (``topic``, ``key``,
``value``, ``timestamp``, optional ``window`` and ``headers``). Inputs are optional, as
statements may insert their own rows with INSERT VALUES.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ksqlpy.testing.qtt import QttFormatError, build_case, read_json


def _records(path: Path | None, field: str) -> list[Any]:
    if path is None:
        return []
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get(field), list):
        raise QttFormatError(f'{path}: expected a JSON object with an array field "{field}"')
    return list(data[field])


def split_sql(text: str) -> list[str]:
    """Statements of a SQL file, each with its terminating semicolon."""
    from ksqlpy.parser import split_statements

    return [s if s.rstrip().endswith(";") else s + ";" for s in split_statements(text) if s.strip()]


def load_tool_case(sql_file: Path, input_file: Path | None, output_file: Path) -> Any:
    statements = split_sql(sql_file.read_text(encoding="utf-8"))
    if not statements:
        raise QttFormatError(f"{sql_file}: no statements")
    node = {
        "name": sql_file.stem,
        "statements": statements,
        "inputs": _records(input_file, "inputs"),
        "outputs": _records(output_file, "outputs"),
    }
    return build_case(node, suite="", file_name=sql_file.name, fmt=None, config=None)
