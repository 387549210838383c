"""Adapters that let RAG frameworks use a kosearch :class:`~kosearch.index.Index`.

Each adapter lives in its own module and imports its framework only when that module is
imported, so ``import kosearch.integrations`` costs nothing. A missing framework raises
:class:`~kosearch.errors.MissingDependencyError` naming the extra to install:

* :mod:`kosearch.integrations.langchain`: ``KosearchRetriever``, ``KosearchEmbeddings``
  (``pip install 'kosearch[langchain]'``);
* :mod:`kosearch.integrations.llama_index`: ``KosearchLlamaRetriever``
  (``pip install 'kosearch[llamaindex]'``).

Example:
    >>> from kosearch.integrations import KosearchRetriever          # doctest: +SKIP
    >>> KosearchRetriever(index=index, k=5).invoke("전세 계약 갱신")    # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kosearch.types import HIT_FIELDS

if TYPE_CHECKING:
    from kosearch.types import Hit

_WHERE = {
    "KosearchRetriever": "kosearch.integrations.langchain",
    "KosearchEmbeddings": "kosearch.integrations.langchain",
    "KosearchLlamaRetriever": "kosearch.integrations.llama_index",
}

__all__ = ["KosearchEmbeddings", "KosearchLlamaRetriever", "KosearchRetriever", "hit_metadata"]


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """Everything about a hit but its text, as plain JSON-ready values (for framework metadata).

    Returns:
        Every field of :data:`~kosearch.types.HIT_FIELDS` but ``text``: the plain values first
        (``id``, ``chunk``, ``score``, ``rank``, ``title``, ``start``, ``end``), then the
        mappings, copied to dicts (``meta``, ``scores``), then ``highlights`` as JSON
        (:meth:`~kosearch.types.Highlights.to_dict`, or None).
    """
    values = {name: getattr(hit, name) for name in HIT_FIELDS if name not in ("text", "highlights")}
    plain = {name: v for name, v in values.items() if not isinstance(v, Mapping)}
    nested = {name: dict(v) for name, v in values.items() if isinstance(v, Mapping)}
    found = None if hit.highlights is None else hit.highlights.to_dict()
    return {**plain, **nested, "highlights": found}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'kosearch.integrations' has no attribute {name!r}")
