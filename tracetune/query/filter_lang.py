"""The LangSmith filter language: tokenizer and recursive-descent parser producing a small AST.

Examples: ``and(eq(run_type, "llm"), gt(latency, 2.5))``, ``has(metadata, '{"user": "u1"}')``,
``in(run_type, ["llm", "chain"])``, ``search("paris")``.

Grammar (EBNF; whitespace is allowed between any two tokens)::

    filter     = call ;
    call       = NAME "(" [ argument { "," argument } ] ")" ;
    argument   = call | NAME | literal | list ;
    list       = "[" [ literal { "," literal } ] "]" ;
    literal    = STRING | NUMBER | "null" | "true" | "false" ;       (* keywords in any case *)
    NAME       = letter_ { letter_ | digit | "." } ;                   (* a keyword is not a NAME *)
    letter_    = "A" … "Z" | "a" … "z" | "_" ;
    STRING     = '"' { character | escape } '"' | "'" { character | escape } "'" ;
    escape     = "\\" ( '"' | "'" | "\\" | "/" | "b" | "f" | "n" | "r" | "t" | "u" hex hex hex hex ) ;
    NUMBER     = [ "-" ] digits [ "." digits ] [ ( "e" | "E" ) [ "+" | "-" ] digits ] ;
    digits     = digit { digit } ;

Beyond the grammar, the parser checks every call against ``SIGNATURES``: the function must be known, take
that many arguments, and each argument must be of the right kind (a condition, a field name, a value or a
list). Which fields exist and what values they take is the compiler's business (``filter_sql``).
Every error is an ``InvalidInput`` whose ``position`` is the 0-based offset of the offending token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tracetune.errors import InvalidInput

LiteralValue = str | int | float | bool | None


@dataclass(frozen=True)
class Ident:
    """A field name, such as ``run_type`` or ``feedback_score``."""

    name: str
    pos: int


@dataclass(frozen=True)
class Literal:
    """A string, number, boolean or null."""

    value: LiteralValue
    pos: int


@dataclass(frozen=True)
class ListLit:
    """``[literal, …]``; ``pos`` is that of the ``[``."""

    items: tuple[Literal, ...]
    pos: int


@dataclass(frozen=True)
class Call:
    """``name(args…)``; ``name`` is lower-cased, ``pos`` is that of the name."""

    name: str
    args: tuple[Node, ...]
    pos: int


Node = Call | Ident | Literal | ListLit

# Argument kinds of a signature.
CONDITION, FIELD, VALUE, LIST = "condition", "field name", "value", "list"

# Each function's accepted argument lists; a VARIADIC function takes one or more of its single kind.
SIGNATURES: dict[str, tuple[tuple[str, ...], ...]] = {
    "and": ((CONDITION,),),
    "or": ((CONDITION,),),
    "not": ((CONDITION,),),
    "eq": ((FIELD, VALUE),),
    "neq": ((FIELD, VALUE),),
    "gt": ((FIELD, VALUE),),
    "gte": ((FIELD, VALUE),),
    "lt": ((FIELD, VALUE),),
    "lte": ((FIELD, VALUE),),
    "has": ((FIELD, VALUE),),
    "exists": ((FIELD,), (FIELD, VALUE)),
    "search": ((VALUE,), (FIELD, VALUE)),
    "in": ((FIELD, LIST),),
}
VARIADIC = frozenset({"and", "or"})

_PUNCT = {"(": "LPAREN", ")": "RPAREN", "[": "LBRACK", "]": "RBRACK", ",": "COMMA"}
_KEYWORDS: dict[str, LiteralValue] = {"null": None, "true": True, "false": False}
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_CHARS = _NAME_START | frozenset("0123456789.")
_DIGITS = frozenset("0123456789")


@dataclass(frozen=True)
class Token:
    kind: str  # LPAREN RPAREN LBRACK RBRACK COMMA NAME STRING NUMBER KEYWORD EOF
    value: LiteralValue
    pos: int
    text: str


def _error(message: str, pos: int) -> InvalidInput:
    return InvalidInput(message, field="filter", position=pos)


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with one ``EOF`` token."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _PUNCT:
            tokens.append(Token(_PUNCT[ch], None, i, ch))
            i += 1
        elif ch in "\"'":
            value, end = _read_string(text, i)
            if "\x00" in value:  # neither database compares such text (PostgreSQL refuses it outright)
                raise _error(f"the string at position {i} contains a NUL (\\u0000) character", i)
            tokens.append(Token("STRING", value, i, text[i:end]))
            i = end
        elif ch in _DIGITS or (ch == "-" and i + 1 < n and text[i + 1] in _DIGITS):
            number, end = _read_number(text, i)
            tokens.append(Token("NUMBER", number, i, text[i:end]))
            i = end
        elif ch in _NAME_START:
            end = i + 1
            while end < n and text[end] in _NAME_CHARS:
                end += 1
            word = text[i:end]
            if word.lower() in _KEYWORDS:
                tokens.append(Token("KEYWORD", _KEYWORDS[word.lower()], i, word))
            else:
                tokens.append(Token("NAME", word, i, word))
            i = end
        else:
            raise _error(f"unexpected character {ch!r} at position {i}", i)
    tokens.append(Token("EOF", None, n, ""))
    return tokens


def _read_string(text: str, start: int) -> tuple[str, int]:
    quote, i, n = text[start], start + 1, len(text)
    out: list[str] = []
    while i < n:
        ch = text[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = text[i + 1] if i + 1 < n else ""
        if esc in _ESCAPES:
            out.append(_ESCAPES[esc])
            i += 2
        elif esc == "u" and len(hexdigits := text[i + 2 : i + 6]) == 4 and _is_hex(hexdigits):
            out.append(chr(int(hexdigits, 16)))
            i += 6
        elif esc == "":
            break
        else:
            raise _error(f"invalid escape {text[i : i + 2]!r} in string at position {i}", i)
    raise _error(f"unterminated string starting at position {start}", start)


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in s)


def _read_number(text: str, start: int) -> tuple[int | float, int]:
    def digits(i: int) -> int:
        while i < len(text) and text[i] in _DIGITS:
            i += 1
        return i

    i = digits(start + 1)
    is_float = False
    if i + 1 < len(text) and text[i] == "." and text[i + 1] in _DIGITS:
        i, is_float = digits(i + 1), True
    if i < len(text) and text[i] in "eE":
        j = i + 1 + (i + 1 < len(text) and text[i + 1] in "+-")
        if j < len(text) and text[j] in _DIGITS:
            i, is_float = digits(j), True
    literal = text[start:i]
    if not is_float and not -(2**63) <= int(literal) < 2**63:  # both databases compare 64-bit integers at most
        raise _error(f"number {literal} is out of range (a 64-bit integer) at position {start}", start)
    return (float(literal) if is_float else int(literal)), i


def describe(token: Token) -> str:
    """How an error message names a token: ``','``, ``string "x"``, ``number 1``, ``end of filter``…"""
    if token.kind == "EOF":
        return "end of filter"
    if token.kind == "STRING":
        shown = json.dumps(token.value, ensure_ascii=False)
        return f"string {shown if len(shown) <= 40 else shown[:37] + '…'}"
    if token.kind == "NUMBER":
        return f"number {token.text}"
    if token.kind == "NAME":
        return f"name {token.text!r}"
    if token.kind == "KEYWORD":
        return token.text.lower()
    return repr(token.text)


def _expected(what: str, token: Token) -> InvalidInput:
    if token.kind == "EOF":
        return _error(f"unexpected end of filter: expected {what} at position {token.pos}", token.pos)
    return _error(f"expected {what} but found {describe(token)} at position {token.pos}", token.pos)


MAX_DEPTH = 50  # calls nested deeper than this are refused (deeper ones would exhaust Python's stack)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        self.i += 1
        return token

    def expect(self, kind: str, what: str) -> Token:
        if self.peek().kind != kind:
            raise _expected(what, self.peek())
        return self.take()

    def parse_filter(self) -> Call:
        if not (self.peek().kind == "NAME" and self.peek(1).kind == "LPAREN"):
            raise _expected('a function call such as eq(name, "x")', self.peek())
        node = self.parse_call()
        if self.peek().kind != "EOF":
            token = self.peek()
            raise _error(
                f"unexpected trailing input: expected end of filter but found {describe(token)} "
                f"at position {token.pos}",
                token.pos,
            )
        return node

    def parse_call(self) -> Call:
        name_token = self.take()
        name = str(name_token.value).lower()
        if name not in SIGNATURES:
            known = ", ".join(SIGNATURES)
            raise _error(
                f"unknown function {name_token.text!r} at position {name_token.pos}; expected one of {known}",
                name_token.pos,
            )
        self.expect("LPAREN", "'('")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(
                f"the filter nests calls more than {MAX_DEPTH} deep at position {name_token.pos}", name_token.pos
            )
        args: list[Node] = []
        if self.peek().kind != "RPAREN":
            args.append(self.parse_argument())
            while self.peek().kind == "COMMA":
                self.take()
                args.append(self.parse_argument())
        close = self.expect("RPAREN", "',' or ')'")
        self.depth -= 1
        call = Call(name, tuple(args), name_token.pos)
        _check_signature(call, close.pos)
        return call

    def parse_argument(self) -> Node:
        token = self.peek()
        if token.kind == "NAME":
            if self.peek(1).kind == "LPAREN":
                return self.parse_call()
            self.take()
            return Ident(str(token.value), token.pos)
        if token.kind == "LBRACK":
            return self.parse_list()
        if token.kind in ("STRING", "NUMBER", "KEYWORD"):
            self.take()
            return Literal(token.value, token.pos)
        raise _expected("a function call, field name, value or list", token)

    def parse_list(self) -> ListLit:
        open_token = self.take()
        items: list[Literal] = []
        if self.peek().kind != "RBRACK":
            items.append(self.parse_list_item())
            while self.peek().kind == "COMMA":
                self.take()
                items.append(self.parse_list_item())
        self.expect("RBRACK", "',' or ']'")
        return ListLit(tuple(items), open_token.pos)

    def parse_list_item(self) -> Literal:
        token = self.peek()
        if token.kind not in ("STRING", "NUMBER", "KEYWORD"):
            raise _expected("a value (string, number, true, false or null)", token)
        self.take()
        return Literal(token.value, token.pos)


def _kind_of(node: Node) -> str:
    if isinstance(node, Call):
        return CONDITION
    if isinstance(node, Ident):
        return FIELD
    if isinstance(node, ListLit):
        return LIST
    return VALUE


def describe_node(node: Node) -> str:
    if isinstance(node, Call):
        return f"function call {node.name}(…)"
    if isinstance(node, Ident):
        return f"name {node.name!r}"
    if isinstance(node, ListLit):
        return "a list"
    if isinstance(node.value, str):
        return f"string {json.dumps(node.value, ensure_ascii=False)}"
    if node.value is None or isinstance(node.value, bool):
        return json.dumps(node.value)
    return f"number {node.value}"


def _arity_text(name: str) -> str:
    if name in VARIADIC:
        return "at least 1 argument"
    signatures = SIGNATURES[name]
    counts = sorted({len(sig) for sig in signatures})
    words = " or ".join(str(c) for c in counts)
    return f"{words} argument{'s' if counts[-1] != 1 else ''}"


def _check_signature(call: Call, close_pos: int) -> None:
    """Raise unless ``call`` matches one of its function's signatures (arity first, then kinds)."""
    signatures = SIGNATURES[call.name]
    variadic = call.name in VARIADIC
    n = len(call.args)
    lengths = {len(sig) for sig in signatures}
    if (variadic and n == 0) or (not variadic and n not in lengths):
        too_many = not variadic and n > max(lengths)
        pos = call.args[max(lengths)].pos if too_many else close_pos
        raise _error(f"function {call.name!r} takes {_arity_text(call.name)} but got {n} at position {pos}", pos)
    kinds = [signatures[0][0]] * n if variadic else next(s for s in signatures if len(s) == n)
    for index, (arg, kind) in enumerate(zip(call.args, kinds, strict=True)):
        if _kind_of(arg) != kind:
            raise _error(
                f"argument {index + 1} of {call.name}() must be a {kind} but found {describe_node(arg)} "
                f"at position {arg.pos}",
                arg.pos,
            )


def parse_filter(text: str, *, param: str = "filter") -> Call:
    """Parse a filter string into its AST (a ``Call``).

    Raises ``InvalidInput(field=param, position=…)``; ``param`` names the request field the text came from
    (``filter``, ``trace_filter`` or ``tree_filter``).
    """
    try:
        return _Parser(text).parse_filter()
    except InvalidInput as exc:
        exc.field = param
        raise
