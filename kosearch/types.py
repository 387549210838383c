"""Value types shared by every layer: documents in, passages in between, hits out.

Also the fixed value lists (metrics, search modes, fusion methods, index types, precisions, hit
and report fields), defined once here and imported by the CLI, the server and the integrations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, TypeVar

from kosearch.errors import ConfigError

E = TypeVar("E", bound=Enum)


class Metric(str, Enum):
    """How vectors are compared. Scores are always "higher is better"."""

    COSINE = "cosine"
    IP = "ip"
    L2 = "l2"


def parse_metric(metric: Metric | str) -> Metric:
    """Turn a string into a :class:`Metric`, with a clear error listing the valid ones.

    Raises:
        ConfigError: If it is not one of cosine, ip, l2.
    """
    return _choice(Metric, metric, "metric")


def _choice(kind: type[E], value: Any, what: str) -> E:
    """``kind(value)``, or a ConfigError naming the value and listing the valid ones."""
    try:
        return kind(value)
    except ValueError:
        valid = ", ".join(m.value for m in kind)
        raise ConfigError(f"unknown {what} {value!r}; choose one of: {valid}") from None


@dataclass(frozen=True, slots=True)
class Document:
    """One document of a corpus.

    Attributes:
        id: The external, user-facing identifier (unique within a corpus).
        text: The document body.
        title: An optional title; prepended to every passage when encoding.
        meta: Every other field of the source record (JSON-compatible values).
    """

    id: str
    text: str
    title: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Passage:
    """A piece of a document that fits the model: ``doc_text[start:end] == text``."""

    doc_id: str
    chunk: int
    text: str
    start: int
    end: int
    title: str = ""


def join_title(title: str, text: str) -> str:
    """The text a model reads for a passage: ``title + "\\n" + text``, or ``text`` with no title."""
    return f"{title}\n{text}" if title else text


@dataclass(frozen=True, slots=True)
class Highlights:
    """Where a hit answers its query: the best sentence(s) and the matched words, as offsets.

    Attributes:
        snippet: The passage's best sentence(s) for the query: ``text[start:end]`` of the hit.
        start: Offset of the snippet in :attr:`Hit.text`.
        end: End offset (exclusive) of the snippet in :attr:`Hit.text`.
        spans: ``(start, end)`` offsets in :attr:`Hit.text` of the words that match query
            terms (the BM25 analysis: Kiwi morphemes), sorted, non-overlapping, each inside
            ``[start, end)``. A renderer bolds ``snippet[s - start : e - start]``.
    """

    snippet: str
    start: int
    end: int
    spans: tuple[tuple[int, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """``{"snippet", "start", "end", "spans": [{"start", "end"}, ...]}``."""
        return {"snippet": self.snippet, "start": self.start, "end": self.end,
                "spans": [{"start": s, "end": e} for s, e in self.spans]}


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result.

    Attributes:
        id: The document id.
        chunk: The passage number within the document (0 when not chunked).
        score: The final score; higher is better for every metric and mode.
        rank: 1-based position in the result list.
        text: The passage text.
        title: The document title.
        meta: The document's other fields.
        start: Character offset of the passage in the document text.
        end: End offset (exclusive) of the passage in the document text.
        scores: Per-retriever detail, e.g. ``{"dense_rank": 1, "dense_score": 0.83,
            "lexical_rank": 4, "lexical_score": 7.1}``: the ranks and scores of the passage in
            each retriever that found it (a hybrid hit found by one retriever only lacks the
            other's keys).
        highlights: The answering sentence(s) and the matched words (see
            :class:`Highlights`); None when not computed (``highlights=False``).
    """

    id: str
    chunk: int
    score: float
    rank: int
    text: str
    title: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)
    start: int = 0
    end: int = 0
    scores: Mapping[str, Any] = field(default_factory=dict)
    highlights: Highlights | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by ``kosearch query --json`` and the HTTP server."""
        return {
            "id": self.id,
            "chunk": self.chunk,
            "score": self.score,
            "rank": self.rank,
            "text": self.text,
            "title": self.title,
            "meta": dict(self.meta),
            "start": self.start,
            "end": self.end,
            "scores": dict(self.scores),
            "highlights": None if self.highlights is None else self.highlights.to_dict(),
        }


class Mode(str, Enum):
    """Which retrievers answer a query."""

    HYBRID = "hybrid"
    DENSE = "dense"
    LEXICAL = "lexical"



def parse_mode(mode: Mode | str) -> Mode:
    """Turn a string into a :class:`Mode`, with a clear error listing the valid ones."""
    return _choice(Mode, mode, "search mode")



@dataclass(frozen=True, slots=True)
class UpdateReport:
    """What an index or update run did.

    Attributes:
        added: Documents new to the index.
        updated: Documents whose title or text changed (re-encoded).
        unchanged: Documents found identical (not re-encoded; metadata refreshed).
        deleted: Documents removed (``--sync``, :meth:`Index.delete`).
        unknown: Ids asked to be deleted that the index does not hold.
        skipped_empty: Documents skipped for an empty text.
        encoded: Passages encoded by this run (resumed runs count only what they encoded).
        resumed: Passages whose vectors came from an interrupted earlier run.
    """

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    unknown: tuple[str, ...] = ()
    skipped_empty: int = 0
    encoded: int = 0
    resumed: int = 0

    def summary(self) -> str:
        """One line for people, e.g. ``3 added, 1 updated, 0 deleted, 96 unchanged``."""
        text = (f"{self.added} added, {self.updated} updated, {self.deleted} deleted, "
                f"{self.unchanged} unchanged")
        if self.unknown:
            text += f", {len(self.unknown)} unknown id(s) ignored"
        return text



METRICS: tuple[str, ...] = tuple(m.value for m in Metric)
MODES: tuple[str, ...] = tuple(m.value for m in Mode)
FUSION_METHODS: tuple[str, ...] = ("convex", "rrf")
SCORE_NORMALIZATIONS: tuple[str, ...] = ("minmax", "zscore", "dbsf")
"""How hybrid fusion normalizes each retriever's scores (:class:`kosearch.settings.Fusion`)."""
INDEX_TYPES: tuple[str, ...] = ("auto", "flat", "hnsw", "ivf-flat", "ivf-pq", "ivf-sq8")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16", "int8")
HIT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Hit))
"""The keys of :meth:`Hit.to_dict`, in order."""
REPORT_FIELDS: tuple[str, ...] = ("added", "updated", "unchanged", "deleted", "unknown")
"""What an update reports to a person or an HTTP client (the counts of :class:`UpdateReport`)."""
QUERY_BACKENDS: tuple[str, ...] = ("auto", "onnx", "torch")
#: The longest query, in characters, the command line and (by default) the server accept; a
#: model reads at most a few hundred tokens of it anyway.
MAX_QUERY_CHARS = 2000
"""How queries are encoded: onnxruntime on an ONNX export (auto, onnx) or sentence-transformers."""
