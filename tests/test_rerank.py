"""Reranking: the CrossEncoderReranker on a tiny cross-encoder built offline, and rerank()."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from tinymodels import build_tiny_cross_encoder

from kosearch.encoding.rerank import CrossEncoderReranker, Reranker, rerank
from kosearch.errors import ConfigError, ModelLoadError

pytestmark = pytest.mark.st

QUERY = "서울 날씨는 어때?"
TEXTS = [
    "오늘 서울은 맑다.",
    "민수는 도서관에서 책을 빌렸다고 말했다.",
    "커피",
    "부산 근처에 새로운 자전거 가게가 생겼다고 한다. 지영은 주말에 그곳에 갔다.",
    "제주도의 날씨는 어제 흐리다.",
    "",
]


@pytest.fixture(scope="module")
def reranker(tiny_cross_encoder_dir: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(str(tiny_cross_encoder_dir), device="cpu", batch_size=4)


class FakeReranker:
    """Scores from a fixed table; counts its calls."""

    name = "fake"

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table
        self.calls = 0

    def score(self, query: str, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls += 1
        return np.asarray([self.table[t] for t in texts], dtype=np.float32)


# ------------------------------------------------------------------ CrossEncoderReranker


def test_satisfies_the_protocol(
    reranker: CrossEncoderReranker, tiny_cross_encoder_dir: Path
) -> None:
    checked: Reranker = reranker
    assert checked.name == str(tiny_cross_encoder_dir)
    assert reranker.device == "cpu"
    assert reranker.max_tokens == 128
    assert "CrossEncoderReranker" in repr(reranker)


def test_score_is_one_float32_logit_per_text(reranker: CrossEncoderReranker) -> None:
    import torch

    scores = reranker.score(QUERY, TEXTS)
    assert scores.dtype == np.float32 and scores.shape == (len(TEXTS),)
    assert np.isfinite(scores).all()
    assert len(set(scores.tolist())) == len(TEXTS)  # the tiny model does tell texts apart
    expected = reranker.model.predict(
        [(QUERY, t) for t in TEXTS], activation_fn=torch.nn.Identity(), show_progress_bar=False
    )
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    # Raw logits, not the sigmoid CrossEncoder applies by default to one-label models.
    squashed = reranker.model.predict([(QUERY, t) for t in TEXTS], show_progress_bar=False)
    np.testing.assert_allclose(squashed, 1 / (1 + np.exp(-scores.astype(np.float64))), rtol=1e-5)


def test_score_does_not_depend_on_batching_or_order(reranker: CrossEncoderReranker) -> None:
    whole = reranker.score(QUERY, TEXTS)
    one_by_one = np.concatenate([reranker.score(QUERY, [t]) for t in TEXTS])
    np.testing.assert_allclose(one_by_one, whole, rtol=1e-5, atol=1e-6)
    backwards = reranker.score(QUERY, list(reversed(TEXTS)))
    np.testing.assert_allclose(backwards[::-1], whole, rtol=1e-5, atol=1e-6)


def test_score_is_deterministic(
    reranker: CrossEncoderReranker, tiny_cross_encoder_dir: Path, tmp_path: Path
) -> None:
    first = reranker.score(QUERY, TEXTS)
    np.testing.assert_array_equal(reranker.score(QUERY, TEXTS), first)
    # The builder is a pure function of its seed: rebuilding gives the same scores.
    again = CrossEncoderReranker(
        str(build_tiny_cross_encoder(tmp_path / "again", seed=0)), device="cpu", batch_size=4
    )
    np.testing.assert_array_equal(again.score(QUERY, TEXTS), first)


def test_score_of_no_texts_is_empty(reranker: CrossEncoderReranker) -> None:
    scores = reranker.score(QUERY, [])
    assert scores.dtype == np.float32 and scores.shape == (0,)


def test_score_rejects_a_bare_string(reranker: CrossEncoderReranker) -> None:
    with pytest.raises(TypeError, match="single string"):
        reranker.score(QUERY, "오늘 서울은 맑다.")


def test_long_pairs_are_truncated_to_max_tokens(tiny_cross_encoder_dir: Path) -> None:
    short = CrossEncoderReranker(str(tiny_cross_encoder_dir), device="cpu", max_tokens=16)
    assert short.max_tokens == 16
    long_text = " ".join(TEXTS * 40)  # far beyond the 128 positions of the model
    assert short.score(QUERY, [long_text]).shape == (1,)
    capped = CrossEncoderReranker(str(tiny_cross_encoder_dir), device="cpu", max_tokens=10_000)
    assert capped.max_tokens == 128
    assert capped.score(QUERY, [long_text]).shape == (1,)


def test_a_two_class_model_is_scored_by_its_last_logit(tmp_path: Path) -> None:
    import torch

    path = build_tiny_cross_encoder(tmp_path / "two", num_labels=2)
    two = CrossEncoderReranker(str(path), device="cpu")
    logits = two.model.predict(
        [(QUERY, t) for t in TEXTS], activation_fn=torch.nn.Identity(), show_progress_bar=False
    )
    assert logits.shape == (len(TEXTS), 2)
    scores = two.score(QUERY, TEXTS)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, logits[:, -1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"max_tokens": 0}, {"device": "tpu"}])
def test_invalid_settings(tiny_cross_encoder_dir: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        CrossEncoderReranker(str(tiny_cross_encoder_dir), **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------ rerank()


def test_rerank_sorts_by_the_reranker_score(reranker: CrossEncoderReranker) -> None:
    candidates = [(f"d{i}", text) for i, text in enumerate(TEXTS)]
    ranked = rerank(reranker, QUERY, candidates, lambda c: c[1])
    scores = reranker.score(QUERY, TEXTS)
    assert [c for c, _ in ranked] == [candidates[i] for i in np.argsort(-scores)]
    assert all(isinstance(s, float) for _, s in ranked)
    assert [s for _, s in ranked] == sorted(scores.tolist(), reverse=True)


def test_rerank_is_stable_for_ties() -> None:
    fake = FakeReranker({"a": 1.0, "b": 3.0, "c": 1.0, "d": 3.0, "e": 1.0, "f": 2.0})
    ranked = rerank(fake, "q", ["a", "b", "c", "d", "e", "f"], lambda t: t)
    assert ranked == [("b", 3.0), ("d", 3.0), ("f", 2.0), ("a", 1.0), ("c", 1.0), ("e", 1.0)]
    reverse = rerank(fake, "q", ["e", "d", "c", "b", "a", "f"], lambda t: t)
    assert [t for t, _ in reverse] == ["d", "b", "f", "e", "c", "a"]


def test_rerank_puts_nan_scores_last() -> None:
    fake = FakeReranker({"a": float("nan"), "b": -5.0, "c": 0.5})
    ranked = rerank(fake, "q", ["a", "b", "c"], lambda t: t)
    assert [t for t, _ in ranked] == ["c", "b", "a"]


def test_rerank_of_no_candidates_is_empty(reranker: CrossEncoderReranker) -> None:
    fake = FakeReranker({})
    assert rerank(fake, "q", [], lambda t: t) == []
    assert fake.calls == 0
    assert rerank(reranker, QUERY, [], str) == []


def test_rerank_rejects_a_wrong_number_of_scores() -> None:
    class Short(FakeReranker):
        def score(self, query: str, texts: Sequence[str]) -> NDArray[np.float32]:
            return super().score(query, texts)[:-1]

    with pytest.raises(ValueError, match="2 candidates"):
        rerank(Short({"a": 1.0, "b": 2.0}), "q", ["a", "b"], lambda t: t)


# ------------------------------------------------------------------ load errors


def _one_line(error: pytest.ExceptionInfo[ModelLoadError]) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def test_an_embedding_model_is_not_a_reranker(tiny_bert_dir: Path) -> None:
    # CrossEncoder would load it with a random, untrained scoring head and return noise.
    with pytest.raises(ModelLoadError) as error:
        CrossEncoderReranker(str(tiny_bert_dir), device="cpu")
    message = _one_line(error)
    assert str(tiny_bert_dir) in message and "embedding model" in message
