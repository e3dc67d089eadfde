"""The prompt: a prompt_toolkit line editor around :class:`cli.shell.Shell`.

Enter runs the input once it holds complete statements (a ``;`` outside quotes and
comments) or a shell command; otherwise it starts a new line, so statements may span
lines. History persists in ``~/.ksqlpy_history``; input is highlighted and Tab completes.
Ctrl-C clears the input (or stops a running query); Ctrl-D leaves.
"""

from __future__ import annotations

from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.filters import Condition
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent

from cli.commands import is_shell_line
from cli.completion import KsqlCompleter
from cli.highlight import STYLE, KsqlLexer
from cli.shell import Shell, ShellExit
from cli.splitter import is_complete

PROMPT = "ksql> "
CONTINUATION = "    > "


def _key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    def ready(text: str) -> bool:
        return not text.strip() or is_complete(text) or is_shell_line(text)

    @bindings.add("enter", filter=Condition(lambda: True))
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        # Only the end of the input decides: Enter in the middle of a statement adds a line.
        if buffer.document.is_cursor_at_the_end and ready(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    return bindings


def _history(path: Path | None) -> FileHistory | InMemoryHistory:
    if path is None:
        return InMemoryHistory()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


def run_repl(shell: Shell, history_path: Path | None) -> int:
    """Read and run statements until exit or Ctrl-D; the exit status is always 0."""
    session: PromptSession[str] = PromptSession(
        message=PROMPT,
        multiline=True,
        prompt_continuation=lambda width, line_number, wrap_count: CONTINUATION,
        key_bindings=_key_bindings(),
        history=_history(history_path),
        lexer=KsqlLexer(),
        style=STYLE,
        completer=KsqlCompleter(shell.schema, shell.refresh_schema) if shell.schema is not None else None,
        complete_while_typing=False,
        enable_history_search=False,
    )
    while True:
        try:
            text = session.prompt()
        except KeyboardInterrupt:
            continue
        except EOFError:
            break
        if not text.strip():
            continue
        shell.history.append(text)
        try:
            shell.run_text(text)
        except ShellExit:
            break
        except KeyboardInterrupt:
            # Ctrl-C while a /ksql request ran: the answer is lost, the shell stays.
            shell.client.reset()
            shell.terminal.error("Interrupted; the statement may still have run on the server.")
    shell.terminal.lines(["Exiting ksqlpy."])
    return 0
