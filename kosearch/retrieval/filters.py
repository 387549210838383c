"""Metadata filters: the Mongo-style filter language, checked and evaluated into allowed rows.

A filter is a JSON object (a Python dict), the form LangChain, Chroma and LlamaIndex users
already write::

    {"category": "법률"}                                  equality (a list value means $in)
    {"year": {"$gte": 2020, "$lt": 2024}}                 several operators on a field: all hold
    {"tags": {"$in": ["a", "b"]}}                          a list field matches if any element does
    {"$or": [{"category": "법률"}, {"year": 2024}]}         $and / $or take a list of filters
    {"$not": {"category": "법률"}}                          $not takes a filter (or operators)
    {"id": {"$in": ["d1", "d7"]}}                          the document id is a field too

Field operators: ``$eq $ne $gt $gte $lt $lte $in $nin $exists $contains`` (``$contains``: a list
field holds the value); ``$neq`` (LangChain's spelling) is ``$ne``. Several keys in one object
must all hold. As in MongoDB, ``$ne`` and ``$nin`` also match documents that lack the field.

Values are checked against the field's type (:mod:`kosearch.storage.metadata`): ``{"year":
{"$gte": "2020"}}`` on an int field is a :class:`~kosearch.errors.FilterError`, not an empty
result. Dates and timestamps are compared as ISO-8601 strings (``"2024-01-31"``); ``mixed``
fields compare the values' text forms. A filter is evaluated with pyarrow compute over the
passage table's ``doc_id`` and typed columns into a boolean mask over the passage rows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from kosearch.errors import FilterError
from kosearch.storage import metadata

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["FIELD_OPERATORS", "Filter", "canonical", "evaluate", "parse_filter"]

Filter = Mapping[str, Any]
FIELD_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists",
                   "$contains")
LOGICAL_OPERATORS = ("$and", "$or", "$not")
ALIASES = {"$neq": "$ne"}
_RANGE = {"$gt": "greater", "$gte": "greater_equal", "$lt": "less", "$lte": "less_equal"}
ID_FIELD = "id"  # the document id, always filterable


@dataclass(frozen=True)
class Condition:
    """``field op value``, e.g. ``year $gte 2020``."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Logical:
    """``$and`` / ``$or`` / ``$not`` over parts (``$not`` has one)."""

    op: str
    parts: tuple[Node, ...]


Node = Condition | Logical


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an int", float: "a float", str: "a string",
            list: "a list", dict: "an object", type(None): "null"}.get(type(value), "a value")
    return f"{json.dumps(value, ensure_ascii=False, default=str)} ({kind})"


