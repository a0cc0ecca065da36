"""EspoCRM list queries: ``where[]`` decoding (PHP ``http_build_query`` style) and evaluation.

``where[0][type]=in&where[0][attribute]=syncStatus&where[0][value][]=dirty`` decodes to
``[{"type": "in", "attribute": "syncStatus", "value": ["dirty"]}]``; indexed arrays
(``[value][0]=...``) and nested ``or``/``and`` groups work the same way. The decoded items
compile into a predicate over stored records. Anything malformed raises ``HttpError(400)``.

Semantics follow EspoCRM's SQL translation: comparisons against NULL are false, so
``notEquals``/``notIn`` do not match records whose attribute is NULL; ``isNull`` also
matches the empty string; datetimes compare chronologically.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sandbox.core import HttpError

#: Attribute kinds the predicate compiler knows.
KIND_STRING = "string"
KIND_INT = "int"
KIND_DATE = "date"
KIND_DATETIME = "datetime"
KIND_MULTI = "multi"  # emailAddress / phoneNumber: matches any entry of the ...Data list
KIND_LIST = "list"  # ...Data arrays: only isNull / isNotNull

Predicate = Callable[[Mapping[str, Any]], bool]

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def bad_where(message: str) -> HttpError:
    """The 400 EspoCRM answers for an unusable ``where``."""
    return HttpError(400, "badWhere", {"message": message})


# -- query-string decoding ----------------------------------------------------------------


def decode_nested(pairs: Sequence[tuple[str, str]], name: str) -> Any:
    """Decode all ``name[...]`` keys of ``pairs`` into nested lists/dicts as PHP does.

    Returns ``None`` when ``name`` does not occur.
    """
    root: dict[str, Any] = {}
    found = False
    for key, value in pairs:
        if key != name and not key.startswith(name + "["):
            continue
        found = True
        segments = _split_key(key[len(name) :])
        _assign(root, ["root", *segments], value)
    if not found:
        return None
    return _listify(root["root"])


def _split_key(rest: str) -> list[str]:
    segments: list[str] = []
    position = 0
    while position < len(rest):
        match = _SEGMENT.match(rest, position)
        if match is None:
            raise bad_where("malformed bracket key")
        segments.append(match.group(1))
        position = match.end()
    return segments


def _assign(node: dict[str, Any], segments: list[str], value: str) -> None:
    for index, segment in enumerate(segments):
        key = str(_next_index(node)) if segment == "" else segment
        if index == len(segments) - 1:
            if isinstance(node.get(key), dict):
                raise bad_where("conflicting keys")
            node[key] = value
            return
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise bad_where("conflicting keys")
        node = child


def _next_index(node: dict[str, Any]) -> int:
    indices = [int(key) for key in node if key.isdigit()]
    return max(indices) + 1 if indices else 0


def _listify(node: Any) -> Any:
    """Dicts whose keys are all integers become lists ordered by index."""
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


def encode_where(items: Sequence[Mapping[str, Any]], name: str = "where") -> list[tuple[str, str]]:
    """The inverse of :func:`decode_nested` for where items (PHP ``http_build_query`` style):
    lists as ``[]`` pairs, nested ``or``/``and`` items indexed, datetimes as UTC
    ``YYYY-MM-DD HH:MM:SS``, booleans ``true``/``false``, ``None`` values left out."""
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(items):
        _encode_item(pairs, f"{name}[{index}]", item)
    return pairs


def _encode_item(pairs: list[tuple[str, str]], prefix: str, item: Mapping[str, Any]) -> None:
    for key, value in item.items():
        if value is None:
            continue
        if key == "value" and item.get("type") in ("or", "and") and isinstance(value, list):
            for index, sub in enumerate(value):
                _encode_item(pairs, f"{prefix}[value][{index}]", sub)
        elif isinstance(value, list | tuple):
            pairs.extend((f"{prefix}[{key}][]", _scalar_text(entry)) for entry in value)
        else:
            pairs.append((f"{prefix}[{key}]", _scalar_text(value)))


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


# -- predicate compilation ----------------------------------------------------------------


def compile_where(items: Any, kinds: Mapping[str, str]) -> Predicate:
    """Compile decoded ``where`` items (implicitly AND-ed) into a record predicate."""
    if items is None:
        return lambda record: True
    if isinstance(items, dict) and "type" in items:
        items = [items]
    if not isinstance(items, list):
        raise bad_where("where must be a list of items")
    predicates = [_compile_item(item, kinds) for item in items]
    return lambda record: all(predicate(record) for predicate in predicates)


def _compile_item(item: Any, kinds: Mapping[str, str]) -> Predicate:
    if not isinstance(item, dict):
        raise bad_where("where item must be an object")
    kind_of_item = item.get("type")
    if kind_of_item in ("or", "and"):
        return _compile_group(str(kind_of_item), item.get("value"), kinds)
    if kind_of_item not in _COMPILERS:
        raise bad_where("unknown where type")
    attribute = item.get("attribute")
    if not isinstance(attribute, str) or attribute not in kinds:
        raise bad_where("unknown where attribute")
    return _COMPILERS[str(kind_of_item)](attribute, kinds[attribute], item.get("value"))


def _compile_group(group: str, value: Any, kinds: Mapping[str, str]) -> Predicate:
    if isinstance(value, dict):
        value = _listify(value)
    if not isinstance(value, list) or not value:
        raise bad_where(f"{group} needs a list of items")
    predicates = [_compile_item(item, kinds) for item in value]
    if group == "or":
        return lambda record: any(predicate(record) for predicate in predicates)
    return lambda record: all(predicate(record) for predicate in predicates)


def _values_of(record: Mapping[str, Any], attribute: str, kind: str) -> list[Any]:
    """The comparable values of an attribute (several for email/phone), NULLs removed."""
    if kind == KIND_MULTI:
        data_key = "emailAddressData" if attribute == "emailAddress" else "phoneNumberData"
        inner = "emailAddress" if attribute == "emailAddress" else "phoneNumber"
        values = [entry.get(inner) for entry in record.get(data_key) or []]
        return [value.lower() if attribute == "emailAddress" else value for value in values]
    value = record.get(attribute)
    if value is None:
        return []
    return [_coerce(value, kind)]


def _coerce(value: Any, kind: str) -> Any:
    """Turn a stored value or a query value into something comparable for ``kind``."""
    if isinstance(value, list | dict):
        raise bad_where("value must be a scalar")
    if kind == KIND_INT:
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise bad_where("integer value expected") from exc
    if kind == KIND_DATETIME:
        return _parse_datetime(str(value))
    if kind == KIND_DATE:
        return _parse_datetime(str(value)).date()
    if kind == KIND_MULTI:
        return str(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _parse_datetime(text: str) -> datetime:
    for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            continue
    raise bad_where("date/time value expected")


def _query_value(value: Any, kind: str, attribute: str) -> Any:
    if value is None:
        raise bad_where("value missing")
    coerced = _coerce(value, kind)
    if kind == KIND_MULTI and attribute == "emailAddress":
        return str(coerced).lower()
    if kind == KIND_DATE and isinstance(coerced, date):
        return coerced
    return coerced


def _query_list(value: Any, kind: str, attribute: str) -> list[Any]:
    if value is None or value == "":
        return []
    if not isinstance(value, list):
        raise bad_where("array value expected")
    return [_query_value(entry, kind, attribute) for entry in value]


def _compare(operator: Callable[[Any, Any], bool]) -> Callable[[str, str, Any], Predicate]:
    def build(attribute: str, kind: str, value: Any) -> Predicate:
        _require_scalar_kind(kind)
        wanted = _query_value(value, kind, attribute)

        def predicate(record: Mapping[str, Any]) -> bool:
            return any(
                _safe(operator, actual, wanted) for actual in _values_of(record, attribute, kind)
            )

        return predicate

    return build


def _safe(operator: Callable[[Any, Any], bool], actual: Any, wanted: Any) -> bool:
    try:
        return operator(actual, wanted)
    except TypeError:
        return False


def _require_scalar_kind(kind: str) -> None:
    if kind == KIND_LIST:
        raise bad_where("attribute cannot be compared")


def _not_equals(attribute: str, kind: str, value: Any) -> Predicate:
    _require_scalar_kind(kind)
    wanted = _query_value(value, kind, attribute)

    def predicate(record: Mapping[str, Any]) -> bool:
        values = _values_of(record, attribute, kind)
        return bool(values) and all(actual != wanted for actual in values)

    return predicate


def _in(attribute: str, kind: str, value: Any) -> Predicate:
    _require_scalar_kind(kind)
    wanted = _query_list(value, kind, attribute)
    return lambda record: any(actual in wanted for actual in _values_of(record, attribute, kind))


def _not_in(attribute: str, kind: str, value: Any) -> Predicate:
    _require_scalar_kind(kind)
    wanted = _query_list(value, kind, attribute)

    def predicate(record: Mapping[str, Any]) -> bool:
        values = _values_of(record, attribute, kind)
        return bool(values) and all(actual not in wanted for actual in values)

    return predicate


def _is_null(attribute: str, kind: str, value: Any) -> Predicate:
    return lambda record: record.get(attribute) in (None, "", [])


def _is_not_null(attribute: str, kind: str, value: Any) -> Predicate:
    return lambda record: record.get(attribute) not in (None, "", [])


def _between(attribute: str, kind: str, value: Any) -> Predicate:
    _require_scalar_kind(kind)
    bounds = _query_list(value, kind, attribute)
    if len(bounds) != 2:
        raise bad_where("between needs two values")
    low, high = bounds
    return lambda record: any(
        _safe(lambda a, b: b[0] <= a <= b[1], actual, (low, high))
        for actual in _values_of(record, attribute, kind)
    )


def _text_match(test: Callable[[str, str], bool]) -> Callable[[str, str, Any], Predicate]:
    def build(attribute: str, kind: str, value: Any) -> Predicate:
        if kind not in (KIND_STRING, KIND_MULTI):
            raise bad_where("text match on a non-text attribute")
        wanted = str(_query_value(value, kind, attribute)).lower()
        return lambda record: any(
            test(str(actual).lower(), wanted) for actual in _values_of(record, attribute, kind)
        )

    return build


def _like(actual: str, pattern: str) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, actual, re.DOTALL) is not None


_COMPILERS: dict[str, Callable[[str, str, Any], Predicate]] = {
    "equals": _compare(lambda a, b: a == b),
    "notEquals": _not_equals,
    "in": _in,
    "notIn": _not_in,
    "isNull": _is_null,
    "isNotNull": _is_not_null,
    "before": _compare(lambda a, b: a < b),
    "after": _compare(lambda a, b: a > b),
    "lessThan": _compare(lambda a, b: a < b),
    "greaterThan": _compare(lambda a, b: a > b),
    "lessThanOrEquals": _compare(lambda a, b: a <= b),
    "greaterThanOrEquals": _compare(lambda a, b: a >= b),
    "between": _between,
    "like": _text_match(_like),
    "startsWith": _text_match(lambda a, b: a.startswith(b)),
    "endsWith": _text_match(lambda a, b: a.endswith(b)),
    "contains": _text_match(lambda a, b: b in a),
}

#: Where types the sandbox understands (anything else is a 400).
WHERE_TYPES = frozenset(_COMPILERS) | {"or", "and"}
