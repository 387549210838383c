"""``kosearch.train.temperature``: the MNRL scale fitted to the base model (``--scale auto``)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from kosearch.train.temperature import SAMPLE, SCALE_RANGE, best_scale, fit_scale, in_batch_loss


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _pairs(n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``n`` passages, and questions that are their passage plus ``noise``."""
    rng = np.random.default_rng(seed)
    passages = _unit(rng.normal(size=(n, 32)))
    queries = _unit(passages + noise * rng.normal(size=(n, 32)))
    return queries.astype(np.float32), passages.astype(np.float32), [f"p{i}" for i in range(n)]


def _reference_loss(q: np.ndarray, p: np.ndarray, scale: float) -> float:
    logits = scale * _unit(q) @ _unit(p).T
    logits -= logits.max(axis=1, keepdims=True)
    return float(-np.mean(np.diag(logits - np.log(np.exp(logits).sum(axis=1, keepdims=True)))))


def test_the_loss_is_mnrl_over_each_batch() -> None:
    q, p, texts = _pairs(16, 0.5)
    assert in_batch_loss(q, [p], [texts], 30.0, 16) == pytest.approx(_reference_loss(q, p, 30.0))
    halves = [_reference_loss(q[s], p[s], 30.0) for s in (slice(0, 8), slice(8, 16))]
    assert in_batch_loss(q, [p], [texts], 30.0, 8) == pytest.approx(np.mean(halves))


def test_a_passage_equal_to_the_positive_is_not_a_negative() -> None:
    """Two questions of one passage: the second copy is not counted against the first."""
    q, p, texts = _pairs(6, 0.3)
    p[1], texts[1] = p[0], texts[0]
    logits = 50.0 * _unit(q) @ _unit(p).T
    expected = []
    for row in range(6):
        others = [j for j in range(6) if j == row or texts[j] != texts[row]]
        expected.append(np.log(np.exp(logits[row, others]).sum()) - logits[row, row])
    assert in_batch_loss(q, [p], [texts], 50.0, 6) == pytest.approx(np.mean(expected))
    assert in_batch_loss(q, [p], [texts], 50.0, 6) < _reference_loss(q, p, 50.0)


def test_a_model_that_ranks_well_gets_the_highest_scale() -> None:
    q, p, texts = _pairs(32, 0.05)
    assert best_scale(q, [p], [texts], 32) == SCALE_RANGE[1]


def test_a_model_that_ranks_at_random_gets_the_lowest_scale() -> None:
    rng = np.random.default_rng(1)
    q = _unit(rng.normal(size=(32, 32))).astype(np.float32)
    _, p, texts = _pairs(32, 0.0)
    assert best_scale(q, [p], [texts], 32) == SCALE_RANGE[0]


def test_a_model_with_some_mistakes_gets_the_scale_of_least_loss() -> None:
    q, p, texts = _pairs(64, 0.22, seed=2)
    scale = best_scale(q, [p], [texts], 32)
    assert SCALE_RANGE[0] < scale < SCALE_RANGE[1]
    at = in_batch_loss(q, [p], [texts], scale, 32)
    for other in (scale * 0.8, scale * 1.25, *SCALE_RANGE):
        assert at < in_batch_loss(q, [p], [texts], other, 32)


def test_hard_negatives_join_the_batch() -> None:
    q, p, texts = _pairs(16, 0.5)
    negatives = np.roll(p, 1, axis=0)
    with_negatives = in_batch_loss(q, [p, negatives], [texts, texts[-1:] + texts[:-1]], 30.0, 16)
    # Every negative is another question's positive: the same passages, so the same
    # candidates, except that each question's own positive is not doubled.
    assert with_negatives > in_batch_loss(q, [p], [texts], 30.0, 16)


class _Encoder:
    """Deterministic vectors from the texts' hashes; counts what it encodes."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        self.passages: list[str] = []

    def _vectors(self, texts: list[str]) -> np.ndarray:
        seeds = [zlib.crc32(t.encode()) for t in texts]
        return np.stack([np.random.default_rng(s).normal(size=16) for s in seeds]).astype(
            np.float32)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        self.queries += texts
        return self._vectors([t.removeprefix("q") for t in texts])

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        self.passages += texts
        return self._vectors(texts)


def test_fit_scale_encodes_a_seeded_sample_of_the_columns() -> None:
    n = SAMPLE * 3
    columns = {"anchor": [f"q{i}" for i in range(n)], "positive": [f"{i}" for i in range(n)],
               "negative_1": [f"{i + 1}" for i in range(n)]}
    first, second = _Encoder(), _Encoder()
    scale = fit_scale(first, columns, 16, seed=5)
    assert scale == fit_scale(second, columns, 16, seed=5)
    assert first.queries == second.queries and len(first.queries) == SAMPLE
    assert len(first.passages) == 2 * SAMPLE  # the positive and the negative of each
    assert set(first.queries) < set(columns["anchor"])
    # The questions equal their passages here, so any sample ranks perfectly: the highest scale.
    assert fit_scale(_Encoder(), columns, 16, seed=6) == scale
    assert scale == SCALE_RANGE[1]
