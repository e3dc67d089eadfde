"""Print query results row by row, as ksqlDB's CLI does for push and pull queries.

A push query never ends on its own, so column widths cannot be measured first: every cell
gets the same width (the terminal width shared between the columns, at least 5), long values
are clipped with ``...`` and the header is boxed with ``+----+`` lines (ksqlDB's
``TabularRow``). ``OUTPUT JSON`` prints the header object and each row as one JSON line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cli.render import OutputFormat, java_text

_MIN_CELL_WIDTH = 5
_CLIPPED = "..."


@dataclass(frozen=True, slots=True, kw_only=True)
class RowPrinter:
    """Formats the header and rows of one query result."""

    column_names: tuple[str, ...]
    column_types: tuple[str, ...] = ()
    query_id: str | None = None
    width: int = 80
    output: OutputFormat = OutputFormat.TABULAR

    @property
    def cell_width(self) -> int:
        if not self.column_names:
            return _MIN_CELL_WIDTH
        return max(self.width // len(self.column_names) - 2, _MIN_CELL_WIDTH)

    def separator(self) -> str:
        """The ``+-----+-----+`` line above and below the header (and after the last row)."""
        if not self.column_names:
            return ""
        return "+" + "+".join("-" * self.cell_width for _ in self.column_names) + "+"

    def header_lines(self) -> list[str]:
        if self.output is OutputFormat.JSON:
            header = {
                "queryId": self.query_id,
                "columnNames": list(self.column_names),
                "columnTypes": list(self.column_types),
            }
            return [json.dumps(header)]
        if not self.column_names:
            return []
        # Headers wrap onto more lines rather than being clipped, so every name stays readable.
        return [self.separator(), *self._cells(self.column_names, wrap=True), self.separator()]

    def row_lines(self, values: Sequence[Any]) -> list[str]:
        if self.output is OutputFormat.JSON:
            return [json.dumps(list(values))]
        if not self.column_names:
            # PRINT output: a line of text, shown as it came.
            return [" ".join(java_text(v) for v in values)]
        return self._cells([java_text(v) for v in values], wrap=False)

    def footer_lines(self) -> list[str]:
        if self.output is OutputFormat.JSON or not self.column_names:
            return []
        return [self.separator()]

    def _cells(self, texts: Sequence[str], *, wrap: bool) -> list[str]:
        size = self.cell_width
        chunks = [_split_fixed(text, size) for text in texts]
        height = max((len(c) for c in chunks), default=1)
        shown = height if wrap else 1
        lines = []
        for line_no in range(shown):
            cells = []
            for parts in chunks:
                cell = parts[line_no] if line_no < len(parts) else ""
                clipped = len(parts) > shown and line_no == shown - 1
                cell = cell.ljust(size)
                cells.append(cell[: size - len(_CLIPPED)] + _CLIPPED if clipped else cell)
            lines.append("|" + "|".join(cells) + "|")
        return lines


def _split_fixed(text: str, size: int) -> list[str]:
    """Cut a cell value into pieces of ``size`` characters (newlines count as spaces)."""
    flat = text.replace("\n", " ")
    return [flat[i : i + size] for i in range(0, len(flat), size)] or [""]
