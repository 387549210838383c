"""Map corpus records onto Documents, checking the id and text fields first.

A record is one JSON object, CSV/TSV row or Parquet row (a dict). :func:`require_fields` checks
a record or a header for the id and text fields, naming what it did find; :func:`to_document`
turns a record into a :class:`~kosearch.types.Document`. Every error is a ``CorpusError`` that
starts with the location it is given.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from kosearch.errors import CorpusError
from kosearch.ingest.jsonl import json_type_name
from kosearch.settings import Fields
from kosearch.types import Document

_MAX_LISTED = 20


def to_document(record: dict[str, Any], fields: Fields, where: str) -> Document:
    """Map one record onto a Document; every field not used goes to ``meta`` unchanged."""
    id_key = require_fields(record, fields, where, "the record has fields")
    doc_id = _id_value(record[id_key], id_key, where)
    text = record[fields.text]
    if not isinstance(text, str):
        raise CorpusError(
            f"{where}: field '{fields.text}' must be a string, not {json_type_name(text)}"
        )
    title = record.get(fields.title)
    used = (id_key, fields.text, fields.title)
    meta = {key: value for key, value in record.items() if key not in used}
    return Document(
        id=doc_id,
        text=text,
        title="" if title is None else title if isinstance(title, str) else str(title),
        meta=meta,
    )


def require_fields(names: Collection[str], fields: Fields, where: str, has: str) -> str:
    """Return the id key to use; raise if the id or the text field is missing."""
    if fields.id is not None:
        id_key: str | None = fields.id if fields.id in names else None
        tried = f"'{fields.id}'"
    else:
        id_key = "id" if "id" in names else "_id" if "_id" in names else None
        tried = "'id', then '_id'"
    if id_key is None:
        raise CorpusError(
            f"{where}: missing id field (tried {tried}); {has}: {_listing(names)} "
            "(choose the id field with --id-field)"
        )
    if fields.text not in names:
        raise CorpusError(
            f"{where}: missing field '{fields.text}'; {has}: {_listing(names)} "
            "(choose the text field with --text-field)"
        )
    return id_key


def _id_value(value: Any, key: str, where: str) -> str:
    """An id as a string: strings stay, integers are converted, anything else is an error."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CorpusError(
            f"{where}: field '{key}' must be a string or an integer, not {json_type_name(value)}"
        )
    doc_id = str(value)
    if not doc_id.strip():
        raise CorpusError(f"{where}: field '{key}' is empty; every document needs an id")
    return doc_id


def _listing(names: Iterable[str]) -> str:
    """Comma-separated names, capped so that a message stays one readable line."""
    items = [str(name).replace("\n", " ") for name in names]
    shown = ", ".join(items[:_MAX_LISTED]) or "(none)"
    extra = len(items) - _MAX_LISTED
    return f"{shown}, ... ({extra} more)" if extra > 0 else shown
