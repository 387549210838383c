"""Shared fixtures: an offline Hugging Face hub, tiny models built on the fly, the real model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from realdata import missing, model_path
from tinymodels import (
    build_tiny_bert,
    build_tiny_cross_encoder,
    build_tiny_kobert,
    build_tiny_xlmr,
)


@pytest.fixture(scope="session", autouse=True)
def _offline_hub() -> Iterator[None]:
    """Tell huggingface_hub and transformers never to reach the network."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        patch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        yield


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep caches (ONNX query models, evaluation indexes) out of the user's home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KOSEARCH_CACHE", str(tmp_path_factory.mktemp("kosearch-cache")))
        yield


@pytest.fixture(scope="session", autouse=True)
def _unmeasured_auto() -> Iterator[None]:
    """``--precision auto`` picks without timing (a measured choice could differ between runs);
    tests/test_calibrate.py turns the measurement on."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KOSEARCH_CALIBRATE", "0")
        yield


@pytest.fixture(scope="session", autouse=True)
def _no_lingering() -> Iterator[None]:
    """No one-shot query leaves a lingering analysis server behind (tests/test_linger.py turns
    lingering on where it tests it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KOSEARCH_ANALYZER_LINGER", "0")
        yield


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ko-sbert-like model directory (WordPiece BERT, mean pooling, 128 tokens, no prompts)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture(scope="session")
def tiny_xlmr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An e5-like model directory (Unigram XLM-R, mean pooling, 64 tokens, e5 prompts)."""
    return build_tiny_xlmr(tmp_path_factory.mktemp("tiny-xlmr") / "model")


@pytest.fixture(scope="session")
def real_model_dir() -> Path:
    """The real model named by ``KOSEARCH_TEST_MODEL``; the test is skipped without it."""
    path = model_path()
    if not path.is_dir():
        pytest.skip(missing(path))
    return path


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reranker-like cross-encoder directory (WordPiece BERT, one relevance logit)."""
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-cross-encoder") / "model")


@pytest.fixture(scope="session")
def tiny_kobert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ko-sbert-nli-like model directory (KoBERT: SentencePiece + vocab.txt, the
    ko_sentence_transformers module in modules.json, mean pooling, 75 tokens)."""
    pytest.importorskip("sentencepiece", reason="the kobert extra: pip install 'kosearch[kobert]'")
    return build_tiny_kobert(tmp_path_factory.mktemp("tiny-kobert") / "model")
