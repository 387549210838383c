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
except ImportError as e:  # pragma: no cover - exercised by simulating the missing package
    raise MissingDependencyError(
        "the LlamaIndex integration needs llama-index-core, which is not installed; "
        "pip install 'kosearch[llamaindex]'"
    ) from e

from kosearch.index import Index
from kosearch.integrations import hit_metadata
from kosearch.types import HIT_FIELDS, Hit, parse_mode

__all__ = ["KosearchLlamaRetriever"]

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
        callback_manager: LlamaIndex callbacks.

    Raises:
        ConfigError: ``k`` is not positive or ``mode`` is unknown.
    """

    def __init__(
        self,
        index: Index,
        *,
        k: int = 4,
        mode: str | None = None,
        passages: bool = False,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        self.index = index
        self.k = k
        self.mode = None if mode is None else parse_mode(mode).value
        self.passages = passages
        self._lock = threading.Lock()  # the index's tokenizer and Kiwi are not thread-safe
        super().__init__(callback_manager=callback_manager)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        with self._lock:
            hits = self.index.search(
                query_bundle.query_str, self.k, mode=self.mode, passages=self.passages
            )
        return [NodeWithScore(node=_node(hit), score=hit.score) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Searching is CPU work: keep it off the event loop.
        return await asyncio.to_thread(self._retrieve, query_bundle)


def _node(hit: Hit) -> TextNode:
    return TextNode(
        id_=f"{hit.id}#{hit.chunk}",
        text=hit.text,
        metadata=hit_metadata(hit),
        excluded_llm_metadata_keys=list(_BOOKKEEPING),
        excluded_embed_metadata_keys=list(_BOOKKEEPING),
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=hit.id)},
    )
