"""A small interpreter for the subset of EspoCRM formula the project's formula file uses.

The firm imports ``docs/espocrm/formula/CBeteiligte.json`` (``beforeSaveCustomScript``) into
EspoCRM; the sandbox and the in-memory fakes *execute that very text* on every save, so the
mark-dirty rule exists once. Supported syntax (anything else is a :class:`FormulaError` when
the script is loaded, never a silent no-op):

* ``//`` comments to the end of the line; statements end with ``;``;
* ``ifThen(condition, statement)``;
* ``entity\\isNew()``, ``entity\\isAttributeChanged('attr')``, ``entity\\attributeFetched('attr')``;
* ``&&``, ``||``, ``!``, ``==``, ``!=``, parentheses, string literals (``'..'`` or ``".."``),
  ``true``/``false``/``null``;
* an attribute name as a value (the record's current value) and ``attr = expression``.

EspoCRM semantics: ``isAttributeChanged`` compares the new value with the fetched (stored) one,
so writing the same value again is no change; on a new record an attribute is changed when it
has a value. ``emailAddressData``/``phoneNumberData`` compare as sets of their entries.
``!x`` is true for ``null``, ``''``, ``false`` and an empty list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The formula file the firm imports into EspoCRM (the one source of the mark-dirty rule).
FORMULA_PATH = Path(__file__).resolve().parent.parent / "docs/espocrm/formula/CBeteiligte.json"


class FormulaError(ValueError):
    """The script uses syntax or a function this interpreter does not know."""


# -- values and comparison ----------------------------------------------------------------

_LIST_ATTRIBUTES = frozenset({"emailAddressData", "phoneNumberData"})


def _entry_key(entry: Any) -> Any:
    if isinstance(entry, Mapping):
        return tuple(sorted((str(k), json.dumps(v, sort_keys=True)) for k, v in entry.items()))
    return json.dumps(entry, sort_keys=True)


def values_equal(attribute: str, left: Any, right: Any) -> bool:
    """EspoCRM's equality of two values of ``attribute`` (lists compare as sets of entries;
    ``None`` and an empty list are the same set)."""
    if attribute in _LIST_ATTRIBUTES or isinstance(left, list) or isinstance(right, list):
        left_set = {_entry_key(e) for e in (left or [])}
        right_set = {_entry_key(e) for e in (right or [])}
        return left_set == right_set and len(left or []) == len(right or [])
    return bool(left == right)


def _truthy(value: Any) -> bool:
    return value not in (None, "", False) and value != []


@dataclass
class SaveContext:
    """One save as the script sees it: the record being saved (mutable) and the stored one
    (``None`` for a new record)."""

    record: MutableMapping[str, Any]
    fetched: Mapping[str, Any] | None

    @property
    def is_new(self) -> bool:
        return self.fetched is None

    def changed(self, attribute: str) -> bool:
        new = self.record.get(attribute)
        if self.fetched is None:
            return _truthy(new)
        return not values_equal(attribute, new, self.fetched.get(attribute))

    def attribute_fetched(self, attribute: str) -> Any:
        return None if self.fetched is None else self.fetched.get(attribute)


# -- tokens -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\\[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>&&|\|\||==|!=|[!=(),;])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # string, name, op, end
    text: str
    pos: int


def _tokens(source: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(source):
        match = _TOKEN.match(source, pos)
        if match is None:
            raise FormulaError(f"unknown syntax at offset {pos}: {source[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        if kind not in ("space", "comment"):
            out.append(_Token(kind, match.group(), pos))
        pos = match.end()
    out.append(_Token("end", "", pos))
    return out


# -- syntax tree --------------------------------------------------------------------------

Node = Callable[[SaveContext], Any]

_ENTITY_FUNCTIONS = {
    "entity\\isNew": 0,
    "entity\\isAttributeChanged": 1,
    "entity\\attributeFetched": 1,
}
_LITERALS = {"true": True, "false": False, "null": None}


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.index = 0

    # helpers
    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text or token.kind not in ("op",):
            raise FormulaError(f"expected {text!r} at offset {token.pos}, found {token.text!r}")

    # grammar
    def script(self) -> list[Node]:
        statements: list[Node] = []
        while self.peek().kind != "end":
            if self.peek().text == ";":
                self.take()
                continue
            statements.append(self.statement())
            if self.peek().kind != "end":
                self.expect(";")
        return statements

    def statement(self) -> Node:
        token = self.peek()
        if token.kind == "name" and token.text == "ifThen" and self.peek(1).text == "(":
            self.take()
            self.expect("(")
            condition = self.expression()
            self.expect(",")
            then = self.statement()
            self.expect(")")
            return lambda ctx: then(ctx) if _truthy(condition(ctx)) else None
        if token.kind == "name" and self.peek(1).kind == "op" and self.peek(1).text == "=":
            if "\\" in token.text or token.text in _LITERALS:
                raise FormulaError(f"cannot assign to {token.text!r} at offset {token.pos}")
            self.take()
            self.take()
            value = self.expression()
            attribute = token.text

            def assign(ctx: SaveContext) -> None:
                ctx.record[attribute] = value(ctx)

            return assign
        return self.expression()

    def expression(self) -> Node:
        return self.or_expression()

    def or_expression(self) -> Node:
        left = self.and_expression()
        while self.peek().text == "||" and self.peek().kind == "op":
            self.take()
            right = self.and_expression()
            left = (lambda a, b: lambda ctx: _truthy(a(ctx)) or _truthy(b(ctx)))(left, right)
        return left

    def and_expression(self) -> Node:
        left = self.comparison()
        while self.peek().text == "&&" and self.peek().kind == "op":
            self.take()
            right = self.comparison()
            left = (lambda a, b: lambda ctx: _truthy(a(ctx)) and _truthy(b(ctx)))(left, right)
        return left

    def comparison(self) -> Node:
        left = self.unary()
        token = self.peek()
        if token.kind == "op" and token.text in ("==", "!="):
            self.take()
            right = self.unary()
            if token.text == "==":
                return lambda ctx: values_equal("", left(ctx), right(ctx))
            return lambda ctx: not values_equal("", left(ctx), right(ctx))
        return left

    def unary(self) -> Node:
        if self.peek().kind == "op" and self.peek().text == "!":
            self.take()
            operand = self.unary()
            return lambda ctx: not _truthy(operand(ctx))
        return self.primary()

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "op" and token.text == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if token.kind == "string":
            text = _unquote(token.text)
            return lambda ctx: text
        if token.kind == "name" and self.peek().text == "(" and self.peek().kind == "op":
            return self.call(token)
        if token.kind == "name" and "\\" not in token.text:
            if token.text in _LITERALS:
                literal = _LITERALS[token.text]
                return lambda ctx: literal
            attribute = token.text
            return lambda ctx: ctx.record.get(attribute)
        raise FormulaError(f"unexpected {token.text or 'end'!r} at offset {token.pos}")

    def call(self, name: _Token) -> Node:
        if name.text not in _ENTITY_FUNCTIONS:
            raise FormulaError(f"unknown function {name.text!r} at offset {name.pos}")
        self.expect("(")
        args: list[str] = []
        while not (self.peek().kind == "op" and self.peek().text == ")"):
            arg = self.take()
            if arg.kind != "string":
                raise FormulaError(f"{name.text} takes string literals (offset {arg.pos})")
            args.append(_unquote(arg.text))
            if self.peek().text == ",":
                self.take()
        self.expect(")")
        if len(args) != _ENTITY_FUNCTIONS[name.text]:
            raise FormulaError(f"{name.text} takes {_ENTITY_FUNCTIONS[name.text]} argument(s)")
        if name.text == "entity\\isNew":
            return lambda ctx: ctx.is_new
        attribute = args[0]
        if name.text == "entity\\isAttributeChanged":
            return lambda ctx: ctx.changed(attribute)
        return lambda ctx: ctx.attribute_fetched(attribute)


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


class Formula:
    """A parsed script; :meth:`run` applies it to one save (changes ``record`` in place)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._statements = _Parser(source).script()

    def run(self, record: MutableMapping[str, Any], fetched: Mapping[str, Any] | None) -> None:
        """Execute the script for a save of ``record`` (``fetched`` = stored record, ``None``
        when the record is new)."""
        context = SaveContext(record, fetched)
        for statement in self._statements:
            statement(context)


def load_before_save_script(path: Path = FORMULA_PATH) -> Formula:
    """The ``beforeSaveCustomScript`` of a formula file, parsed (errors at load time)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    script = data.get("beforeSaveCustomScript") if isinstance(data, dict) else None
    if not isinstance(script, str):
        raise FormulaError(f"{path} has no beforeSaveCustomScript")
    return Formula(script)


#: The firm's script, parsed once.
BEFORE_SAVE = load_before_save_script()
