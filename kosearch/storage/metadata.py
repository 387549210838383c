"""Typed metadata columns: each top-level ``meta`` field as a typed column of the passage table.

The ``meta`` column keeps every document's fields as JSON text (hits return them exactly as
given); beside it, each top-level field gets a column named ``meta.<field>`` whose type is
inferred over the whole table, so that filters compare typed values (pyarrow compute) and
pandas, polars and DuckDB read the fields as ordinary columns.

Types, from the JSON values of a field (nulls and missing fields are nulls and do not count):

=================  ============================================  ===========================
type               values                                        column
=================  ============================================  ===========================
``string``         strings                                       ``string``
``int``            integers (not booleans)                       ``int64``
``float``          numbers with a fraction, or ints and floats   ``float64``
``bool``           ``true`` / ``false``                          ``bool``
``date``           strings ``YYYY-MM-DD``                        ``date32``
``timestamp``      ISO-8601 date-times (or those and dates)      ``timestamp[us, UTC]``
``list<string>``   lists of strings                              ``list<string>``
``mixed``          anything else (see below)                     ``string`` (text form)
=================  ============================================  ===========================

The mixed-type rule: a field whose values have kinds that do not widen into one of the types
above (``1`` in one document and ``"A1"`` in another, a number and a list, a nested object)
is ``mixed``. It stays in ``meta`` JSON like every field, its column holds each value's *text
form* (a string as itself, anything else as compact JSON: ``1`` -> ``"1"``, ``true`` ->
``"true"``), and filters on it compare text forms. The manifest's ``metadata`` section records
the kinds seen (``{"type": "mixed", "kinds": ["int", "string"]}``), and ``kosearch info``
shows them. A mixed field is never an error: one odd document must not fail a build of a
million. Types are re-inferred over the whole table whenever it is written, so an update that
adds a field, or changes a field's type, yields the right columns.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

PREFIX = "meta."  # a typed column is named PREFIX + field
MAX_FIELDS = 256  # the most frequent fields get columns; a corpus of free-form keys gets no more
TYPES = ("string", "int", "float", "bool", "date", "timestamp", "list<string>", "mixed")
_KIND_KEY = b"kosearch.type"  # Parquet field metadata: the type (and kinds of a mixed field)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?"
)
_INT64 = (-(2**63), 2**63 - 1)


def value_kind(value: Any) -> str | None:
    """The kind of one JSON value (None for null): a type name, or ``object``/``list``."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64[0] <= value <= _INT64[1] else "object"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        if _DATE.fullmatch(value) and parse_date(value) is not None:
            return "date"
        if _DATETIME.fullmatch(value) and parse_timestamp(value) is not None:
            return "timestamp"
        return "string"
    if isinstance(value, list):
        return "list<string>" if all(isinstance(v, str) for v in value) else "list"
    return "object"


def field_type(kinds: Iterable[str]) -> str:
    """The type of a field whose values have ``kinds`` (the widening rules above)."""
    seen = set(kinds)
    if not seen:
        return "string"  # only nulls: any string filter simply matches nothing
    if len(seen) == 1 and next(iter(seen)) in TYPES:
        return next(iter(seen))
    if seen <= {"int", "float"}:
        return "float"
    if seen <= {"date", "timestamp"}:
        return "timestamp"
    if seen <= {"string", "date", "timestamp"}:
        return "string"
    return "mixed"


def parse_date(text: str) -> date | None:
    """``YYYY-MM-DD`` as a date, or None."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def parse_timestamp(text: str) -> datetime | None:
    """An ISO-8601 date or date-time as an aware UTC datetime (naive ones taken as UTC)."""
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def text_form(value: Any) -> str:
    """How a value of a ``mixed`` field is stored and compared: strings as themselves."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def infer(metas: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{field: {"type": ..., ["kinds": [...]]}}`` over all the metas, in first-seen order."""
    kinds: dict[str, set[str]] = {}
    counts: Counter[str] = Counter()
    for meta in metas:
        for name, value in meta.items():
            seen = kinds.setdefault(name, set())
            counts[name] += 1
            kind = value_kind(value)
            if kind is not None:
                seen.add(kind)
    names = list(kinds)
    if len(names) > MAX_FIELDS:
        kept = {name for name, _ in counts.most_common(MAX_FIELDS)}
        log.warning("the documents have %d metadata fields; only the %d most frequent get "
                    "typed columns and can be filtered on", len(names), MAX_FIELDS)
        names = [name for name in names if name in kept]
    schema: dict[str, dict[str, Any]] = {}
    for name in names:
        kind = field_type(kinds[name])
        schema[name] = {"type": kind}
        if kind == "mixed":
            schema[name]["kinds"] = sorted(kinds[name])
    return schema


