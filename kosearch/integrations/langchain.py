"""LangChain adapters: a retriever over an :class:`~kosearch.index.Index`, and its encoder as
LangChain ``Embeddings`` (the ``langchain`` extra: ``pip install 'kosearch[langchain]'``).

Example:
    >>> from kosearch import Index                                           # doctest: +SKIP
    >>> from kosearch.integrations.langchain import KosearchRetriever       # doctest: +SKIP
    >>> retriever = KosearchRetriever(index=Index.load("my-index"), k=5)    # doctest: +SKIP
    >>> docs = retriever.invoke("전세 계약 갱신 요구권은 언제 쓸 수 있나요?")   # doctest: +SKIP
    >>> docs[0].metadata["score"], docs[0].metadata["id"]                   # doctest: +SKIP
"""

from __future__ import annotations

import threading
from dataclasses import fields
from typing import Any, Literal

from kosearch.errors import ConfigError, MissingDependencyError

try:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict, Field, PrivateAttr
except ImportError as e:  # pragma: no cover - exercised by simulating the missing package
    raise MissingDependencyError(
        "the LangChain integration needs langchain-core, which is not installed; "
        "pip install 'kosearch[langchain]'"
    ) from e

import numpy as np

from kosearch.index import Index
from kosearch.integrations import hit_metadata
from kosearch.settings import SearchOptions
from kosearch.types import MODES

__all__ = ["KosearchEmbeddings", "KosearchRetriever"]


_SEARCH_OPTIONS = tuple(f.name for f in fields(SearchOptions))


class KosearchRetriever(BaseRetriever):
    """A LangChain retriever that searches a kosearch index.

    Each hit becomes a ``Document`` whose ``page_content`` is the passage text and whose
    ``metadata`` holds ``id`` (the document id), ``chunk``, ``score`` (higher is better),
    ``rank``, ``title``, ``start``, ``end``, ``meta`` (the document's other fields) and
    ``scores`` (per-retriever ranks and scores).

    Attributes:
        index: The index to search.
        k: How many documents (or passages) to return.
        mode: ``"hybrid"``, ``"dense"`` or ``"lexical"``; ``None`` is the index's default.
        passages: Return raw passage hits instead of one (best) passage per document.
        filter: A metadata filter (Mongo-style, as for LangChain's vector stores: ``$eq $ne``
            (or ``$neq``) ``$gt $gte $lt $lte $in $nin $exists $contains $and $or $not``);
            see :mod:`kosearch.retrieval.filters`. It runs inside the search, so ``k``
            documents come back whenever ``k`` match.
        search_kwargs: As for LangChain's ``VectorStoreRetriever``: ``{"k": ..., "filter":
            ...}`` override the fields above, as may any
            :class:`~kosearch.settings.SearchOptions` field (``mode``, ``passages``,
            ``rerank``, ``rerank_top``, ``fusion``). ``invoke(query, filter=..., k=...)``
            overrides them for one call.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Index
    k: int = Field(default=4, gt=0)
    mode: Literal[MODES] | None = None  # type: ignore[valid-type]
    passages: bool = False
    filter: dict[str, Any] | None = None
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    # The index's tokenizer and Kiwi are not safe to share between threads, and LangChain's
    # ``batch`` runs ``invoke`` on a thread pool: searches of one retriever take turns.
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        options = {"k": self.k, "filter": self.filter, "mode": self.mode,
                   "passages": self.passages, **self.search_kwargs, **kwargs}
        unknown = sorted(set(options) - {"k", "filter", *_SEARCH_OPTIONS})
        if unknown:
            raise ConfigError(f"unknown search option(s) {', '.join(unknown)}; KosearchRetriever "
                              f"takes k, filter, {', '.join(_SEARCH_OPTIONS)}")
        search = SearchOptions(**{n: options[n] for n in _SEARCH_OPTIONS if n in options})
        with self._lock:
            hits = self.index.search(query, options["k"], filter=options["filter"],
                                     **search.keywords())
        return [Document(page_content=hit.text, metadata=hit_metadata(hit)) for hit in hits]


class KosearchEmbeddings(Embeddings):
    """The query/passage encoder of an index as LangChain ``Embeddings``.

    ``embed_documents`` uses the model's passage prompt and ``embed_query`` its query prompt
    (e.g. ``passage: `` / ``query: `` for e5 models), so the vectors match the index's.

    Args:
        index: The index whose model to use (loaded on first use if it is not yet).
        normalize: Scale vectors to unit length; ``None`` does so when the index compares by
            cosine, so that the vectors are the ones the index stores and searches with.
    """

    def __init__(self, index: Index, *, normalize: bool | None = None) -> None:
        self.index = index
        self.normalize = index.manifest.metric == "cosine" if normalize is None else normalize
        self._lock = threading.Lock()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Encode passages with the passage prompt; one float list per text."""
        if not texts:
            return []
        with self._lock:
            vectors = self.index.encoder.encode_passages(list(texts))
        return self._floats(vectors)

    def embed_query(self, text: str) -> list[float]:
        """Encode one query with the query prompt."""
        with self._lock:
            vectors = self.index.encoder.encode_queries([text])
        return self._floats(vectors)[0]

    def _floats(self, vectors: np.ndarray) -> list[list[float]]:
        array = np.asarray(vectors, dtype=np.float32)
        if self.normalize:
            norms = np.linalg.norm(array, axis=1, keepdims=True)
            array = array / np.where(norms > 0, norms, 1.0)
        return array.astype(float).tolist()
