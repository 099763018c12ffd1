"""Reader of iota2 configuration files (`.cfg`), as iota2 writes them.

iota2 reads its configuration with Vinay Sajip's `config` module, in the syntax of its 0.3/0.4
releases: `section: { key: value ... }` blocks, Python-like literals, bare words read as
strings, `#` comments, `$section.key` references and `+ - * / %` between values.

Hand-written rather than a dependency: the maintained `config` release on PyPI (0.5.x) reads
a different, newer format and refuses iota2's bare words (`firstStep: init` -> "Unknown
variable 'init'"); 0.3.9 is Python 2 only; 0.4.2 reads the syntax but is frozen since 2019
(declared up to Python 3.7), evaluates literals with `eval()`, and reports errors without the
file name. So: a small tokenizer and recursive-descent parser of that syntax,
whose errors are `ConfigError`s naming the file, the line and what was expected.

Beyond the `config` module: `$VAR` and `${VAR}` inside quoted strings are replaced by the
environment variable when it is set (left as written otherwise), and a `$name` reference that
is not a key of the file falls back to the environment variable `name`.
"""

from __future__ import annotations

import ast
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoclass.errors import ConfigError

__all__ = ["is_unset", "looks_like_iota2", "parse_iota2", "read_iota2"]

_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\n]+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>'''|\"\"\"|'|")
  | (?P<number>\d+(?:\.\d*)?(?:[eE]-?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[:,{}\[\]().+\-*/%$@`])
""", re.VERBOSE)

_ENV = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_KEYWORDS = {"True": True, "False": False, "None": None}
_VALUE_START = {"string", "number", "word", "(", "$", "-", "[", "{"}


def is_unset(value: Any) -> bool:
    """iota2's ways of writing "no value": None, `'None'` (any case) and the empty string."""
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))


def looks_like_iota2(text: str) -> bool:
    """Whether `text` has iota2's shape: a top-level `name:` followed by `{` (comments and
    line breaks may come between)."""
    return re.search(r"(?m)^[ \t]*[A-Za-z_]\w*[ \t]*:(?:\s*#[^\n]*)*\s*\{", text) is not None


def read_iota2(path: str | Path) -> dict[str, Any]:
    """Parse the iota2 configuration file at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise ConfigError(f"cannot read the iota2 configuration {path}: {err}") from None
    return parse_iota2(text, str(path))


def parse_iota2(text: str, source: str = "<string>") -> dict[str, Any]:
    """The content of an iota2 configuration as plain Python values: sections are dicts,
    lists are lists; quoted strings, numbers, True/False/None as in Python; bare words are
    strings. References and expressions are evaluated."""
    parser = _Parser(_tokenize(text.lstrip("\ufeff"), source), source)
    root = parser.mapping_body(closing=None)
    return _Resolver(root, source).value(root)


# --- tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # string, number, word, eof, or the punctuation character itself
    value: Any
    line: int
    column: int
    glued: bool = False  # no blank between this token and the previous one


def _located(source: str, line: int, column: int, message: str) -> ConfigError:
    return ConfigError(f"{source}, line {line}, column {column}: {message}")


def _tokenize(text: str, source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, line, line_start, glued = 0, 1, 0, False
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        column = pos - line_start + 1
        if match is None:
            raise _located(source, line, column, f"unexpected character {text[pos]!r}")
        kind = match.lastgroup
        if kind == "string":
            end, value = _string(text, match.end(), match.group(), source, line, column)
            tokens.append(_Token("string", value, line, column, glued))
        elif kind in ("space", "comment"):
            end = match.end()
        else:
            end = match.end()
            raw = match.group()
            if kind == "number":
                if re.match(r"[A-Za-z_]", text[end:end + 1]):
                    raise _located(source, line, column, f"expected a number, found "
                                   f"{raw + text[end]!r}... (quote text that starts with a digit)")
                tokens.append(_Token("number", ast.literal_eval(raw), line, column, glued))
            elif kind == "word":
                tokens.append(_Token("word", raw, line, column, glued))
            else:
                tokens.append(_Token(raw, raw, line, column, glued))
        glued = kind not in ("space", "comment")
        newlines = text.count("\n", pos, end)
        if newlines:
            line += newlines
            line_start = text.rindex("\n", pos, end) + 1
        pos = end
    tokens.append(_Token("eof", None, line, pos - line_start + 1))
    return tokens


def _string(text: str, start: int, quote: str, source: str, line: int, column: int):
    """(end, value) of the string literal whose opening `quote` ends at `start`."""
    pos = start
    while True:
        if pos >= len(text) or (len(quote) == 1 and text[pos] == "\n"):
            raise _located(source, line, column, f"unterminated string: expected the closing "
                                                 f"{quote} on the same line")
        if text[pos] == "\\":
            pos += 2
            continue
        if text.startswith(quote, pos):
            end = pos + len(quote)
            break
        pos += 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes such as '\d' stay as written
        try:
            value = ast.literal_eval(text[start - len(quote):end])
        except (SyntaxError, ValueError) as err:
            raise _located(source, line, column, f"invalid string literal: {err}") from None
    return end, _ENV.sub(_env_value, value)


def _env_value(match: re.Match) -> str:
    name = match.group(1) or match.group(2)
    return os.environ.get(name, match.group(0))


# --- syntax -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ref:
    """`$a.b[0]`: a value of the file (or an environment variable), resolved after parsing."""

    path: tuple
    line: int
    column: int


@dataclass(frozen=True)
class _Op:
    op: str  # + - * / % or "neg"
    args: tuple
    line: int
    column: int


def _describe(token: _Token) -> str:
    if token.kind == "eof":
        return "the end of the file"
    if token.kind == "string":
        return f"the string {token.value!r}"
    return repr(str(token.value))


class _Parser:
    def __init__(self, tokens: list[_Token], source: str):
        self.tokens, self.source, self.pos = tokens, source, 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def advance(self) -> _Token:
        token = self.token
        self.pos += 1
        return token

    def fail(self, expected: str, token: _Token | None = None):
        token = token or self.token
        hint = ""
        if token.kind == "/":
            hint = " (write paths between quotes)"
        raise _located(self.source, token.line, token.column,
                       f"expected {expected}, found {_describe(token)}{hint}")

    def expect(self, kind: str, expected: str) -> _Token:
        if self.token.kind != kind:
            self.fail(expected)
        return self.advance()

    def mapping_body(self, closing: _Token | None) -> dict:
        """`key: value` entries up to the `}` that matches `closing` (or the end of file)."""
        entries: dict[str, Any] = {}
        while self.token.kind in ("word", "string"):
            key_token = self.advance()
            key = str(key_token.value)
            if key in entries:
                raise _located(self.source, key_token.line, key_token.column,
                               f"repeated key '{key}'")
            if self.token.kind == ":":
                self.advance()
                entries[key] = self.value()
            else:
                entries[key] = True  # `key` alone means `key: True`, as in iota2's reader
            if self.token.kind == ",":
                self.advance()
            elif self.token.kind not in ("word", "string", "}", "eof"):
                self.fail("a new key, ',' or '}'")
        end = "eof" if closing is None else "}"
        if self.token.kind != end:
            if closing is None:
                self.fail("a key (a name or a quoted string)")
            if self.token.kind == "eof":
                self.fail(f"'}}' to close the '{{' of line {closing.line}")
            self.fail("a key or '}'")
        return entries

    def value(self) -> Any:
        kind = self.token.kind
        if kind == "{":
            opening = self.advance()
            body = self.mapping_body(opening)
            self.advance()
            return body
        if kind == "[":
            return self.sequence()
        if kind == "@":
            self.fail("a value ('@' includes of other files are not supported)")
        if kind not in _VALUE_START:
            self.fail("a value")
        return self.sum()

    def sequence(self) -> list:
        opening = self.advance()
        items = []
        while self.token.kind in _VALUE_START:
            items.append(self.value())
            if self.token.kind == ",":
                self.advance()
        if self.token.kind != "]":
            if self.token.kind == "eof":
                self.fail(f"']' to close the '[' of line {opening.line}")
            self.fail("a value, ',' or ']'")
        self.advance()
        return items

    def sum(self) -> Any:
        left = self.product()
        while self.token.kind in ("+", "-"):
            op = self.advance()
            left = _Op(op.kind, (left, self.product()), op.line, op.column)
        return left

    def product(self) -> Any:
        left = self.factor()
        while self.token.kind in ("*", "/", "%"):
            op = self.advance()
            left = _Op(op.kind, (left, self.factor()), op.line, op.column)
        return left

    def factor(self) -> Any:
        token = self.token
        if token.kind in ("string", "number"):
            return self.advance().value
        if token.kind == "word":
            self.advance()
            return _KEYWORDS.get(token.value, token.value)
        if token.kind == "-":
            self.advance()
            return _Op("neg", (self.factor(),), token.line, token.column)
        if token.kind == "(":
            self.advance()
            inner = self.sum()
            self.expect(")", "')'")
            return inner
        if token.kind == "$":
            return self.reference()
        if token.kind == "`":
            self.fail("a value (`...` evaluations are not supported)")
        self.fail("a value")

    def reference(self) -> _Ref:
        start = self.advance()
        if self.token.kind == "{":  # ${NAME}: an environment variable
            self.advance()
            name = self.expect("word", "a name after '${'").value
            self.expect("}", "'}' after '${NAME'")
            return _Ref(("$env", name), start.line, start.column)
        path: list = [self.expect("word", "a name after '$'").value]
        while True:
            if self.token.kind == "." and self.token.glued:
                self.advance()
                path.append(self.expect("word", "a name after '.'").value)
            elif self.token.kind == "[" and self.token.glued:
                self.advance()
                if self.token.kind not in ("number", "string"):
                    self.fail("a number or a string between '[' and ']'")
                path.append(self.advance().value)
                self.expect("]", "']'")
            else:
                return _Ref(tuple(path), start.line, start.column)


# --- references and expressions ---------------------------------------------------------------

_OPERATORS = {
    "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
    "/": lambda a, b: a / b, "%": lambda a, b: a % b,
}


class _Resolver:
    """Replaces references (from the file's root, as iota2's reader does) and expressions by
    their values; a reference to a missing key falls back to the environment."""

    def __init__(self, root: dict, source: str):
        self.root, self.source, self.active = root, source, set()

    def value(self, node: Any) -> Any:
        if isinstance(node, dict):
            return {k: self.value(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self.value(v) for v in node]
        if isinstance(node, _Ref):
            return self.reference(node)
        if isinstance(node, _Op):
            args = [self.value(a) for a in node.args]
            try:
                return -args[0] if node.op == "neg" else _OPERATORS[node.op](*args)
            except (TypeError, ZeroDivisionError) as err:
                raise _located(self.source, node.line, node.column,
                               f"cannot compute {node.op!r} on {args!r}: {err}") from None
        return node

    def reference(self, ref: _Ref) -> Any:
        name = ".".join(str(p) for p in ref.path)
        if ref.path[0] == "$env" or (len(ref.path) == 1 and ref.path[0] not in self.root):
            var = ref.path[-1]
            if var in os.environ:
                return os.environ[var]
            raise _located(self.source, ref.line, ref.column,
                           f"'${var}' is neither a key of this file nor an environment variable")
        if ref in self.active:
            raise _located(self.source, ref.line, ref.column, f"circular reference '${name}'")
        node: Any = self.root
        for part in ref.path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                raise _located(self.source, ref.line, ref.column,
                               f"'${name}' refers to nothing in this file") from None
        self.active.add(ref)
        try:
            return self.value(node)
        finally:
            self.active.discard(ref)
