"""The filter parser: exact ASTs for valid filters, exact positions and messages for invalid ones."""

from __future__ import annotations

import pytest

from tracetune.errors import InvalidInput
from tracetune.query.filter_lang import Call, Ident, ListLit, Literal, parse_filter, tokenize

VALID = [
    (
        'eq(run_type, "llm")',
        Call("eq", (Ident("run_type", 3), Literal("llm", 13)), 0),
    ),
    (
        'and(eq(run_type, "llm"), eq(name, "ChatOpenAI"))',
        Call(
            "and",
            (
                Call("eq", (Ident("run_type", 7), Literal("llm", 17)), 4),
                Call("eq", (Ident("name", 28), Literal("ChatOpenAI", 34)), 25),
            ),
            0,
        ),
    ),
    (
        'has(metadata, \'{"user": "u1"}\')',
        Call("has", (Ident("metadata", 4), Literal('{"user": "u1"}', 14)), 0),
    ),
    (
        r"""eq(name, 'it\'s \"x\" \\ \/ \n\t \u00e9')""",
        Call("eq", (Ident("name", 3), Literal('it\'s "x" \\ / \n\t \u00e9', 9)), 0),
    ),
    ('eq(name, "")', Call("eq", (Ident("name", 3), Literal("", 9)), 0)),
    ("gt(latency, 2.5)", Call("gt", (Ident("latency", 3), Literal(2.5, 12)), 0)),
    ("eq(total_tokens, 0)", Call("eq", (Ident("total_tokens", 3), Literal(0, 17)), 0)),
    ("gt(x, -3)", Call("gt", (Ident("x", 3), Literal(-3, 6)), 0)),
    ("gt(x, 1e3)", Call("gt", (Ident("x", 3), Literal(1000.0, 6)), 0)),
    ("lt(x, -2.5E-2)", Call("lt", (Ident("x", 3), Literal(-0.025, 6)), 0)),
    ("eq(error, NULL)", Call("eq", (Ident("error", 3), Literal(None, 10)), 0)),
    ("eq(error, True)", Call("eq", (Ident("error", 3), Literal(True, 10)), 0)),
    ("neq(error, false)", Call("neq", (Ident("error", 4), Literal(False, 11)), 0)),
    (
        "in(run_type, [\"llm\", 'chain', 3, null])",
        Call(
            "in",
            (
                Ident("run_type", 3),
                ListLit((Literal("llm", 14), Literal("chain", 21), Literal(3, 30), Literal(None, 33)), 13),
            ),
            0,
        ),
    ),
    ("in(tags, [])", Call("in", (Ident("tags", 3), ListLit((), 9)), 0)),
    (
        " \n\tAND ( EQ ( a , 1 ) )\n ",
        Call("and", (Call("eq", (Ident("a", 14), Literal(1, 18)), 9),), 3),
    ),
    ('eq(metadata.user_id2, "x")', Call("eq", (Ident("metadata.user_id2", 3), Literal("x", 22)), 0)),
    ('search("paris")', Call("search", (Literal("paris", 7),), 0)),
    ('search(error, "x")', Call("search", (Ident("error", 7), Literal("x", 14)), 0)),
    ("exists(error)", Call("exists", (Ident("error", 7),), 0)),
    ('exists(metadata, "user")', Call("exists", (Ident("metadata", 7), Literal("user", 17)), 0)),
    (
        'not(or(eq(status, "error"), has(tags, "x")))',
        Call(
            "not",
            (
                Call(
                    "or",
                    (
                        Call("eq", (Ident("status", 10), Literal("error", 18)), 7),
                        Call("has", (Ident("tags", 32), Literal("x", 38)), 28),
                    ),
                    4,
                ),
            ),
            0,
        ),
    ),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[t for t, _ in VALID])
def test_parses_to_exact_ast(text: str, expected: Call) -> None:
    assert parse_filter(text) == expected


