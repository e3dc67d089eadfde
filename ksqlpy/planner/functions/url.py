"""ksqlDB's URL functions: URL_ENCODE_PARAM, URL_DECODE_PARAM and the URL_EXTRACT_* family.

They follow ``java.net.URI``: parts are returned decoded, a missing part is NULL, and text that is
not a valid URI gives NULL. Parameter encoding is ``application/x-www-form-urlencoded`` (space as
``+``), as Java's ``URLEncoder``/``URLDecoder`` do.
"""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qsl, quote_plus, unquote, unquote_plus, urlsplit

from ksqlpy.planner.functions.misc import udf
from ksqlpy.planner.functions.registry import REGISTRY, Category, ScalarFunction, Variant


def _register(name: str, description: str, *variants: Variant) -> None:
    REGISTRY.register(ScalarFunction(name=name, category=Category.URL, description=description, variants=variants))


def _split(url: str) -> SplitResult:
    if any(c in url for c in " \"<>{}|\\^`"):
        raise ValueError(f"Illegal character in URL: {url}")
    return urlsplit(url)


def _or_none(text: str) -> str | None:
    return text or None


def _port(url: str) -> int | None:
    return _split(url).port


def _parameter(url: str, name: str) -> str | None:
    query = _split(url).query
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == name:
            return value
    return None


_EXTRACTORS = {
    "URL_EXTRACT_FRAGMENT": ("fragment", lambda u: _or_none(unquote(_split(u).fragment))),
    "URL_EXTRACT_HOST": ("host", lambda u: _split(u).hostname),
    "URL_EXTRACT_PATH": ("path", lambda u: unquote(_split(u).path)),
    "URL_EXTRACT_PROTOCOL": ("protocol", lambda u: _or_none(_split(u).scheme)),
    "URL_EXTRACT_QUERY": ("query", lambda u: _or_none(unquote(_split(u).query))),
}

for _name, (_part, _func) in _EXTRACTORS.items():
    _register(_name, f"Extracts the decoded {_part} of a URL, or NULL when it has none.",
              Variant("input STRING", returns="STRING",
                      compile=udf(f"ksql_{_name.lower()}", ("VARCHAR",), "VARCHAR", _func)))

_register("URL_EXTRACT_PORT", "Extracts the port of a URL, or NULL when it has none.",
          Variant("input STRING", returns="INT", compile=udf("ksql_url_extract_port", ("VARCHAR",), "INTEGER", _port)))
_register("URL_EXTRACT_PARAMETER", "Extracts the decoded value of the first query parameter with the given name.",
          Variant("input STRING, paramToFind STRING", returns="STRING",
                  compile=udf("ksql_url_extract_parameter", ("VARCHAR", "VARCHAR"), "VARCHAR", _parameter)))
_register("URL_ENCODE_PARAM", "Escapes a string so it can be used as a URL query parameter.",
          Variant("input STRING", returns="STRING",
                  compile=udf("ksql_url_encode_param", ("VARCHAR",), "VARCHAR",
                              lambda s: quote_plus(s, safe="*").replace("~", "%7E"))))
_register("URL_DECODE_PARAM", "Unescapes a URL query parameter.",
          Variant("input STRING", returns="STRING",
                  compile=udf("ksql_url_decode_param", ("VARCHAR",), "VARCHAR", unquote_plus)))
