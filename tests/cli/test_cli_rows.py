"""Query rows printed as a live table (ksqlDB's fixed-width cells) or as JSON lines."""

from __future__ import annotations

import json

from cli.render import OutputFormat
from cli.rows import RowPrinter


def test_header_is_boxed_and_rows_line_up() -> None:
    printer = RowPrinter(column_names=("USERID", "PAGEID", "DURATION"), width=62)
    top, names, bottom = printer.header_lines()
    assert top == bottom == printer.separator()
    assert top.startswith("+") and set(top) == {"+", "-"}
    assert [cell.strip() for cell in names.strip("|").split("|")] == ["USERID", "PAGEID", "DURATION"]
    row = printer.row_lines(["u1", None, 10])[0]
    assert len(row) == len(top)
    assert [cell.strip() for cell in row.strip("|").split("|")] == ["u1", "null", "10"]
    # ksqlDB's cell width: terminal width / columns - 2
    assert top == "+" + "+".join(["-" * 18] * 3) + "+"


def test_long_values_are_clipped_to_one_line_and_headers_wrap() -> None:
    printer = RowPrinter(column_names=("A_VERY_LONG_COLUMN_NAME", "B"), width=24)
    assert printer.cell_width == 10
    header = printer.header_lines()
    assert len(header) == 5  # the long name takes three lines instead of being cut
    assert "".join(line.split("|")[1] for line in header[1:-1]).replace(" ", "") == "A_VERY_LONG_COLUMN_NAME"
    (row,) = printer.row_lines(["x" * 30, [1, 2]])
    first = row.split("|")[1]
    assert len(first) == printer.cell_width and first.endswith("...")


def test_narrow_terminal_keeps_a_minimum_cell_width() -> None:
    printer = RowPrinter(column_names=tuple("ABCDEFGHIJ"), width=20)
    assert printer.cell_width == 5


def test_json_output_prints_header_object_and_row_arrays() -> None:
    printer = RowPrinter(
        column_names=("A", "B"), column_types=("STRING", "INTEGER"), query_id="q1", output=OutputFormat.JSON
    )
    (header,) = printer.header_lines()
    assert json.loads(header) == {
        "queryId": "q1",
        "columnNames": ["A", "B"],
        "columnTypes": ["STRING", "INTEGER"],
    }
    assert json.loads(printer.row_lines(["x", {"k": [1]}])[0]) == ["x", {"k": [1]}]
    assert printer.footer_lines() == []


def test_print_lines_without_columns_pass_through() -> None:
    printer = RowPrinter(column_names=())
    assert printer.header_lines() == []
    assert printer.row_lines(["rowtime: 1, key: a, value: b"]) == ["rowtime: 1, key: a, value: b"]