# (filter, position, exact message)
ERRORS = [
    (
        'and(eq(run_type, "llm"), eq(name, "x")',
        38,
        "unexpected end of filter: expected ',' or ')' at position 38",
    ),
    ('eq(name "x")', 8, "expected ',' or ')' but found string \"x\" at position 8"),
    ("and(eq(a, 1), eq(b, 2)", 22, "unexpected end of filter: expected ',' or ')' at position 22"),
    ("eq(a, 1, 2)", 9, "function 'eq' takes 2 arguments but got 3 at position 9"),
    (
        'and(eq(a, 1)), eq(b, "x")',
        13,
        "unexpected trailing input: expected end of filter but found ',' at position 13",
    ),
    (
        "foo(a, 1)",
        0,
        "unknown function 'foo' at position 0; "
        "expected one of and, or, not, eq, neq, gt, gte, lt, lte, has, exists, search, in",
    ),
    ("and(eq(a, 1), bar(b))", 14, None),
    ('eq(name, "abc', 9, "unterminated string starting at position 9"),
    ("eq(name, 'abc\")", 9, "unterminated string starting at position 9"),
    ('eq(name, "abc\\', 9, "unterminated string starting at position 9"),
    (
        'eq(name, "x") extra',
        14,
        "unexpected trailing input: expected end of filter but found name 'extra' at position 14",
    ),
    ("", 0, 'unexpected end of filter: expected a function call such as eq(name, "x") at position 0'),
    ("   ", 3, 'unexpected end of filter: expected a function call such as eq(name, "x") at position 3'),
    ('"x"', 0, 'expected a function call such as eq(name, "x") but found string "x" at position 0'),
    ("eq", 0, "expected a function call such as eq(name, \"x\") but found name 'eq' at position 0"),
    ("eq(a)", 4, "function 'eq' takes 2 arguments but got 1 at position 4"),
    ("and()", 4, "function 'and' takes at least 1 argument but got 0 at position 4"),
    ("not(eq(a, 1), eq(b, 2))", 14, "function 'not' takes 1 argument but got 2 at position 14"),
    ("exists()", 7, "function 'exists' takes 1 or 2 arguments but got 0 at position 7"),
    ("eq(1, a)", 3, "argument 1 of eq() must be a field name but found number 1 at position 3"),
    ("eq(a, b)", 6, "argument 2 of eq() must be a value but found name 'b' at position 6"),
    ("and(a)", 4, "argument 1 of and() must be a condition but found name 'a' at position 4"),
    ('in(a, "x")', 6, 'argument 2 of in() must be a list but found string "x" at position 6'),
    ("search(name)", 7, "argument 1 of search() must be a value but found name 'name' at position 7"),
    (
        "in(a, [1, [2]])",
        10,
        "expected a value (string, number, true, false or null) but found '[' at position 10",
    ),
    ("in(a, [1 2])", 9, "expected ',' or ']' but found number 2 at position 9"),
    (
        "in(a, [1, 2,])",
        12,
        "expected a value (string, number, true, false or null) but found ']' at position 12",
    ),
    ('eq(a, "x\\q")', 8, "invalid escape '\\\\q' in string at position 8"),
    ('eq(a, "\\u12")', 7, None),
    ("eq(a, #)", 6, "unexpected character '#' at position 6"),
    ("eq(a, -)", 6, "unexpected character '-' at position 6"),
    ("eq(a,,1)", 5, "expected a function call, field name, value or list but found ',' at position 5"),
    ("eq a, 1)", 0, None),
    ("and(eq(a, 1) eq(b, 2))", 13, "expected ',' or ')' but found name 'eq' at position 13"),
]


@pytest.mark.parametrize(("text", "position", "message"), ERRORS, ids=[t or "<empty>" for t, _, _ in ERRORS])
def test_rejects_with_position(text: str, position: int, message: str | None) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_filter(text)
    assert info.value.field == "filter"
    assert info.value.position == position
    if message is not None:
        assert info.value.message == message


def test_unknown_nested_function_is_named() -> None:
    with pytest.raises(InvalidInput, match=r"^unknown function 'bar' at position 14"):
        parse_filter("and(eq(a, 1), bar(b))")


def test_error_names_the_request_field() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_filter("eq(a, 1", param="trace_filter")
    assert (info.value.field, info.value.position) == ("trace_filter", 7)


def test_tokens_carry_text_and_positions() -> None:
    tokens = tokenize('in(x, [-1.5, "a"])')
    assert [(t.kind, t.value, t.pos) for t in tokens] == [
        ("NAME", "in", 0),
        ("LPAREN", None, 2),
        ("NAME", "x", 3),
        ("COMMA", None, 4),
        ("LBRACK", None, 6),
        ("NUMBER", -1.5, 7),
        ("COMMA", None, 11),
        ("STRING", "a", 13),
        ("RBRACK", None, 16),
        ("RPAREN", None, 17),
        ("EOF", None, 18),
    ]


def test_ast_is_immutable_and_hashable() -> None:
    node = parse_filter('in(run_type, ["llm"])')
    assert hash(node) == hash(parse_filter('in(run_type, ["llm"])'))
    with pytest.raises(AttributeError):
        node.name = "eq"  # type: ignore[misc]
