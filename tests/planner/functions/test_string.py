"""String, bytes and regex functions evaluated through DuckDB (expected values: ksqlDB docs and QTT)."""

from __future__ import annotations

import random

import pytest
from conftest import compile_call, evaluate, lit

from ksqlpy import sqltypes as st

S, I = st.STRING, st.INTEGER


def test_substring_clamps_and_counts_negative_positions_from_the_end() -> None:
    assert evaluate("substring", [(S, ["stream", "stream", "stream", "abc", None]), (I, [1, -3, 0, 10, 1]),
                                  (I, [4, 2, 2, 1, 1])]) == ["stre", "ea", "st", "", None]
    assert evaluate("substring", [(S, ["stream", "stream"]), (I, [3, -2])]) == ["ream", "am"]
    assert evaluate("substring", [(st.BYTES, [b"stream"]), (I, [2]), (I, [2])]) == [b"tr"]


def test_concat_skips_nulls() -> None:
    assert evaluate("concat", [(S, ["a", None]), lit(None, None), lit("c", S)]) == ["ac", "c"]
    assert evaluate("concat", [(st.BYTES, [b"a", None]), (st.BYTES, [b"b", b"c"])]) == [b"ab", b"c"]


def test_concat_ws_null_separator_gives_null() -> None:
    assert evaluate("concat_ws", [(S, [",", None]), (S, ["a", "b"]), lit(None, None), lit("c", S)]) == ["a,c", None]
    assert evaluate("concat_ws", [(st.BYTES, [b"-"]), (st.BYTES, [b"a"]), (st.BYTES, [None]), (st.BYTES, [b"c"])]) == [b"a-c"]


def test_instr_matches_documented_examples() -> None:
    result = evaluate("instr", [lit("CORPORATE FLOOR", S), lit("OR", S), (I, [1, 3, 3, -3, -3]), (I, [1, 1, 2, 1, 2])])
    assert result == [2, 5, 14, 5, 2]
    assert evaluate("instr", [(S, [None, "abc", "abc"]), (S, ["b", "b", "MISSING"])]) == [0, 2, 0]


def test_initcap_lower_cases_the_rest_and_keeps_whitespace() -> None:
    assert evaluate("initcap", [(S, ["the  quick BROWN fox", None])]) == ["The  Quick Brown Fox", None]


def test_lpad_rpad() -> None:
    assert evaluate("lpad", [(S, ["Foo", "Foo", "", "123"]), (I, [7, 2, 2, 5]), (S, ["Bar", "Bar", "Bar", "0"])]) == [
        "BarBFoo", "Fo", "Ba", "00123"]
    assert evaluate("rpad", [(S, ["Foo", "Foo"]), (I, [7, -1]), lit("Bar", S)]) == ["FooBarB", None]
    assert evaluate("lpad", [(st.BYTES, [b"\x01"]), (I, [3]), lit(b"\x00", st.BYTES)]) == [b"\x00\x00\x01"]


def test_split_keeps_empty_parts_and_splits_chars_on_empty_delimiter() -> None:
    assert evaluate("split", [(S, ["a,b,,c", "abc", ""]), (S, [",", "", ","])]) == [["a", "b", "", "c"], ["a", "b", "c"], [""]]


def test_elt_and_field() -> None:
    assert evaluate("elt", [(I, [0, 1, 2, 3, -1]), lit("a", S), lit("b", S)]) == [None, "a", "b", None, None]
    assert evaluate("field", [(S, ["b", "z", None]), lit("a", S), lit("b", S)]) == [2, 0, 0]


def test_chr() -> None:
    assert evaluate("chr", [(I, [75, 22909, -1])]) == ["K", "好", None]
    assert evaluate("chr", [(S, ["\\u004b", "\\u597d", "x"])]) == ["K", "好", None]


@pytest.mark.parametrize(
    ("text", "src", "dst", "expected"),
    [("4578616d706c6521", "hex", "ascii", "Example!"), ("Example!", "ascii", "base64", "RXhhbXBsZSE="),
     ("RXhhbXBsZSE=", "base64", "hex", "4578616d706c6521"), ("Ex", "utf8", "hex", "4578"),
     ("Ex", "utf8", "nope", None)],
)
def test_encode(text: str, src: str, dst: str, expected: str | None) -> None:
    assert evaluate("encode", [(S, [text]), lit(src, S), lit(dst, S)]) == [expected]


