"""ksqlpy errors -> ksqlDB REST errors, in one place.

Every 4xx/5xx body is one JSON object: ``generic_error`` (``error_code``, ``message``) or
``statement_error`` (adds ``statementText`` and the ``entities`` of statements of the same
request that had already succeeded). ``error_code`` is the HTTP status times 100 plus a
discriminator (see REST-REFERENCE section 1).

Errors from the engine are looked up by class name along the MRO in :data:`STATEMENT_CODES`, so
a subclass defined in any layer (``QueryEndpointError`` in the runtime) finds its code without
this module importing that layer. A :class:`ksqlpy.errors.KsqlpyError` is always the user's
doing and never becomes a 500; so is a ``RecursionError``, which only a statement too complex
for some recursive pass raises (the parser rejects deep nesting with its position; this is the
net below it). Anything else is an internal failure: logged with its context and answered
500/50000.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ksqlpy.errors import KsqlpyError

log = logging.getLogger("ksqlpy.server")


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """An HTTP status with ksqlDB's finer ``error_code``."""

    status: int
    code: int


BAD_REQUEST = ErrorCode(400, 40000)
BAD_STATEMENT = ErrorCode(400, 40001)
QUERY_ENDPOINT = ErrorCode(400, 40002)
TOO_MANY_QUERIES = ErrorCode(400, 40003)
HTTP2_ONLY = ErrorCode(400, 40004)
NOT_FOUND = ErrorCode(404, 40400)
PAYLOAD_TOO_LARGE = ErrorCode(413, 41300)
ASSERT_FAILED = ErrorCode(417, 41700)
RATE_LIMITED = ErrorCode(429, 42900)
INTERNAL = ErrorCode(500, 50000)
COMMAND_QUEUE_CATCHUP_TIMEOUT = ErrorCode(503, 50301)

#: Engine error class name -> code; the first name found along the error's MRO wins.
STATEMENT_CODES: dict[str, ErrorCode] = {
    "QueryEndpointError": QUERY_ENDPOINT,
    "TooManyQueriesError": TOO_MANY_QUERIES,
    "TooManyPushQueriesError": TOO_MANY_QUERIES,
    "AssertFailedError": ASSERT_FAILED,
    "AssertionFailedError": ASSERT_FAILED,
    "AssertionFailed": ASSERT_FAILED,
    "RateLimitError": RATE_LIMITED,
    "ParseError": BAD_STATEMENT,
    "AnalysisError": BAD_STATEMENT,
    "PlanError": BAD_STATEMENT,
    "SerdeError": BAD_STATEMENT,
    "TopicError": BAD_STATEMENT,
    "ExecutionError": BAD_STATEMENT,
    "NotFoundError": BAD_STATEMENT,
    "StateError": BAD_STATEMENT,
    "KsqlpyError": BAD_STATEMENT,
    "RecursionError": BAD_STATEMENT,
}

TOO_COMPLEX_MESSAGE = (
    "Statement is too complex: its expressions nest too deeply to be compiled. "
    "Flatten it: fewer nested operations per expression, IN (...) instead of long OR chains."
)

INTERNAL_MESSAGE = (
    "The server encountered an internal error when processing the query. "
    "Please consult the server logs for more information."
)


class RestError(Exception):
    """An error response decided by the server itself (bad JSON, missing field, unknown id)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return generic_error(self.code, self.message)


def code_of(error: BaseException) -> ErrorCode:
    """The REST code of an engine error (an unknown non-ksqlpy error is internal)."""
    if isinstance(error, RestError):
        return error.code
    for cls in type(error).__mro__:
        code = STATEMENT_CODES.get(cls.__name__)
        if code is not None:
            return code
    return INTERNAL


def generic_error(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"@type": "generic_error", "error_code": code.code, "message": message}


def statement_error(
    code: ErrorCode, message: str, statement_text: str, entities: Sequence[Any] = ()
) -> dict[str, Any]:
    return {
        "@type": "statement_error",
        "error_code": code.code,
        "message": message,
        "statementText": statement_text,
        "entities": list(entities),
    }


def message_of(error: BaseException) -> str:
    """What the client sees: the ksqlpy message, or a generic text for internal failures."""
    match error:
        case RestError():
            return error.message
        case KsqlpyError():
            return str(error)
        case RecursionError():
            return TOO_COMPLEX_MESSAGE
    return INTERNAL_MESSAGE


def describe_failure(
    error: BaseException,
    *,
    context: str,
    statement_text: str | None = None,
    entities: Sequence[Any] | None = None,
) -> tuple[ErrorCode, dict[str, Any]]:
    """Code and body for ``error``; internal failures are logged here with ``context``.

    With ``entities`` given (``/ksql``) the body is a ``statement_error``, else a
    ``generic_error``; ``statement_text`` defaults to the error's own ``statement_text``.
    """
    code = code_of(error)
    if code is INTERNAL:
        log.error("Internal error in %s", context, exc_info=error)
    elif isinstance(error, RecursionError):
        log.warning("Statement too complex in %s: %s", context, error)
    message = message_of(error)
    if entities is None:
        return code, generic_error(code, message)
    text = statement_text
    if isinstance(error, KsqlpyError) and error.statement_text:
        text = error.statement_text
    return code, statement_error(code, message, text or "", entities)
