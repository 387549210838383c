"""Value types shared by every layer: documents in, passages in between, hits out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Metric(str, Enum):
    """How vectors are compared. Scores are always "higher is better"."""

    COSINE = "cosine"
    IP = "ip"
    L2 = "l2"


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
        }
