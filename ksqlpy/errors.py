"""The one error tree of ksqlpy.

Every layer raises a subclass of :class:`KsqlpyError`. Each error carries a message worded like
ksqlDB's where ksqlDB has one, an optional :class:`Position` (1-based line and column) and an
optional hint. ``server/errors.py`` maps these to ksqlDB's REST error codes in one place.

This module imports nothing from ksqlpy, so every layer may use it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Position:
    """A place in statement text: 1-based line, 1-based column (ksqlDB prints ``line 1:8``)."""

    line: int
    column: int

    def __str__(self) -> str:
        return f"line {self.line}:{self.column}"


class KsqlpyError(Exception):
    """Base of all ksqlpy errors.

    ``message`` is the text a user sees. When a position is known the rendered text starts with
    ``line L:C: `` as ksqlDB's does.
    """

    def __init__(
        self,
        message: str,
        *,
        pos: Position | None = None,
        hint: str | None = None,
        statement_text: str | None = None,
    ) -> None:
        self.message = message
        self.pos = pos
        self.hint = hint
        self.statement_text = statement_text
        super().__init__(self.render())

    def render(self) -> str:
        text = f"{self.pos}: {self.message}" if self.pos is not None else self.message
        return text

    def __str__(self) -> str:
        return self.render()


class ParseError(KsqlpyError):
    """The statement text does not follow the grammar (ksqlDB: ``ParseFailedException``)."""


class AnalysisError(KsqlpyError):
    """The statement parses but is not valid: unknown names, type mistakes, unsupported forms
    (ksqlDB: ``KsqlStatementException`` / ``KsqlException``)."""


class NodeLocationError(AnalysisError):
    """An AnalysisError ksqlDB words with its node location (``Line: 3, Col: 38: ...``) rather
    than the parser's ``line 3:38:``: unknown and ambiguous columns, for example. ``stage`` goes
    before the location, as ksqlDB's ``Exception while preparing statement: `` does."""

    def __init__(
        self,
        message: str,
        *,
        pos: Position | None = None,
        hint: str | None = None,
        statement_text: str | None = None,
        stage: str = "",
    ) -> None:
        self.stage = stage
        super().__init__(message, pos=pos, hint=hint, statement_text=statement_text)

    def render(self) -> str:
        if self.pos is None:
            return self.stage + self.message
        return f"{self.stage}Line: {self.pos.line}, Col: {self.pos.column}: {self.message}"


class PlanError(KsqlpyError):
    """A valid statement could not be turned into an executable plan."""


class SerdeError(KsqlpyError):
    """A record could not be serialized or deserialized."""


class StateError(KsqlpyError):
    """Materialized state could not be read or written."""


class TopicError(KsqlpyError):
    """A topic could not be created, read or written (ksqlDB: ``KafkaTopicExistsException`` …)."""


class ExecutionError(KsqlpyError):
    """A statement failed while executing (e.g. INSERT VALUES could not be produced)."""


class NotFoundError(KsqlpyError):
    """A named thing (query id, command id, source) does not exist."""
