"""Statements and commands the shell handles itself instead of sending to the server.

``SET``/``UNSET`` keep request properties and ``DEFINE``/``UNDEFINE`` keep session variables
on the client, which sends them with every request (as ksqlDB's CLI does); ``RUN SCRIPT``,
``SPOOL``, ``OUTPUT``, ``help``, ``exit`` and friends never reach the server. Each form is a
regular expression mapped to a frozen command class (:data:`_FORMS`); :func:`parse_command`
returns None for anything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from cli.render import OutputFormat
from cli.vocabulary import SHELL_COMMANDS


@dataclass(frozen=True, slots=True)
class SetProperty:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class UnsetProperty:
    name: str


@dataclass(frozen=True, slots=True)
class DefineVariable:
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class UndefineVariable:
    name: str


@dataclass(frozen=True, slots=True)
class RunScript:
    path: str


@dataclass(frozen=True, slots=True)
class Spool:
    """``SPOOL file`` starts writing the session to a file; ``SPOOL OFF`` (path None) stops."""

    path: str | None


@dataclass(frozen=True, slots=True)
class Output:
    """``OUTPUT`` shows the format; ``OUTPUT JSON|TABULAR`` changes it."""

    format: OutputFormat | None


@dataclass(frozen=True, slots=True)
class Server:
    """``SERVER`` shows the server address; ``SERVER url`` switches to another server."""

    url: str | None


@dataclass(frozen=True, slots=True)
class Simple:
    """A command without arguments: help, exit, quit, clear, history, version."""

    name: str


@dataclass(frozen=True, slots=True)
class Invalid:
    """A shell command with wrong arguments; ``message`` says how to write it."""

    message: str


Command = (
    SetProperty
    | UnsetProperty
    | DefineVariable
    | UndefineVariable
    | RunScript
    | Spool
    | Output
    | Server
    | Simple
    | Invalid
)

_QUOTED = r"'((?:[^']|'')*)'"
_NAME = r"([A-Za-z_][A-Za-z0-9_]*)"


def _unquote(text: str) -> str:
    """The contents of a ``'...'`` literal, with ``''`` read as one quote."""
    return text.replace("''", "'")


def _output(match: re.Match[str]) -> Command:
    wanted = match.group(1)
    if not wanted:
        return Output(None)
    try:
        return Output(OutputFormat(wanted.upper()))
    except ValueError:
        valid = ", ".join(f.value for f in OutputFormat)
        return Invalid(f"Invalid output format: '{wanted}' (valid formats: {valid})")


def _spool(match: re.Match[str]) -> Command:
    target = match.group(1)
    if not target:
        return Invalid("Usage: SPOOL <file> | SPOOL OFF")
    target = target.strip()
    if target.startswith("'") and target.endswith("'") and len(target) > 1:
        target = _unquote(target[1:-1])
    return Spool(None if target.upper() == "OFF" else target)


# Statement forms, tried in order against the statement without its trailing ';'.
_FORMS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], Command]], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE | re.DOTALL), build)
    for pattern, build in (
        (rf"SET\s+{_QUOTED}\s*=\s*{_QUOTED}", lambda m: SetProperty(_unquote(m[1]), _unquote(m[2]))),
        (rf"UNSET\s+{_QUOTED}", lambda m: UnsetProperty(_unquote(m[1]))),
        (rf"DEFINE\s+{_NAME}\s*=\s*{_QUOTED}", lambda m: DefineVariable(m[1], _unquote(m[2]))),
        (rf"UNDEFINE\s+{_NAME}", lambda m: UndefineVariable(m[1])),
        (rf"RUN\s+SCRIPT\s+{_QUOTED}", lambda m: RunScript(_unquote(m[1]))),
        (r"RUN\s+SCRIPT\s+(\S+)", lambda m: RunScript(m[1])),
        (r"RUN\s+SCRIPT", lambda m: Invalid("Usage: RUN SCRIPT '<path to file>'")),
        (r"SPOOL(?:\s+(.+))?", _spool),
        (r"OUTPUT(?:\s+(\S+))?", _output),
        (r"SERVER(?:\s+(\S+))?", lambda m: Server(m[1])),
        (r"(HELP|EXIT|QUIT|CLEAR|HISTORY|VERSION)", lambda m: Simple(m[1].lower())),
        # Malformed SET/DEFINE would otherwise reach the server, which keeps no session state.
        (r"SET\b.*", lambda m: Invalid("Usage: SET '<property>'='<value>';")),
        (r"UNSET\b.*", lambda m: Invalid("Usage: UNSET '<property>';")),
        (r"DEFINE\b.*", lambda m: Invalid("Usage: DEFINE <name> = '<value>';")),
        (r"UNDEFINE\b.*", lambda m: Invalid("Usage: UNDEFINE <name>;")),
    )
)


def parse_command(statement: str) -> Command | None:
    """The shell command ``statement`` stands for, or None if it is for the server."""
    text = statement.strip().removesuffix(";").strip()
    for pattern, build in _FORMS:
        match = pattern.fullmatch(text)
        if match:
            return build(match)
    return None


def is_shell_line(text: str) -> bool:
    """True for input that runs on Enter without a ``;`` (``help``, ``exit``, ``spool f`` ...)."""
    words = text.strip().removesuffix(";").lower().split()
    if not words:
        return False
    first_two = " ".join(words[:2])
    return words[0] in SHELL_COMMANDS or first_two in SHELL_COMMANDS


def statement_kind(statement: str) -> str:
    """The first keyword of a statement, upper-cased (``SELECT``, ``CREATE``, ...)."""
    match = re.match(r"\s*([A-Za-z]+)", statement)
    return match.group(1).upper() if match else ""
