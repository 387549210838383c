"""The settings of an index and of a search: plain frozen dataclasses, saved as JSON.

``IndexSettings`` (with its ``Fields`` and ``ChunkSettings``) is what a build is told; the
manifest records it, and :meth:`kosearch.storage.manifest.Manifest.settings` reads it back, so an
update reuses exactly the settings the index was built with. ``Fusion`` is how hybrid search
merges its two lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from kosearch.errors import ConfigError
from kosearch.types import FUSION_METHODS, SCORE_NORMALIZATIONS, Metric, parse_metric

RRF_K = 60
RERANK_TOP = 30  # passages re-scored by a cross-encoder
FUSION_DEPTH = 100  # best scores per retriever that fusion's statistics read (README, "Quality")


@dataclass(frozen=True, slots=True)
class Fields:
    """Which record fields hold the id, the text and the title.

    Attributes:
        id: The id field; ``None`` means ``id``, falling back to ``_id`` (BEIR corpora),
            decided per record.
        text: The text field; it must be present and hold a string.
        title: The optional title field; a missing or null title becomes ``""``.
    """

    id: str | None = None
    text: str = "text"
    title: str = "title"



@dataclass(frozen=True, slots=True)
class ChunkSettings:
    """How documents become passages.

    Attributes:
        max_tokens: Token budget of one encoded passage, prompt, title and special tokens
            included; ``None`` means the model's limit, capped at 512.
        overlap: Tokens of overlap: each passage starts with as many whole trailing sentences
            of the previous passage as fit in this many tokens (0 = none).
        enabled: ``False`` keeps each document whole (one passage, chunk 0, its text without
            surrounding whitespace); documents longer than the model's limit are then counted
            in ``ChunkStats.over_limit``.
    """

    max_tokens: int | None = None
    overlap: int = 0
    enabled: bool = True



@dataclass(frozen=True, slots=True)
class IndexSettings:
    """How to build an index; every field has a sensible default.

    Attributes:
        model: sentence-transformers model id or local directory (None = the registry default).
        metric: ``cosine`` (default), ``ip`` or ``l2``.
        batch_size: passages per encoder forward pass.
        fields: which record fields hold the id, text and title.
        strict: fail on empty texts instead of skipping them.
        chunking: passage splitting settings (see :class:`ChunkSettings`).
        lexical: also build the Kiwi BM25 index (enables hybrid search).
        device: ``cpu``, ``cuda``, ... (None = auto).
        query_prompt: override the model's query prompt.
        passage_prompt: override the model's passage prompt.
        index_type: the vector index, ``auto`` (exact while small, ANN when large), ``flat``,
            ``hnsw``, ``ivf-flat``, ``ivf-pq`` or ``ivf-sq8`` (see :mod:`kosearch.storage.ann`).
        precision: ``auto``, ``fp32``, ``bf16``, ``fp16`` or ``int8`` (see
            :mod:`kosearch.encoding.precision`; None = fp32).
        processes: encoder worker processes (None = decide by corpus size and machine).
    """

    model: str | None = None
    metric: Metric | str = Metric.COSINE
    batch_size: int = 32
    fields: Fields = field(default_factory=Fields)
    strict: bool = False
    chunking: ChunkSettings = field(default_factory=ChunkSettings)
    lexical: bool = True
    device: str | None = None
    query_prompt: str | None = None
    passage_prompt: str | None = None
    index_type: str = "auto"
    precision: str | None = None
    processes: int | None = None

    def validated_metric(self) -> Metric:
        """``metric`` as a :class:`Metric` (see :func:`kosearch.types.parse_metric`).

        Raises:
            ConfigError: If it is not one of cosine, ip, l2.
        """
        return parse_metric(self.metric)



@dataclass(frozen=True, slots=True)
class Fusion:
    """How hybrid search merges the dense and lexical lists of one query.

    Every candidate passage found by either retriever is scored exactly by both (its stored
    vector's similarity, its BM25 score), each score is normalized by statistics of that
    retriever's best ``depth`` scores for the query, and the two are summed with weights. A
    passage's fused score so depends only on the query and the passage, never on ``k``; the
    search goes deeper until its hits are certainly the best (see
    :mod:`kosearch.retrieval.candidates`). The default and its measurements are in the README
    ("Hybrid search", "Quality").

    Attributes:
        method: ``convex`` (weighted sum of normalized scores) or ``rrf`` (reciprocal ranks,
            within each list's best ``depth``).
        dense_weight: the dense list's weight in [0, 1] (the lexical list gets the rest), or
            None to adapt it per query: each retriever weighs by how far its best score stands
            above its other best scores (:attr:`kosearch.retrieval.fusion.Spread.confidence`).
        rrf_k: the RRF constant (Cormack et al. 2009).
        normalize: ``minmax`` (best score 1, the ``depth``-th 0), ``zscore`` or ``dbsf``
            (mean +- 3 standard deviations to [0, 1]); see :mod:`kosearch.retrieval.fusion`.
        depth: how many of each retriever's best scores the statistics read (and the fewest
            candidates each retriever contributes).
    """

    method: str = "convex"
    dense_weight: float | None = 0.5
    rrf_k: int = RRF_K
    normalize: str = "zscore"
    depth: int = FUSION_DEPTH

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise ConfigError(f"unknown fusion method {self.method!r}; choose convex or rrf")
        if self.dense_weight is not None and not 0.0 <= self.dense_weight <= 1.0:
            raise ConfigError(f"dense weight must be between 0 and 1, got {self.dense_weight}")
        if self.rrf_k < 1:
            raise ConfigError(f"the RRF constant must be at least 1, got {self.rrf_k}")
        if self.normalize not in SCORE_NORMALIZATIONS:
            raise ConfigError(f"unknown score normalization {self.normalize!r}; choose one of: "
                              f"{', '.join(SCORE_NORMALIZATIONS)}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise ConfigError(f"the fusion depth must be a positive integer, got {self.depth!r}")



@dataclass(frozen=True, slots=True)
class SearchOptions:
    """How a search ranks, besides its queries, ``k`` and filter: the keyword arguments of
    :meth:`kosearch.Index.search`, defined once, passed as one value by the front ends (the
    HTTP server's batcher groups searches by it, the integrations keep one).

    Attributes:
        mode: ``hybrid`` (default when the index has BM25), ``dense`` or ``lexical``.
        passages: raw passage hits instead of one (best) passage per document.
        rerank: a cross-encoder (model id, local path, or a ``Reranker``), or None.
        rerank_top: how many fused passages the cross-encoder re-scores.
        fusion: how hybrid mode merges its two lists (None: the default :class:`Fusion`).
        highlights: give each hit its best sentence for the query and the matched words
            (``Hit.highlights``); False skips that step (and Kiwi) and leaves them None.
    """

    mode: str | None = None
    passages: bool = False
    rerank: Any = None
    rerank_top: int = RERANK_TOP
    fusion: Fusion | None = None
    highlights: bool = True

    def keywords(self) -> dict[str, Any]:
        """As keyword arguments of :meth:`kosearch.Index.search` / ``search_batch``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
