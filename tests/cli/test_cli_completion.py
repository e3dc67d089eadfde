"""Tab completion from keywords and from the names the server reported."""

from __future__ import annotations

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from cli.completion import KsqlCompleter, SchemaCache


def _complete(completer: KsqlCompleter, text: str) -> list[str]:
    return [
        c.text for c in completer.get_completions(Document(text), CompleteEvent(completion_requested=True))
    ]


def _completer() -> KsqlCompleter:
    cache = SchemaCache(sources={"PAGEVIEWS": ("USERID", "PAGEID"), "lower_case": ("X",)}, stale=False)
    return KsqlCompleter(cache)


def test_sources_after_from_and_describe() -> None:
    completer = _completer()
    assert _complete(completer, "SELECT * FROM pa") == ["PAGEVIEWS"]
    assert _complete(completer, "DESCRIBE ") == ["PAGEVIEWS", "`lower_case`"]


def test_columns_and_keywords_follow_select() -> None:
    completer = _completer()
    assert "PAGEID" in _complete(completer, "SELECT pag")
    assert _complete(completer, "SELECT * FROM pageviews EMIT chan") == ["changes"]  # keeps the typed case
    assert "EMIT" in _complete(completer, "SELECT * FROM pageviews EM")


def test_shell_commands_and_property_names() -> None:
    completer = _completer()
    assert "spool" in _complete(completer, "sp")
    assert "auto.offset.reset" in _complete(completer, "SET 'auto")


def test_stale_cache_is_refreshed_once_on_tab() -> None:
    cache = SchemaCache()
    calls: list[int] = []

    def refresh() -> None:
        calls.append(1)
        cache.sources, cache.stale = {"FRESH": ()}, False

    completer = KsqlCompleter(cache, refresh)
    assert _complete(completer, "DESCRIBE f") == ["FRESH"]
    assert _complete(completer, "DESCRIBE f") == ["FRESH"]
    assert calls == [1]
