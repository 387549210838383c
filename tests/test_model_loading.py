"""Models that cannot load fail fast with one clear line: the encoder and the reranker alike.

Every case runs for both kinds of model kosearch loads (``SentenceTransformerEncoder`` for
embeddings, ``CrossEncoderReranker`` for reranking); each kind's message names its own fix.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import kosearch.encoding.loading as hub_module
from kosearch.encoding.encoder import SentenceTransformerEncoder
from kosearch.encoding.rerank import CrossEncoderReranker
from kosearch.errors import ModelLoadError

pytestmark = pytest.mark.st


@dataclass(frozen=True)
class Kind:
    load: Any  # the class: loads a model id or path
    unknown_id: str  # a hub id that exists nowhere
    fix: str  # what the message tells the user to do instead
    fixture: str  # a working model directory of this kind (a conftest fixture)
    not_a_model: str  # what the "not a model directory" message names ({path}: the folder)
    max_seconds: float | None = None  # an unknown id must fail within this (no hub retries)


KINDS = {
    "encoder": Kind(SentenceTransformerEncoder, "nobody/no-such-model-kosearch", "--model",
                    "tiny_bert_dir", "--model"),
    "reranker": Kind(CrossEncoderReranker, "nobody/no-such-reranker-kosearch",
                     "local cross-encoder", "tiny_cross_encoder_dir", "{path}", max_seconds=10),
}


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest) -> Kind:
    return KINDS[request.param]


def _one_line(error: pytest.ExceptionInfo[ModelLoadError]) -> str:
    message = str(error.value)
    assert "\n" not in message and message
    return message


def test_unknown_hub_id_offline_fails_fast_and_clearly(kind: Kind) -> None:
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as error:
        kind.load(kind.unknown_id, device="cpu")
    if kind.max_seconds is not None:
        assert time.monotonic() - start < kind.max_seconds
    message = _one_line(error)
    assert f"'{kind.unknown_id}'" in message and kind.fix in message
    assert "HF_HUB_OFFLINE" in message
    assert error.value.__cause__ is not None


def test_unreachable_hub_is_reported_without_retrying(
    kind: Kind, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE")
    monkeypatch.setattr(hub_module, "hub_reachable", lambda: False)
    with pytest.raises(ModelLoadError) as error:
        kind.load(kind.unknown_id, device="cpu")
    message = _one_line(error)
    assert "could not be reached" in message and kind.fix in message


def test_hub_probe_reports_unreachable_without_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest-socket blocks the connection; a refused or blocked probe must read as "unreachable".
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert hub_module.hub_reachable(timeout=0.5) is False


def test_directory_that_is_not_a_model(kind: Kind, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model", encoding="utf-8")
    with pytest.raises(ModelLoadError) as error:
        kind.load(str(tmp_path), device="cpu")
    message = _one_line(error)
    assert "not a model directory" in message
    assert kind.not_a_model.format(path=tmp_path) in message


@pytest.mark.parametrize("where", ["file", "missing"])
def test_paths_that_do_not_hold_a_model(kind: Kind, tmp_path: Path, where: str) -> None:
    target = tmp_path / "model"
    if where == "file":
        target.write_text("x", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="model") as error:
        kind.load(str(target), device="cpu")
    assert str(target) in _one_line(error)


def test_corrupt_model_directory(
    kind: Kind, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    model_dir: Path = request.getfixturevalue(kind.fixture)
    copy = shutil.copytree(model_dir, tmp_path / "broken")
    (copy / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError) as error:
        kind.load(str(copy), device="cpu")
    assert str(copy) in _one_line(error)