def test_to_bytes_and_from_bytes() -> None:
    assert evaluate("to_bytes", [(S, ["AQID", "0102"]), (S, ["base64", "hex"])]) == [b"\x01\x02\x03", b"\x01\x02"]
    assert evaluate("from_bytes", [(st.BYTES, [b"\x01\x02", b"ab"]), (S, ["hex", "utf8"])]) == ["0102", "ab"]


def test_regex_family() -> None:
    assert evaluate("regexp_extract", [lit("(.*) (.*)", S), (S, ["hello there", "x"]), lit(2, I)]) == ["there", None]
    assert evaluate("regexp_extract", [lit("a", S), (S, ["cat"]), lit(3, I)]) == [None]
    assert evaluate("regexp_extract_all", [lit("(\\w+) (\\w+)", S), (S, ["hello there nice day"]), lit(2, I)]) == [["there", "day"]]
    assert evaluate("regexp_replace", [(S, ["foobar"]), lit("(o+)", S), lit("[$1]", S)]) == ["f[oo]bar"]
    assert evaluate("regexp_split_to_array", [(S, ["aXbXXc"]), lit("X+", S)]) == [["a", "b", "c"]]
    # capturing groups add nothing (Guava's Splitter); empty strings stay at both ends
    assert evaluate("regexp_split_to_array", [(S, ["abxcd", "x"]), lit("(x)", S)]) == [["ab", "cd"], ["", ""]]


def test_mask_family_matches_documented_examples() -> None:
    text = (S, ["My Test $123"])
    assert evaluate("mask", [text]) == ["Xx-Xxxx--nnn"]
    assert evaluate("mask", [text, lit("*", S), lit(None, S), lit("1", S), lit(None, S)]) == ["*y *est $111"]
    assert evaluate("mask_keep_left", [text, lit(4, I)]) == ["My Txxx--nnn"]
    assert evaluate("mask_keep_right", [text, lit(4, I)]) == ["Xx-Xxxx-$123"]
    assert evaluate("mask_left", [text, lit(4, I)]) == ["Xx-Xest $123"]
    assert evaluate("mask_right", [text, lit(4, I)]) == ["My Test -nnn"]


def test_trim_len_md5_case() -> None:
    assert evaluate("trim", [(S, ["  a b \t\n"])]) == ["a b"]
    assert evaluate("len", [(S, ["abc", None])]) == [3, None]
    assert evaluate("len", [(st.BYTES, [b"ab"])]) == [2]
    assert evaluate("md5", [(S, ["a"])]) == ["0cc175b9c0f1b6a831c399e269772661"]
    assert evaluate("ucase", [(S, ["aB"])]) == ["AB"]
    assert evaluate("lcase", [(S, ["aB"])]) == ["ab"]


def test_replace_and_split_to_map() -> None:
    assert evaluate("replace", [(S, ["abcb"]), lit("b", S), lit("X", S)]) == ["aXcX"]
    assert evaluate("split_to_map", [(S, ["apple:=green/cherry:=red"]), lit("/", S), lit(":=", S)]) == [
        {"apple": "green", "cherry": "red"}]


def test_uuid_forms() -> None:
    assert len(evaluate("uuid", [])[0]) == 36
    raw = bytes(range(16))
    assert evaluate("uuid", [(st.BYTES, [raw])]) == ["00010203-0405-0607-0809-0a0b0c0d0e0f"]


def test_mask_in_duckdb_masks_as_the_row_wise_function_does() -> None:
    """ASCII text is masked in DuckDB, other text row by row: the same either way."""
    from ksqlpy.planner.functions.string import _masker

    rnd = random.Random(3)
    alphabet = [chr(c) for c in range(0, 128)] + list("éÉß²٣ǅΩω中🙂")
    texts: list[str | None] = ["", None, "'\\\"%_", "My Test $123", "\x00A"]
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(12))) for _ in range(2000)]
    texts += ["".join(chr(rnd.randrange(1, 128)) for _ in range(rnd.randrange(30))) for _ in range(2000)]
    sql, _, _ = compile_call("mask", [(S, ["x"])])
    assert "regexp_replace" in sql.lower()
    mask = _masker("all", False)
    assert evaluate("mask", [(S, texts)]) == [mask(t) for t in texts]


