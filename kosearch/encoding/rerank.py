"""Re-scoring retrieved candidates with a cross-encoder.

A cross-encoder reads the query and one passage together, so it ranks a short candidate list
(the top few dozen hits of the dense or hybrid search) better than the bi-encoder that found
them, at the price of one forward pass per pair. ``sentence_transformers`` (and torch) are
imported only when a :class:`CrossEncoderReranker` is created, so ``import kosearch`` stays
cheap. Loading follows the encoder's rules: a local directory, then the local cache, and the
model hub only when it answers, so an offline machine fails in seconds with one clear sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from kosearch.encoding.loading import (
    apply_max_tokens,
    as_list,
    check_sizes,
    load_model,
    select_device,
)
from kosearch.errors import ModelLoadError

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

logger = logging.getLogger(__name__)

T = TypeVar("T")

_FIX = "pass the path of a local cross-encoder model directory instead"


class Reranker(Protocol):
    """What :func:`rerank` needs: a relevance score for each (query, text) pair.

    Attributes:
        name: The model id or path the reranker was created with.
    """

    name: str

    def score(self, query: str, texts: Sequence[str]) -> NDArray[np.float32]:
        """Score each text against the query; higher is more relevant, one score per text."""
        ...


class CrossEncoderReranker:
    """A :class:`Reranker` backed by a sentence-transformers ``CrossEncoder``.

    Scores are the model's raw logits (no sigmoid), which keeps their order and avoids the
    saturation of a squashed score; a model with several outputs is scored by its last one
    (the "relevant" class of a two-class classifier).

    Args:
        model: A model id (in the Hugging Face hub cache) or a local model directory.
        device: The torch device; ``None`` picks one with
            :func:`kosearch.encoding.encoder.select_device`.
        batch_size: Pairs per forward pass.
        max_tokens: Lowers (or raises, up to what the model supports) the truncation length
            of a query and passage pair.

    Raises:
        ModelLoadError: The model cannot be found or loaded, or it is an embedding model
            rather than a cross-encoder.
        ConfigError: ``batch_size``, ``max_tokens`` or ``device`` is invalid.

    Example:
        >>> reranker = CrossEncoderReranker("/models/ko-reranker", device="cpu")
        >>> reranker.score("전세 계약 갱신", ["갱신 요구권은 만료 전에 쓴다.", "맑다."]).shape
        (2,)
    """

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        batch_size: int = 32,
        max_tokens: int | None = None,
    ) -> None:
        check_sizes(batch_size, max_tokens)
        import torch

        self.name = model
        self.batch_size = batch_size
        self.device = select_device(device)
        logger.info("loading reranker %s on %s", model, self.device)
        self._model = _load_cross_encoder(model, self.device)
        _check_is_cross_encoder(self._model, model)
        self.max_tokens = apply_max_tokens(self._model, max_tokens)
        self._identity = torch.nn.Identity()

    def __repr__(self) -> str:
        return (
            f"CrossEncoderReranker(name={self.name!r}, max_tokens={self.max_tokens}, "
            f"device={self.device!r})"
        )

    @property
    def model(self) -> CrossEncoder:
        """The underlying ``CrossEncoder`` (for advanced use)."""
        return self._model

    def score(self, query: str, texts: Sequence[str]) -> NDArray[np.float32]:
        """Score each text against the query with the cross-encoder.

        Args:
            query: The question.
            texts: The candidate passages.

        Returns:
            A ``(len(texts),)`` float32 array of raw logits; higher is more relevant.

        Example:
            >>> reranker.score("서울 날씨", ["오늘 서울은 맑다.", "민수는 책을 샀다."])
            array([ 2.31, -4.07], dtype=float32)
        """
        items = as_list(texts)
        if not items:
            return np.empty(0, dtype=np.float32)
        raw = self._model.predict(
            [(query, text) for text in items],
            batch_size=self.batch_size,
            show_progress_bar=False,
            activation_fn=self._identity,
            convert_to_numpy=True,
        )
        scores = np.asarray(raw, dtype=np.float32)
        if scores.ndim == 2:
            scores = scores[:, -1]
        return np.ascontiguousarray(scores.reshape(len(items)))


def rerank(
    reranker: Reranker, query: str, candidates: Sequence[T], text_of: Callable[[T], str]
) -> list[tuple[T, float]]:
    """Re-score candidates with a reranker and sort them, best first.

    Args:
        reranker: Scores (query, text) pairs.
        query: The question.
        candidates: Anything with a text, e.g. :class:`kosearch.types.Hit` objects.
        text_of: Gives the text to score for one candidate.

    Returns:
        ``(candidate, score)`` pairs sorted by score, highest first; candidates with equal
        scores keep their input order, and a NaN score sorts last.

    Raises:
        ValueError: The reranker returned a number of scores other than one per candidate.

    Example:
        >>> ranked = rerank(reranker, "서울 날씨", hits, lambda hit: hit.text)
        >>> [(hit.id, round(score, 2)) for hit, score in ranked]
        [('d2', 3.1), ('d7', -0.4)]
    """
    items = list(candidates)
    if not items:
        return []
    scores = np.asarray(reranker.score(query, [text_of(item) for item in items]))
    if scores.shape != (len(items),):
        raise ValueError(
            f"reranker {reranker.name!r} returned scores of shape {scores.shape} "
            f"for {len(items)} candidates"
        )
    # Negating keeps NaN as NaN, which a numpy sort places last; "stable" keeps ties in order.
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    return [(items[i], float(scores[i])) for i in order]


# ---------------------------------------------------------------------------- helpers


def _load_cross_encoder(model: str, device: str) -> CrossEncoder:
    """Load a cross-encoder from a directory, the cache or (when it answers) the hub."""
    from sentence_transformers import CrossEncoder

    loaded: CrossEncoder = load_model(CrossEncoder, model, device, kind="reranker model", fix=_FIX)
    return loaded


def _check_is_cross_encoder(model: Any, name: str) -> None:
    """Refuse an embedding model, which ``CrossEncoder`` would load with a random, untrained head.

    A checkpoint saved as a bare encoder lists only base architectures (``BertModel``); a
    reranker lists a head (``...ForSequenceClassification``, or ``...ForCausalLM`` for the
    yes/no rerankers).
    """
    config = getattr(model.transformers_model, "config", None)
    saved = list(getattr(config, "architectures", None) or [])
    if saved and not any("For" in arch for arch in saved):
        raise ModelLoadError(
            f"cannot use '{name}' as a reranker: it is an embedding model ({saved[0]}) without "
            "a scoring head, not a cross-encoder; pass a cross-encoder (reranker) model"
        )


class RerankerCache:
    """Cross-encoders by model id, each loaded once on first use (on ``device``)."""

    def __init__(self, device: str | None = None) -> None:
        self._device = device
        self._loaded: dict[str, Reranker] = {}

    def get(self, rerank: Reranker | str | None) -> Reranker | None:
        """``rerank`` itself unless it is a model id or path: then its loaded cross-encoder."""
        if rerank is None or not isinstance(rerank, str):
            return rerank
        if rerank not in self._loaded:
            self._loaded[rerank] = CrossEncoderReranker(rerank, device=self._device)
        return self._loaded[rerank]
