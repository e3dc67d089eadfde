"""Where the shell's output goes: the terminal (through rich), and the spool file if one is open.

Results are printed as plain text (no markup, no automatic highlighting) so tables keep their
exact layout; errors are red, with the statement line and a caret under the position the
server reported (``line 1:8: ...``). A spinner shows while a request is under way, only on a
terminal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.text import Text

_POSITION = re.compile(r"line (\d+):(\d+)")


def caret_lines(message: str, statement: str | None) -> list[str]:
    """The statement line an error points at and a caret under its column, or [] if unknown.

    ksqlDB errors start with ``line L:C:`` (1-based). The caret is placed on a copy of that
    line with tabs widened to one space, so that it lines up whatever the tab width.
    """
    match = _POSITION.search(message)
    if not match or not statement:
        return []
    line_no, column = int(match.group(1)), int(match.group(2))
    lines = statement.split("\n")
    if not 1 <= line_no <= len(lines):
        return []
    line = lines[line_no - 1].replace("\t", " ").rstrip()
    column = max(1, min(column, len(line) + 1))
    return [line, " " * (column - 1) + "^"]


class Terminal:
    """Output of one shell: results, notices, errors, a spool file."""

    def __init__(self, console: Console | None = None, errors: Console | None = None) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.errors = errors or Console(stderr=True, highlight=False, soft_wrap=True)
        self._spool: TextIO | None = None
        self.spool_path: Path | None = None

    @property
    def width(self) -> int:
        return self.console.width

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal

    def lines(self, lines: Iterable[str]) -> None:
        """Print result lines exactly as given."""
        for line in lines:
            self.console.print(line, markup=False, highlight=False, emoji=False)
            self._to_spool(line)

    def notice(self, text: str) -> None:
        """A message of the shell itself (property set, spool started, ...)."""
        self.console.print(Text(text, style="dim"))
        self._to_spool(text)

    def error(self, message: str, statement: str | None = None) -> None:
        """An error in red; with a position, the statement line and a caret under it."""
        self.errors.print(Text(message, style="bold red"))
        self._to_spool(message)
        for index, line in enumerate(caret_lines(message, statement)):
            self.errors.print(Text(line, style="bold red" if index else ""), overflow="ignore", crop=False)
            self._to_spool(line)

    def after_interrupt(self) -> None:
        """Go back to the start of the line, over the ``^C`` the terminal echoed there."""
        if self.interactive:
            self.console.file.write("\r")
            self.console.file.flush()

    def echo(self, text: str) -> None:
        """Record an entered statement in the spool file only (the terminal already shows it)."""
        self._to_spool(text)

    def status(self, text: str) -> AbstractContextManager[object]:
        """A spinner with ``text`` while a request runs (nothing when not on a terminal)."""
        if not self.interactive:
            return nullcontext()
        return self.console.status(text, spinner="dots")

    def start_spool(self, path: Path) -> None:
        self.stop_spool(quiet=True)
        self._spool = path.open("w", encoding="utf-8")
        self.spool_path = path

    def stop_spool(self, *, quiet: bool = False) -> Path | None:
        path = self.spool_path
        if self._spool is not None:
            self._spool.close()
        self._spool, self.spool_path = None, None
        return None if quiet else path

    def _to_spool(self, text: str) -> None:
        if self._spool is not None:
            self._spool.write(text + "\n")
            self._spool.flush()