def canonical(spec: Filter | None) -> str | None:
    """The filter as sorted JSON text: the key under which its allowed rows are cached."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise FilterError(f"a filter must be a JSON object, got {_describe(spec)}")
    try:
        return json.dumps(spec, sort_keys=True, ensure_ascii=False, default=_iso)
    except (TypeError, ValueError) as error:
        raise FilterError(f"the filter is not JSON data: {error}") from None


def _iso(value: Any) -> str:
    if hasattr(value, "isoformat"):  # datetime.date / datetime from Python callers
        return str(value.isoformat())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def parse_filter(spec: Filter) -> Node:
    """The syntax tree of a filter; checks operators and shapes, not fields or types.

    Raises:
        FilterError: not an object, an unknown operator, or a malformed operand.
    """
    if not isinstance(spec, Mapping):
        raise FilterError(f"a filter must be a JSON object, got {_describe(spec)}")
    parts: list[Node] = []
    for key, value in spec.items():
        if not isinstance(key, str):
            raise FilterError(f"filter keys must be strings, got {key!r}")
        op = ALIASES.get(key, key)
        if op in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"{key} takes a non-empty list of filters, got "
                                  f"{_describe(value)}")
            parts.append(Logical(op, tuple(parse_filter(v) for v in value)))
        elif op == "$not":
            parts.append(Logical("$not", (parse_filter(value),)))
        elif key.startswith("$"):
            raise FilterError(
                f"unknown filter operator {key!r}; use $and, $or or $not here, or one of "
                f"{', '.join(FIELD_OPERATORS)} on a field (e.g. {{\"year\": {{\"$gte\": 2020}}}})"
            )
        else:
            parts.append(_parse_field(key, value))
    if len(parts) == 1:
        return parts[0]
    return Logical("$and", tuple(parts))  # {} is $and of nothing: every row


def _parse_field(name: str, value: Any) -> Node:
    if isinstance(value, Mapping) and value and all(str(k).startswith("$") for k in value):
        parts: list[Node] = []
        for key, operand in value.items():
            op = ALIASES.get(key, key)
            if op == "$not":
                parts.append(Logical("$not", (_parse_field(name, operand),)))
            elif op in FIELD_OPERATORS:
                parts.append(Condition(name, op, operand))
            else:
                raise FilterError(
                    f"unknown filter operator {key!r} on field {name!r}; use one of "
                    f"{', '.join(FIELD_OPERATORS)} (or $not)"
                )
        return parts[0] if len(parts) == 1 else Logical("$and", tuple(parts))
    if isinstance(value, Mapping) and any(str(k).startswith("$") for k in value):
        raise FilterError(f"the filter on {name!r} mixes operators and plain keys: "
                          f"{_describe(dict(value))}")
    if isinstance(value, list):  # LangChain's shorthand: a list of allowed values
        return Condition(name, "$in", value)
    return Condition(name, "$eq", value)


# ---------------------------------------------------------------------------------- evaluation


class _Columns:
    """The columns a filter reads, with each field's type; combined and cached per field."""

    def __init__(self, table: pa.Table, fields: Mapping[str, Mapping[str, Any]]) -> None:
        self.table = table
        self.fields = fields
        self.n = table.num_rows
        self._cache: dict[str, Any] = {}

    def get(self, name: str) -> tuple[Any, str]:
        """(the column as one pyarrow Array, its type) for a filter field."""
        if name == ID_FIELD:
            kind, column = "string", "doc_id"
        elif name in self.fields:
            kind, column = self.fields[name]["type"], metadata.PREFIX + name
        else:
            known = ", ".join([ID_FIELD, *self.fields]) if self.fields else ID_FIELD
            raise FilterError(f"unknown filter field {name!r}; the filterable fields are: {known}")
        if column not in self._cache:
            self._cache[column] = self.table.column(column).combine_chunks()
        return self._cache[column], kind


def evaluate(spec: Filter, table: pa.Table,
             fields: Mapping[str, Mapping[str, Any]]) -> NDArray[np.bool_]:
    """The rows of ``table`` that ``spec`` allows, as a boolean mask.

    Args:
        spec: the filter.
        table: ``doc_id`` and the typed ``meta.<field>`` columns
            (:meth:`~kosearch.storage.passages.PassageTable.filterable`).
        fields: ``{field: {"type": ...}}`` (:meth:`PassageTable.fields`).

    Raises:
        FilterError: a malformed filter, an unknown field or operator, a value of the wrong
            type for its field.
    """
    return _eval(parse_filter(spec), _Columns(table, fields))


def _eval(node: Node, columns: _Columns) -> NDArray[np.bool_]:
    if isinstance(node, Logical):
        if node.op == "$not":
            return ~_eval(node.parts[0], columns)
        masks = [_eval(part, columns) for part in node.parts]
        if not masks:
            return np.ones(columns.n, dtype=bool)
        combine = np.logical_and if node.op == "$and" else np.logical_or
        return combine.reduce(masks)
    column, kind = columns.get(node.field)
    return _condition(node, column, kind)


def _mask(result: Any) -> NDArray[np.bool_]:
    """A pyarrow boolean result (nulls count as false) as a numpy mask."""
    import pyarrow.compute as pc

    return np.asarray(pc.fill_null(result, False).to_numpy(zero_copy_only=False), dtype=bool)


