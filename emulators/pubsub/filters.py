"""Subscription filters: the documented attribute filter language, parsed once into a predicate.

Grammar (https://cloud.google.com/pubsub/docs/subscription-message-filter)::

    filter  := expr
    expr    := term { AND term } | term { OR term }     # mixing AND and OR needs parentheses
    term    := NOT term | primary
    primary := "(" expr ")"
             | attributes ":" key                        # the key is present
             | attributes "." key ( "=" | "!=" ) string  # != is true when the key is absent too
             | hasPrefix "(" attributes "." key "," string ")"
    key     := word of letters, digits, - and _ | string

Strings take double or single quotes with backslash escapes. Filters are at most 256 bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from emulators.pubsub.errors import PubSubError, invalid

Predicate = Callable[[Mapping[str, str]], bool]
MAX_FILTER_BYTES = 256

_WORD = re.compile(r"[A-Za-z0-9_\-]+")
_PUNCT = ("!=", "(", ")", ",", ":", ".", "=")
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "?": "?",
}


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "string", a punctuation mark, or "end"
    text: str
    pos: int


def _read_string(source: str, start: int) -> tuple[str, int]:
    quote = source[start]
    out: list[str] = []
    i = start + 1
    while i < len(source):
        ch = source[i]
        if ch == quote:
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 >= len(source):
                break
            nxt = source[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
            elif nxt in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[nxt]
                digits = source[i + 2 : i + 2 + width]
                if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    raise _error(source, i, f"bad \\{nxt} escape")
                out.append(chr(int(digits, 16)))
                i += 2 + width
            elif nxt in "01234567":
                digits = source[i + 1 : i + 4]
                if len(digits) != 3 or not all(c in "01234567" for c in digits):
                    raise _error(source, i, "bad octal escape (three digits expected)")
                out.append(chr(int(digits, 8)))
                i += 4
            else:
                raise _error(source, i, f"unknown escape \\{nxt}")
            continue
        out.append(ch)
        i += 1
    raise _error(source, start, "unterminated string")


def _tokens(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(source):
        ch = source[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "\"'":
            text, end = _read_string(source, i)
            tokens.append(_Token("string", text, i))
            i = end
            continue
        punct = next((p for p in _PUNCT if source.startswith(p, i)), None)
        if punct is not None:
            tokens.append(_Token(punct, punct, i))
            i += len(punct)
            continue
        match = _WORD.match(source, i)
        if match is None:
            raise _error(source, i, f"unexpected character {ch!r}")
        tokens.append(_Token("word", match.group(), i))
        i = match.end()
    tokens.append(_Token("end", "", len(source)))
    return tokens


def _error(source: str, pos: int, reason: str) -> PubSubError:
    return invalid(f"Invalid filter {source!r}: {reason} at position {pos}.")


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokens(source)
        self.i = 0

    @property
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self, kind: str, text: str | None = None, what: str | None = None) -> _Token:
        token = self.peek
        if token.kind != kind or (text is not None and token.text != text):
            expected = what or repr(text if text is not None else kind)
            found = "end of filter" if token.kind == "end" else repr(token.text)
            raise _error(self.source, token.pos, f"expected {expected}, found {found}")
        self.i += 1
        return token

    def is_word(self, text: str) -> bool:
        return self.peek.kind == "word" and self.peek.text == text

    def parse(self) -> Predicate:
        predicate = self.expr()
        self.take("end", what="end of filter")
        return predicate

    def expr(self) -> Predicate:
        terms = [self.term()]
        operator: str | None = None
        while self.is_word("AND") or self.is_word("OR"):
            token = self.take("word")
            if operator is not None and token.text != operator:
                raise _error(self.source, token.pos, "AND and OR cannot be mixed without parentheses")
            operator = token.text
            terms.append(self.term())
        if len(terms) == 1:
            return terms[0]
        if operator == "AND":
            return lambda attrs: all(t(attrs) for t in terms)
        return lambda attrs: any(t(attrs) for t in terms)

    def term(self) -> Predicate:
        if self.is_word("NOT"):
            self.take("word")
            inner = self.term()
            return lambda attrs: not inner(attrs)
        return self.primary()

    def key(self) -> str:
        token = self.peek
        if token.kind in ("word", "string"):
            self.i += 1
            return token.text
        return self.take("word", what="an attribute key").text

    def primary(self) -> Predicate:
        if self.peek.kind == "(":
            self.take("(")
            inner = self.expr()
            self.take(")")
            return inner
        if self.is_word("hasPrefix"):
            self.take("word")
            self.take("(")
            self.take("word", "attributes")
            self.take(".")
            key = self.key()
            self.take(",")
            prefix = self.take("string", what="a quoted prefix").text
            self.take(")")
            return lambda attrs: key in attrs and attrs[key].startswith(prefix)
        self.take("word", "attributes", what="'attributes', 'hasPrefix', 'NOT' or '('")
        if self.peek.kind == ":":
            self.take(":")
            key = self.key()
            return lambda attrs: key in attrs
        self.take(".", what="'.' or ':' after attributes")
        key = self.key()
        if self.peek.kind not in ("=", "!="):
            raise _error(self.source, self.peek.pos, "expected = or != after the attribute")
        operator = self.take(self.peek.kind).kind
        value = self.take("string", what="a quoted value").text
        if operator == "=":
            return lambda attrs: attrs.get(key) == value
        return lambda attrs: attrs.get(key) != value


def compile_filter(source: str) -> Predicate | None:
    """The predicate for ``source``; None for an empty filter (everything matches). Bad filters raise."""
    if not source.strip():
        return None
    if len(source.encode()) > MAX_FILTER_BYTES:
        raise invalid(f"Invalid filter: it is {len(source.encode())} bytes; the maximum is {MAX_FILTER_BYTES}.")
    return _Parser(source).parse()
