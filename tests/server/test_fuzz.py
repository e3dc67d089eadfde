"""Mutated conformance statements against a real server: never a 5xx, syntax errors positioned.

Statements come from ksqlDB's conformance cases (``../shared/qtt/query-validation-tests``, or
``$KSQLPY_QTT``), read at test time. A seeded generator mutates them the way a careless or
hostile client would (truncation, dropped and repeated tokens, deep nesting, huge literals,
random characters and raw bytes) and posts each one to ``/ksql`` over real HTTP. Every answer
must be a ksqlDB error or success, never 500; every syntax error must say where it is.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.server.conftest import RunningServer, ServerThread, open_engine, server_config

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("KSQLPY_QTT", REPO.parent / "shared" / "qtt")) / "query-validation-tests"
SEED = 20261206
MUTATIONS = 300
POSITIONED = re.compile(r"^line \d+:\d+: ")
TOKEN = re.compile(r"'(?:[^']|'')*'|`[^`]*`|\w+|\S")

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"no conformance cases at {CORPUS}")


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    config = server_config()
    engine = open_engine(config)
    from ksqlpy.server.app import create_app

    thread = ServerThread(create_app(engine, config), config)
    thread.start()
    port = config.listeners[0].port
    try:
        yield RunningServer(url=f"http://127.0.0.1:{port}", port=port, engine=engine)
    finally:
        thread.stop()
        engine.close()


def corpus_statements() -> list[str]:
    statements: list[str] = []
    for path in sorted(CORPUS.glob("*.json")):
        for case in json.loads(path.read_text(encoding="utf-8")).get("tests", []):
            fmt = (case.get("format") or ["JSON"])[0]
            statements.extend(s.replace("{FORMAT}", fmt) for s in case.get("statements", []))
    return statements


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text) or [text]


def truncate(rng: random.Random, text: str) -> str:
    return text[: rng.randrange(max(len(text), 1))]


def drop_token(rng: random.Random, text: str) -> str:
    tokens = _tokens(text)
    del tokens[rng.randrange(len(tokens))]
    return " ".join(tokens)


def repeat_token(rng: random.Random, text: str) -> str:
    tokens = _tokens(text)
    i = rng.randrange(len(tokens))
    tokens.insert(i, tokens[i])
    return " ".join(tokens)


def nest_deeply(rng: random.Random, text: str) -> str:
    depth = rng.choice([150, 400, 1500])
    nested = rng.choice(
        [
            "(" * depth + "1" + ")" * depth,
            "CASE WHEN TRUE THEN " * depth + "1" + " END" * depth,
            " AND ".join(["1 = 1"] * depth),
            "ARRAY<" * depth + "INT" + ">" * depth,
            "ARRAY[" * depth + "1" + "]" * depth,
        ]
    )
    tokens = _tokens(text)
    i = rng.randrange(len(tokens))
    return " ".join([*tokens[:i], nested, *tokens[i + 1 :]])


def huge_literal(rng: random.Random, text: str) -> str:
    literal = rng.choice(["9" * 5000, "9" * 5000 + ".5", "1e" + "9" * 400, "'" + "x" * 20000 + "'"])
    tokens = _tokens(text)
    numbers = [i for i, t in enumerate(tokens) if t.isdigit() or t.startswith("'")]
    i = rng.choice(numbers) if numbers else rng.randrange(len(tokens))
    tokens[i] = literal
    return " ".join(tokens)


def random_characters(rng: random.Random, text: str) -> str:
    # Anything JSON can carry: control characters, NUL, quotes, non-BMP (no lone surrogates).
    alphabet = [chr(c) for c in (*range(127), 0x2028, 0xFEFF, 0x1F600, 0x10FFFF)]
    noise = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 12)))
    i = rng.randrange(len(text) + 1)
    return text[:i] + noise + text[i:]


MUTATORS: tuple[Callable[[random.Random, str], str], ...] = (
    truncate,
    drop_token,
    repeat_token,
    nest_deeply,
    huge_literal,
    random_characters,
)


def mutations() -> list[str]:
    rng = random.Random(SEED)
    statements = corpus_statements()
    return [rng.choice(MUTATORS)(rng, rng.choice(statements)) for _ in range(MUTATIONS)]


def post_ksql(client: httpx.Client, server: RunningServer, content: bytes) -> httpx.Response:
    return client.post(
        f"{server.url}/ksql",
        content=content,
        headers={"Content-Type": "application/vnd.ksql.v1+json; charset=utf-8"},
    )


def test_mutated_statements_never_get_5xx_and_syntax_errors_have_positions(server: RunningServer) -> None:
    syntax_errors = 0
    with httpx.Client(timeout=60) as client:
        for text in mutations():
            response = post_ksql(client, server, orjson.dumps({"ksql": text, "streamsProperties": {}}))
            assert response.status_code < 500, (text[:300], response.text[:500])
            if response.status_code == 200:
                # A mutation that still runs may start a query; keep the server light.
                post_ksql(client, server, orjson.dumps({"ksql": "TERMINATE ALL;"}))
                continue
            body = response.json()
            message = body.get("message", "")
            assert body["@type"] in ("statement_error", "generic_error"), body
            if "Syntax Error" in message or "too deeply nested" in message or "numeric literal" in message:
                syntax_errors += 1
                assert POSITIONED.match(message), (text[:300], message[:300])
    # The generator must actually reach the parser's error paths.
    assert syntax_errors >= MUTATIONS // 4


def test_raw_bytes_in_the_body_are_bad_requests(server: RunningServer) -> None:
    rng = random.Random(SEED)
    statements = corpus_statements()
    with httpx.Client(timeout=60) as client:
        for _ in range(30):
            body = orjson.dumps({"ksql": rng.choice(statements)})
            i = rng.randrange(len(body) + 1)
            noisy = body[:i] + rng.randbytes(rng.randrange(1, 16)) + body[i:]
            response = post_ksql(client, server, noisy)
            assert response.status_code < 500, (noisy[:300], response.text[:500])


@pytest.mark.parametrize(
    "text",
    [
        "SELECT " + "(" * 500 + "1" + ")" * 500 + " FROM s EMIT CHANGES;",
        "CREATE STREAM s (a " + "ARRAY<" * 400 + "INT" + ">" * 400 + ") WITH (kafka_topic='t');",
        "SELECT " + "9" * 5000 + ".5 FROM s EMIT CHANGES;",
    ],
    ids=["parentheses", "array-type", "decimal-literal"],
)
def test_deep_or_huge_statements_are_statement_errors_with_a_position(
    server: RunningServer, text: str
) -> None:
    response = httpx.post(f"{server.url}/ksql", content=orjson.dumps({"ksql": text}), timeout=60)
    assert response.status_code == 400
    body = response.json()
    assert body["@type"] == "statement_error" and body["error_code"] == 40001
    assert POSITIONED.match(body["message"]), body["message"][:200]


def test_expressions_too_complex_to_compile_are_statement_errors(server: RunningServer) -> None:
    # Within the parser's nesting limit, but deeper than SQL generation can recurse.
    create = (
        "CREATE STREAM fuzz_src (k VARCHAR KEY, a INT) "
        "WITH (kafka_topic='fuzz_src', value_format='JSON', partitions=1);"
    )
    assert (
        httpx.post(f"{server.url}/ksql", content=orjson.dumps({"ksql": create}), timeout=60).status_code
        == 200
    )
    text = "CREATE STREAM fuzz_sum AS SELECT k, " + " + ".join(["a"] * 100) + " AS s FROM fuzz_src;"
    response = httpx.post(f"{server.url}/ksql", content=orjson.dumps({"ksql": text}), timeout=60)
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error_code"] == 40001
    assert "too complex" in response.json()["message"] or POSITIONED.match(response.json()["message"])
