"""The model registry: every promised model is there, with consistent prompts and kinds."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from kosearch.encoding.registry import DEFAULT_MODEL, REGISTRY, ModelSpec, lookup

E5_FAMILY = [
    "dragonkue/multilingual-e5-small-ko",
    "nlpai-lab/KoE5",
    "intfloat/multilingual-e5-small",
    "intfloat/multilingual-e5-base",
    "intfloat/multilingual-e5-large",
]
STS_MODELS = [
    "jhgan/ko-sbert-sts",
    "jhgan/ko-sbert-multitask",
    "jhgan/ko-sbert-nli",
    "jhgan/ko-sroberta-multitask",
    "snunlp/KR-SBERT-V40K-klueNLI-augSTS",
    "snunlp/KLUE-SRoBERTa-Large-SNUExtended-klueNLI-klueSTS",
]
NO_PROMPT_RETRIEVAL = ["nlpai-lab/KURE-v1", "dragonkue/BGE-m3-ko"]
EXPECTED_DIMS = {
    "dragonkue/multilingual-e5-small-ko": 384,
    "intfloat/multilingual-e5-small": 384,
    "intfloat/multilingual-e5-base": 768,
    "intfloat/multilingual-e5-large": 1024,
    "nlpai-lab/KoE5": 1024,
    "nlpai-lab/KURE-v1": 1024,
    "dragonkue/BGE-m3-ko": 1024,
    "jhgan/ko-sroberta-multitask": 768,
    "jhgan/ko-sbert-sts": 768,
    "snunlp/KR-SBERT-V40K-klueNLI-augSTS": 768,
    "snunlp/KLUE-SRoBERTa-Large-SNUExtended-klueNLI-klueSTS": 1024,
}


def test_every_required_model_is_registered() -> None:
    required = set(E5_FAMILY + STS_MODELS + NO_PROMPT_RETRIEVAL)
    assert required <= set(REGISTRY)
    assert DEFAULT_MODEL in REGISTRY
    assert REGISTRY[DEFAULT_MODEL].kind == "retrieval"


def test_registry_keys_match_names_and_values_are_sane() -> None:
    for key, spec in REGISTRY.items():
        assert isinstance(spec, ModelSpec)
        assert key == spec.name
        assert spec.dim > 0 and spec.max_tokens > 0
        assert spec.size and spec.note and "\n" not in spec.note


@pytest.mark.parametrize("name", sorted(EXPECTED_DIMS))
def test_dimensions(name: str) -> None:
    assert REGISTRY[name].dim == EXPECTED_DIMS[name]


@pytest.mark.parametrize("name", E5_FAMILY)
def test_e5_family_uses_query_and_passage_prompts(name: str) -> None:
    spec = REGISTRY[name]
    assert (spec.query_prompt, spec.passage_prompt) == ("query: ", "passage: ")
    assert spec.sts_prompt == "query: "
    assert spec.kind == "retrieval"
    assert spec.max_tokens == 512


@pytest.mark.parametrize("name", STS_MODELS)
def test_sbert_family_is_sts_without_prompts(name: str) -> None:
    spec = REGISTRY[name]
    assert spec.kind == "sts"
    assert spec.query_prompt == spec.passage_prompt == spec.sts_prompt == ""


# ko-sbert-nli is the KoBERT one (75 tokens): tests/test_kobert.py checks its entry
@pytest.mark.parametrize("name", [n for n in STS_MODELS
                                  if n.startswith("jhgan/") and n != "jhgan/ko-sbert-nli"])
def test_ko_sbert_models_are_768d_with_128_tokens(name: str) -> None:
    assert (REGISTRY[name].dim, REGISTRY[name].max_tokens) == (768, 128)


@pytest.mark.parametrize("name", NO_PROMPT_RETRIEVAL)
def test_bge_m3_finetunes_have_long_context_and_no_prompts(name: str) -> None:
    spec = REGISTRY[name]
    assert (spec.kind, spec.max_tokens, spec.query_prompt, spec.passage_prompt) == (
        "retrieval", 8192, "", ""
    )


def test_registry_is_read_only() -> None:
    assert isinstance(REGISTRY, MappingProxyType)
    with pytest.raises(TypeError):
        REGISTRY["x"] = REGISTRY[DEFAULT_MODEL]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        REGISTRY[DEFAULT_MODEL].dim = 1  # type: ignore[misc]


def test_lookup_exact_and_case_insensitive() -> None:
    assert lookup("nlpai-lab/KoE5") is REGISTRY["nlpai-lab/KoE5"]
    assert lookup("NLPAI-LAB/koe5") is REGISTRY["nlpai-lab/KoE5"]
    assert lookup("nobody/unknown-model") is None
    assert lookup("/some/local/dir") is None


