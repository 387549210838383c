"""SentenceTransformerEncoder on tiny models built offline (and on a real one when available)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from tinymodels import build_tiny_bert, build_tiny_xlmr, korean_sentences

from kosearch.encoding import encoder as encoder_module
from kosearch.encoding.encoder import SentenceTransformerEncoder, select_device
from kosearch.encoding.registry import ModelSpec
from kosearch.errors import ConfigError

pytestmark = pytest.mark.st

TEXTS = [
    "오늘 서울은 맑다.",
    "민수는 도서관에서 책을 빌렸다고 말했다.",
    "커피",
    "부산 근처에 새로운 자전거 가게가 생겼다고 한다. 지영은 주말에 그곳에 갔다.",
    "제주도의 날씨는 어제 흐리다.",
    "영희와 철수는 시장에 갔다.",
    "사과",
]


@pytest.fixture(scope="module")
def bert(tiny_bert_dir: Path) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(str(tiny_bert_dir), device="cpu")


@pytest.fixture(scope="module")
def xlmr(tiny_xlmr_dir: Path) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(str(tiny_xlmr_dir), device="cpu", batch_size=3)


def _spec(path: Path, **prompts: str) -> ModelSpec:
    return ModelSpec(
        name=str(path), dim=32, max_tokens=64, query_prompt=prompts.get("query", ""),
        passage_prompt=prompts.get("passage", ""), kind="retrieval",
        sts_prompt=prompts.get("sts", ""), size="1M", note="test",
    )


# ------------------------------------------------------------------ devices


def test_select_device_default_follows_torch() -> None:
    import torch

    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu"
    )
    assert select_device() == expected
    assert select_device("auto") == expected
    assert select_device(" CPU ") == "cpu"


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cuda:x", "cpu0", "cuda:"])
def test_select_device_rejects_unknown_names(bad: str) -> None:
    with pytest.raises(ConfigError, match="unknown device"):
        select_device(bad)


def test_select_device_rejects_unavailable_cuda() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="not available"):
        select_device("cuda")


# ------------------------------------------------------------------ loading and encoding


@pytest.mark.parametrize(
    ("fixture", "max_tokens", "prompts"),
    [("bert", 128, ("", "")), ("xlmr", 64, ("query: ", "passage: "))],
)
def test_tiny_models_load_and_encode(
    request: pytest.FixtureRequest, fixture: str, max_tokens: int, prompts: tuple[str, str]
) -> None:
    enc: SentenceTransformerEncoder = request.getfixturevalue(fixture)
    assert (enc.dim, enc.max_tokens, enc.device) == (32, max_tokens, "cpu")
    assert (enc.query_prompt, enc.passage_prompt) == prompts
    assert enc.spec is None
    for vectors in (enc.encode_queries(TEXTS), enc.encode_passages(TEXTS)):
        assert vectors.shape == (len(TEXTS), 32)
        assert vectors.dtype == np.float32
        assert np.isfinite(vectors).all()
    np.testing.assert_array_equal(enc.encode_queries(TEXTS), enc.encode_queries(TEXTS))
    np.testing.assert_array_equal(enc.encode_passages(TEXTS), enc.encode_passages(TEXTS))


def test_vectors_are_not_normalized_by_the_encoder(bert: SentenceTransformerEncoder) -> None:
    norms = np.linalg.norm(bert.encode_queries(TEXTS), axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)


def test_empty_input_and_bare_string(bert: SentenceTransformerEncoder) -> None:
    assert bert.encode_queries([]).shape == (0, 32)
    calls: list[int] = []
    assert bert.encode_passages([], on_batch=calls.append).shape == (0, 32)
    assert calls == []
    with pytest.raises(TypeError):
        bert.encode_queries("한 문장")


def test_query_and_passage_prompts_change_the_vector(xlmr: SentenceTransformerEncoder) -> None:
    text = ["서울의 날씨는 오늘 맑다."]
    query, passage = xlmr.encode_queries(text), xlmr.encode_passages(text)
    assert not np.allclose(query, passage, atol=1e-4)
    by_hand = xlmr.model.encode(["query: " + text[0], "passage: " + text[0]])
    np.testing.assert_allclose(query[0], by_hand[0], atol=1e-5)
    np.testing.assert_allclose(passage[0], by_hand[1], atol=1e-5)


def test_explicit_prompt_beats_model_config(tiny_xlmr_dir: Path) -> None:
    enc = SentenceTransformerEncoder(str(tiny_xlmr_dir), query_prompt="질문: ", passage_prompt="")
    assert (enc.query_prompt, enc.passage_prompt) == ("질문: ", "")
    text = ["민수는 책을 읽었다."]
    np.testing.assert_allclose(
        enc.encode_passages(text)[0], enc.model.encode(text)[0], atol=1e-5
    )


def test_registry_beats_model_config_and_explicit_beats_registry(
    tiny_xlmr_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = _spec(tiny_xlmr_dir, query="검색: ", passage="문서: ", sts="문장: ")
    monkeypatch.setattr(encoder_module, "lookup", lambda name: spec)
    enc = SentenceTransformerEncoder(str(tiny_xlmr_dir))
    assert enc.spec is spec
    assert (enc.query_prompt, enc.passage_prompt) == ("검색: ", "문서: ")
    assert SentenceTransformerEncoder(str(tiny_xlmr_dir), query_prompt="").query_prompt == ""
    text = ["부산 날씨"]
    np.testing.assert_allclose(
        enc.encode_symmetric(text)[0], enc.model.encode(["문장: 부산 날씨"])[0], atol=1e-5
    )


def test_symmetric_encoding_of_unknown_model_uses_its_query_prompt(
    xlmr: SentenceTransformerEncoder, tiny_bert_dir: Path
) -> None:
    # e5 convention: a model that ships a "query: " prompt uses it on both sides for STS
    assert xlmr.sts_prompt == "query: "
    np.testing.assert_allclose(
        xlmr.encode_symmetric(TEXTS[:2]), xlmr.model.encode(TEXTS[:2], prompt="query: "),
        atol=1e-5,
    )
    bert = SentenceTransformerEncoder(str(tiny_bert_dir))
    assert bert.sts_prompt == ""
    np.testing.assert_allclose(
        bert.encode_symmetric(TEXTS[:2]), bert.model.encode(TEXTS[:2], prompt=""), atol=1e-5
    )


def test_encode_passages_sorts_by_length_and_restores_order(
    xlmr: SentenceTransformerEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = korean_sentences(11, seed=3) + ["짧다", "아주 " * 30 + "긴 문장이다."]
    one_by_one = np.vstack([xlmr.encode_passages([t]) for t in texts])
    seen: list[list[str]] = []
    real_encode = xlmr._encode

    def spy(batch: list[str], prompt: str) -> np.ndarray:
        seen.append(batch)
        return real_encode(batch, prompt)

    monkeypatch.setattr(xlmr, "_encode", spy)
    sizes: list[int] = []
    together = xlmr.encode_passages(texts, on_batch=sizes.append)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert sizes == [3, 3, 3, 3, 1] and sum(sizes) == len(texts)
    assert [len(b) for b in seen] == sizes
    lengths = [min(n, xlmr.max_tokens) for b in seen for n in xlmr.count_tokens(b)]
    assert lengths == sorted(lengths, reverse=True)
    assert seen[0][0] == texts[-1]


# ------------------------------------------------------------------ tokens


def test_count_tokens_includes_specials_and_prompt(
    bert: SentenceTransformerEncoder, xlmr: SentenceTransformerEncoder
) -> None:
    assert bert.count_tokens([""]) == [2]  # [CLS] [SEP]
    hf = xlmr.model.tokenizer
    for text in TEXTS:
        expected = len(hf("passage: " + text, truncation=False)["input_ids"])
        assert xlmr.count_tokens([text]) == [expected]
        assert expected > len(hf(text, truncation=False)["input_ids"])
    by_hf = [len(ids) for ids in bert.model.tokenizer(TEXTS, truncation=False)["input_ids"]]
    assert bert.count_tokens(TEXTS) == by_hf


def test_count_tokens_is_not_truncated_and_matches_what_the_model_sees(
    xlmr: SentenceTransformerEncoder,
) -> None:
    long_text = " ".join(korean_sentences(20))
    (count,) = xlmr.count_tokens([long_text])
    assert count > xlmr.max_tokens
    features = xlmr.model.preprocess(["passage: " + TEXTS[1], "passage: " + long_text])
    seen = features["attention_mask"].sum(dim=1).tolist()
    assert seen == [xlmr.count_tokens([TEXTS[1]])[0], xlmr.max_tokens]
    assert xlmr.backend_tokenizer.truncation is None
    assert xlmr.backend_tokenizer.padding is None


# ------------------------------------------------------------------ max tokens


def test_max_tokens_override_is_applied_and_capped(
    tiny_bert_dir: Path, tiny_xlmr_dir: Path, bert: SentenceTransformerEncoder
) -> None:
    short = SentenceTransformerEncoder(str(tiny_bert_dir), max_tokens=8)
    assert short.max_tokens == short.model.max_seq_length == 8
    long_text = [" ".join(korean_sentences(5))]
    cut = short.model.encode(long_text)
    assert not np.allclose(bert.encode_queries(long_text), cut)
    np.testing.assert_allclose(short.encode_queries(long_text), cut, atol=1e-6)
    assert SentenceTransformerEncoder(str(tiny_bert_dir), max_tokens=10_000).max_tokens == 128
    # XLM-R reserves two positions: 66 position embeddings hold 64 tokens.
    assert SentenceTransformerEncoder(str(tiny_xlmr_dir), max_tokens=10_000).max_tokens == 64


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"max_tokens": 0}, {"device": "tpu"}])
def test_invalid_settings(tiny_bert_dir: Path, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SentenceTransformerEncoder(str(tiny_bert_dir), **kwargs)


# ------------------------------------------------------------------ fingerprint


def test_fingerprint_ignores_path_but_not_weights(
    tiny_bert_dir: Path, tmp_path: Path, bert: SentenceTransformerEncoder,
    xlmr: SentenceTransformerEncoder,
) -> None:
    copy = shutil.copytree(tiny_bert_dir, tmp_path / "elsewhere")
    same = SentenceTransformerEncoder(str(copy), max_tokens=16)
    assert same.fingerprint == bert.fingerprint
    assert len(bert.fingerprint) == 16 and int(bert.fingerprint, 16) >= 0
    other = SentenceTransformerEncoder(str(build_tiny_bert(tmp_path / "seed1", seed=1)))
    assert other.fingerprint != bert.fingerprint
    assert xlmr.fingerprint != bert.fingerprint
    # The builders are deterministic: the same seed rebuilds the same model.
    rebuilt = SentenceTransformerEncoder(str(build_tiny_xlmr(tmp_path / "again", seed=0)))
    assert rebuilt.fingerprint == xlmr.fingerprint


# ------------------------------------------------------------------ load errors


@pytest.mark.realmodel
def test_real_model(real_model_dir: Path) -> None:
    enc = SentenceTransformerEncoder(str(real_model_dir), device="cpu")
    assert enc.dim == 384
    assert (enc.query_prompt, enc.passage_prompt) == ("query: ", "passage: ")
    query = enc.encode_queries(["전세 계약을 갱신하려면 어떻게 해야 하나요?"])
    passages = enc.encode_passages([
        "임대차 계약 갱신을 원하면 계약 만료 전에 집주인에게 갱신을 요구할 수 있다.",
        "오늘 저녁 메뉴로 김치찌개와 계란말이를 만들었다.",
    ])
    related, unrelated = (passages @ query[0]).tolist()
    assert related > unrelated
    a, b, c = enc.encode_symmetric(
        ["날씨가 정말 좋다.", "오늘은 날씨가 매우 좋네요.", "주식 시장이 폭락했다."]
    )
    assert float(a @ b) > float(a @ c)
    assert enc.count_tokens(["안녕하세요"])[0] > len(enc.backend_tokenizer.encode("안녕하세요").ids)