def arrow_type(kind: str) -> pa.DataType:
    """The pyarrow type of a column of this type."""
    import pyarrow as pa

    return {
        "string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
        "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC"),
        "list<string>": pa.list_(pa.string()), "mixed": pa.string(),
    }[kind]


def _convert(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "mixed":
        return text_form(value)
    if kind == "float":
        return float(value)
    if kind == "date":
        return parse_date(value)
    if kind == "timestamp":
        return parse_timestamp(value)
    return value


def columns(
    metas: list[Mapping[str, Any]], schema: Mapping[str, Mapping[str, Any]]
) -> list[tuple[pa.Field, pa.Array]]:
    """The typed columns of ``metas`` (one row each) under ``schema`` (from :func:`infer`)."""
    import pyarrow as pa

    out = []
    for name, info in schema.items():
        kind = info["type"]
        values = [_convert(meta.get(name), kind) for meta in metas]
        tag = json.dumps(dict(info), sort_keys=True).encode()
        field = pa.field(PREFIX + name, arrow_type(kind), metadata={_KIND_KEY: tag})
        out.append((field, pa.array(values, arrow_type(kind))))
    return out


def decode_metas(meta: pa.ChunkedArray | pa.Array) -> list[dict[str, Any]]:
    """The ``meta`` JSON column as dicts (an unreadable cell counts as no fields)."""
    out = []
    for text in meta.to_pylist():
        try:
            value = json.loads(text) if text else {}
        except ValueError:
            value = {}
        out.append(value if isinstance(value, dict) else {})
    return out


def with_typed_columns(table: pa.Table) -> pa.Table:
    """``table`` with its typed columns (re)computed from its ``meta`` column."""
    base = table.drop_columns([n for n in table.column_names if n.startswith(PREFIX)])
    metas = decode_metas(base.column("meta"))
    for field, array in columns(metas, infer(metas)):
        base = base.append_column(field, array)
    return base


def schema_of(arrow_schema: pa.Schema) -> dict[str, dict[str, Any]]:
    """``{field: {"type": ..., ...}}`` read back from the typed columns of a table schema."""
    out: dict[str, dict[str, Any]] = {}
    for field in arrow_schema:
        if not field.name.startswith(PREFIX):
            continue
        tag = (field.metadata or {}).get(_KIND_KEY)
        info = json.loads(tag) if tag else {"type": _type_of(field.type)}
        out[field.name[len(PREFIX):]] = info
    return out


def _type_of(dtype: pa.DataType) -> str:
    """The type name of a column written without our field metadata (by another tool)."""
    import pyarrow as pa

    for kind in TYPES[:-1]:
        if arrow_type(kind) == dtype:
            return kind
    return "int" if pa.types.is_integer(dtype) else "float" if pa.types.is_floating(dtype) \
        else "mixed"


def examples(table: pa.Table, name: str, n: int = 3) -> list[Any]:
    """Up to ``n`` distinct example values of a typed column (list columns: their elements)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(PREFIX + name)
    if pa.types.is_list(column.type):
        column = pc.list_flatten(column)
    seen: dict[Any, None] = {}
    for chunk in (column.chunks if isinstance(column, pa.ChunkedArray) else [column]):
        for value in chunk.drop_null().slice(0, 1000).to_pylist():
            seen.setdefault(value.isoformat() if hasattr(value, "isoformat") else value)
            if len(seen) >= n:
                return list(seen)
    return list(seen)
