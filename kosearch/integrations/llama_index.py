"""A LlamaIndex retriever over an :class:`~kosearch.index.Index` (the ``llamaindex`` extra:
``pip install 'kosearch[llamaindex]'``).

Example:
    >>> from kosearch.integrations.llama_index import KosearchLlamaRetriever  # doctest: +SKIP
    >>> retriever = KosearchLlamaRetriever(Index.load("my-index"), k=5)       # doctest: +SKIP
    >>> nodes = retriever.retrieve("전세 계약 갱신 요구권")                       # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from kosearch.errors import ConfigError, MissingDependencyError

try:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import (
        NodeRelationship,
        NodeWithScore,
        QueryBundle,
        RelatedNodeInfo,
        TextNode,
    )
    from llama_index.core.vector_stores.types import (
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
    )
except ImportError as e:  # pragma: no cover - exercised by simulating the missing package
    raise MissingDependencyError(
        "the LlamaIndex integration needs llama-index-core, which is not installed; "
        "pip install 'kosearch[llamaindex]'"
    ) from e

from kosearch.index import Index
from kosearch.integrations import hit_metadata
from kosearch.types import HIT_FIELDS, Hit, parse_mode

__all__ = ["KosearchLlamaRetriever", "to_filter"]

_OPERATORS = {
    "==": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte",
    "in": "$in", "nin": "$nin", "contains": "$contains", "any": "$in",
}

#: Metadata kept out of the text that LlamaIndex shows the LLM or re-embeds: only ``title``
#: and ``meta`` describe the content (and ``text`` is the node's text, not metadata); the rest
#: is bookkeeping.
_BOOKKEEPING = [name for name in HIT_FIELDS if name not in ("text", "title", "meta")]


class KosearchLlamaRetriever(BaseRetriever):
    """A LlamaIndex retriever that searches a kosearch index.

    Each hit becomes ``NodeWithScore(TextNode(...), score=hit.score)``: the node's text is the
    passage, its id ``"<document id>#<chunk>"``, its SOURCE relationship the document id, and
    its metadata ``id``, ``chunk``, ``score``, ``rank``, ``title``, ``start``, ``end``,
    ``meta`` and ``scores`` (see :func:`kosearch.integrations.hit_metadata`).

    Args:
        index: The index to search.
        k: How many documents (or passages) to return.
        mode: ``"hybrid"``, ``"dense"`` or ``"lexical"``; ``None`` is the index's default.
        passages: Return raw passage hits instead of one (best) passage per document.
        filters: LlamaIndex ``MetadataFilters`` (or a kosearch filter dict), applied inside the
            search (:func:`to_filter`), so ``k`` documents come back whenever ``k`` match.
        callback_manager: LlamaIndex callbacks.

    Raises:
        ConfigError: ``k`` is not positive, ``mode`` is unknown, or a filter operator has no
            kosearch equivalent.
    """

    def __init__(
        self,
        index: Index,
        *,
        k: int = 4,
        mode: str | None = None,
        passages: bool = False,
        filters: MetadataFilters | dict[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        self.index = index
        self.k = k
        self.mode = None if mode is None else parse_mode(mode).value
        self.passages = passages
        self.filter = to_filter(filters) if isinstance(filters, MetadataFilters) else filters
        self._lock = threading.Lock()  # the index's tokenizer and Kiwi are not thread-safe
        super().__init__(callback_manager=callback_manager)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        with self._lock:
            hits = self.index.search(
                query_bundle.query_str, self.k, mode=self.mode, passages=self.passages,
                filter=self.filter,
            )
        return [NodeWithScore(node=_node(hit), score=hit.score) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Searching is CPU work: keep it off the event loop.
        return await asyncio.to_thread(self._retrieve, query_bundle)


def to_filter(filters: MetadataFilters) -> dict[str, Any]:
    """A LlamaIndex ``MetadataFilters`` as a kosearch filter.

    EQ NE GT GTE LT LTE IN NIN CONTAINS map to ``$eq $ne $gt $gte $lt $lte $in $nin
    $contains``; ANY (a list field holds any of the values) to ``$in``, ALL (holds every
    value) to ``$and`` of ``$contains``, IS_EMPTY to ``$exists: false``; nested filters and
    the conditions AND, OR and NOT (none of the filters holds) are kept.

    Raises:
        ConfigError: an operator kosearch has no equivalent for (TEXT_MATCH).

    Example:
        >>> to_filter(MetadataFilters(filters=[MetadataFilter(key="year", value=2020,
        ...                                                   operator=">=")]))
        {'year': {'$gte': 2020}}
    """
    parts = [to_filter(f) if isinstance(f, MetadataFilters) else _one(f)
             for f in filters.filters]
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if condition is FilterCondition.NOT:
        return {"$not": parts[0] if len(parts) == 1 else {"$and": parts}}
    if len(parts) == 1:
        return parts[0]
    return {"$or" if condition is FilterCondition.OR else "$and": parts}


def _one(item: MetadataFilter) -> dict[str, Any]:
    operator = FilterOperator(item.operator).value
    if operator == "all":
        values = item.value if isinstance(item.value, list) else [item.value]
        return {"$and": [{item.key: {"$contains": v}} for v in values]}
    if operator == "is_empty":
        return {item.key: {"$exists": False}}
    if operator not in _OPERATORS:
        raise ConfigError(
            f"the LlamaIndex filter operator {operator!r} (on {item.key!r}) has no kosearch "
            f"equivalent; use one of {', '.join(sorted(_OPERATORS))}, all or is_empty"
        )
    return {item.key: {_OPERATORS[operator]: item.value}}


def _node(hit: Hit) -> TextNode:
    return TextNode(
        id_=f"{hit.id}#{hit.chunk}",
        text=hit.text,
        metadata=hit_metadata(hit),
        excluded_llm_metadata_keys=list(_BOOKKEEPING),
        excluded_embed_metadata_keys=list(_BOOKKEEPING),
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=hit.id)},
    )