def _condition(node: Condition, column: Any, kind: str) -> NDArray[np.bool_]:
    import pyarrow.compute as pc

    op, value = node.op, node.value
    if op == "$exists":
        if not isinstance(value, bool):
            raise FilterError(f"$exists on {node.field!r} takes true or false, got "
                              f"{_describe(value)}")
        present = _mask(pc.is_valid(column))
        return present if value else ~present
    if op in ("$ne", "$nin"):
        return ~_condition(Condition(node.field, "$eq" if op == "$ne" else "$in", value),
                           column, kind)
    if op == "$eq" and value is None:
        return _mask(pc.is_null(column))
    if op in ("$in", "$contains") or kind == "list<string>":
        return _membership(node, column, kind)
    if op == "$eq":
        return _mask(pc.equal(column, _scalar(node, kind, value, column)))
    return _mask(getattr(pc, _RANGE[op])(column, _scalar(node, kind, value, column)))


def _membership(node: Condition, column: Any, kind: str) -> NDArray[np.bool_]:
    """``$in`` on any field, and ``$eq``/``$in``/``$contains`` on a list field (any element)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    op, value = node.op, node.value
    if op == "$contains" and kind != "list<string>":
        raise FilterError(f"$contains applies to list fields; {node.field!r} is {kind}")
    if op in _RANGE:
        raise FilterError(f"{op} does not apply to the list field {node.field!r}; use $eq, "
                          "$in, $nin or $contains")
    if op == "$in":
        if not isinstance(value, list):
            raise FilterError(f"$in on {node.field!r} takes a list of values, got "
                              f"{_describe(value)}")
        values = value
    else:
        values = [value]
    element = "string" if kind == "list<string>" else kind
    wanted = [_value(node, element, v) for v in values if v is not None]
    target = column
    if kind == "list<string>":
        target = pc.list_flatten(column)
    dtype = target.type
    if kind == "int" and any(isinstance(v, float) for v in wanted):
        target, dtype = pc.cast(target, pa.float64()), pa.float64()
    hit = _mask(pc.is_in(target, value_set=pa.array(wanted, dtype)))
    if kind == "list<string>":
        parents = np.asarray(pc.list_parent_indices(column).to_numpy(zero_copy_only=False))
        mask = np.zeros(len(column), dtype=bool)
        mask[parents[hit]] = True
        hit = mask
    if None in values:
        hit |= _mask(pc.is_null(column))
    return hit


def _scalar(node: Condition, kind: str, value: Any, column: Any) -> Any:
    import pyarrow as pa

    converted = _value(node, kind, value)
    if kind in ("date", "timestamp"):
        return pa.scalar(converted, column.type)
    return pa.scalar(converted)


def _value(node: Condition, kind: str, value: Any) -> Any:
    """``value`` checked against (and converted to) the field's type."""
    if kind == "mixed":
        if isinstance(value, (dict, list)) and node.op in _RANGE:
            raise FilterError(f"{node.op} on {node.field!r} needs a scalar, got "
                              f"{_describe(value)}")
        return metadata.text_form(value)
    ok = {
        "string": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "date": lambda v: isinstance(v, str) and metadata.parse_date(v) is not None,
        "timestamp": lambda v: isinstance(v, str) and metadata.parse_timestamp(v) is not None,
    }[kind]
    if hasattr(value, "isoformat") and kind in ("date", "timestamp"):
        value = value.isoformat()
    if not ok(value):
        wants = {"string": "a string", "int": "a number", "float": "a number",
                 "bool": "true or false", "date": "a date string like \"2024-01-31\"",
                 "timestamp": "an ISO-8601 date-time string like \"2024-01-31T09:00:00Z\""}
        raise FilterError(
            f"the field {node.field!r} holds {kind} values, so {node.op} needs {wants[kind]}, "
            f"got {_describe(value)}"
        )
    if kind == "date":
        return metadata.parse_date(value)
    if kind == "timestamp":
        return metadata.parse_timestamp(value)
    return value