def test_replace_and_split_with_a_constant_needle_run_in_duckdb_as_the_row_wise_functions_do() -> None:
    from ksqlpy.planner.functions.string import _java_replace, _split

    rnd = random.Random(5)
    alphabet = list("ab,, .é\u00fc-") + ["ab", ", "]
    texts: list[str | None] = ["", ",", ",,", "a,,b,", None, "é,ü"]
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(10))) for _ in range(1000)]
    for needle in [",", ", ", "ab", "é", ",,"]:
        assert "string_split" in compile_call("split", [(S, ["x"]), lit(needle, S)])[0].lower()
        assert evaluate("split", [(S, texts), lit(needle, S)]) == [None if t is None else _split(t, needle) for t in texts]
        for new in ["", "XY", "%"]:
            assert evaluate("replace", [(S, texts), lit(needle, S), lit(new, S)]) == [
                None if t is None else _java_replace(t, needle, new) for t in texts
            ]
    # an empty needle is Java's own case: row by row
    assert "string_split" not in compile_call("split", [(S, ["x"]), lit("", S)])[0].lower()
    assert evaluate("split", [(S, ["abc", ""]), lit("", S)]) == [["a", "b", "c"], [""]]
    assert evaluate("replace", [(S, ["ab", ""]), lit("", S), lit("-", S)]) == ["-a-b-", "-"]


def test_lpad_and_rpad_with_constants_run_in_duckdb_as_the_row_wise_functions_do() -> None:
    from ksqlpy.planner.functions.string import _pad

    rnd = random.Random(9)
    texts: list[str | None] = ["", None, "é", "hello"] + [
        "".join(rnd.choice("abcé ü-") for _ in range(rnd.randrange(15))) for _ in range(500)
    ]
    for name, left in (("lpad", True), ("rpad", False)):
        for length in (0, 1, 3, 8, 20):
            for padding in ("*", "ab", "üx"):
                args = [(S, texts), lit(length, I), lit(padding, S)]
                assert f"ksql_{name}" not in compile_call(name, args)[0].lower()  # DuckDB's own
                assert evaluate(name, args) == [None if t is None else _pad(left)(t, length, padding) for t in texts]
        # a negative length or an empty padding: NULL, row by row
        assert evaluate(name, [(S, ["ab"]), lit(-1, I), lit("*", S)]) == [None]
        assert evaluate(name, [(S, ["ab"]), lit(3, I), lit("", S)]) == [None]


def test_instr_of_two_arguments_runs_in_duckdb_as_the_row_wise_function_does() -> None:
    from ksqlpy.planner.functions.string import _instr

    rnd = random.Random(11)
    alphabet = list("abcé中 ")
    texts: list[str | None] = ["", None, "abc"] + ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(8))) for _ in range(400)]
    subs: list[str | None] = ["", None, "a", "bc", "é中", " ", "zz"] * 58
    subs = subs[: len(texts)]
    assert evaluate("instr", [(S, texts), (S, subs)]) == [_instr(t, s) for t, s in zip(texts, subs, strict=True)]


@pytest.mark.parametrize("name", ["mask_left", "mask_right", "mask_keep_left", "mask_keep_right"])
def test_mask_left_right_and_keep_in_duckdb_mask_as_the_row_wise_functions_do(name: str) -> None:
    from ksqlpy.planner.functions.string import _masker

    rnd = random.Random(13)
    alphabet = [chr(c) for c in range(1, 128)] + list("éÉß²中")
    texts: list[str | None] = ["", None, "My Test $123"]
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(10))) for _ in range(500)]
    mask = _masker(name, False)
    for count in (0, 1, 3, 7, 40):
        args = [(S, texts), lit(count, I)]
        assert "regexp_replace" in compile_call(name, args)[0].lower()  # ASCII text masked in DuckDB
        assert evaluate(name, args) == [mask(t, count) for t in texts], count
    # a negative count: NULL (ksqlDB's function throws), row by row
    assert "regexp_replace" not in compile_call(name, [(S, ["ab"]), lit(-1, I)])[0].lower()
    assert evaluate(name, [(S, ["ab", None]), lit(-1, I)]) == [None, None]
