"""The registry of known Korean embedding models: dimension, token limit, prompts and kind.

The registry lets users name a model without knowing its prompts: the encoder applies
``query_prompt`` and ``passage_prompt`` from here when the model id matches. Any other
sentence-transformers model id or local directory works too, with the prompts from its own
``config_sentence_transformers.json``. This module imports nothing heavy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Kind = Literal["retrieval", "sts"]

DEFAULT_MODEL = "dragonkue/multilingual-e5-small-ko"
#: The environment variable that names the model to use when none is given.
MODEL_ENV = "KOSEARCH_MODEL"

_E5_QUERY = "query: "
_E5_PASSAGE = "passage: "


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What kosearch knows about one model.

    Attributes:
        name: The model id on the Hugging Face hub.
        dim: The embedding dimension.
        max_tokens: The longest input (in tokens, specials and prompt included) the model
            is configured for; longer passages are truncated.
        query_prompt: Text prepended to every query.
        passage_prompt: Text prepended to every passage.
        kind: ``"retrieval"`` for asymmetric search models, ``"sts"`` for models trained on
            sentence similarity (usable for search, but weaker at it).
        sts_prompt: The prompt used on both sides of a symmetric task such as STS.
        size: The parameter count, for display (e.g. ``"118M"``).
        note: One line of guidance.
    """

    name: str
    dim: int
    max_tokens: int
    query_prompt: str
    passage_prompt: str
    kind: Kind
    sts_prompt: str
    size: str
    note: str


def _e5(name: str, dim: int, size: str, note: str, max_tokens: int = 512) -> ModelSpec:
    """An e5-family model: ``query: `` / ``passage: `` prompts, ``query: `` for STS."""
    return ModelSpec(
        name=name, dim=dim, max_tokens=max_tokens, query_prompt=_E5_QUERY,
        passage_prompt=_E5_PASSAGE, kind="retrieval", sts_prompt=_E5_QUERY, size=size, note=note,
    )


def _plain(name: str, dim: int, max_tokens: int, kind: Kind, size: str, note: str) -> ModelSpec:
    """A model that takes no prompts."""
    return ModelSpec(
        name=name, dim=dim, max_tokens=max_tokens, query_prompt="", passage_prompt="",
        kind=kind, sts_prompt="", size=size, note=note,
    )


_SPECS: tuple[ModelSpec, ...] = (
    _e5(DEFAULT_MODEL, 384, "118M",
        "Default: Korean retrieval fine-tune of multilingual-e5-small; fast on a CPU."),
    _e5("nlpai-lab/KoE5", 1024, "560M",
        "multilingual-e5-large fine-tuned for Korean retrieval; MTEB-ko retrieval avg 0.660."),
    _plain("nlpai-lab/KURE-v1", 1024, 8192, "retrieval", "568M",
           "bge-m3 fine-tuned for Korean retrieval; best dense model on MTEB-ko (avg 0.695); "
           "needs a GPU for large corpora."),
    _plain("dragonkue/BGE-m3-ko", 1024, 8192, "retrieval", "568M",
           "bge-m3 fine-tuned on Korean; MTEB-ko retrieval avg 0.687."),
    _e5("intfloat/multilingual-e5-small", 384, "118M",
        "Multilingual base model of the default; small and fast."),
    _e5("intfloat/multilingual-e5-base", 768, "278M", "Multilingual e5, base size."),
    _e5("intfloat/multilingual-e5-large", 1024, "560M",
        "Multilingual e5, large; MTEB-ko retrieval avg 0.664."),
    _plain("jhgan/ko-sroberta-multitask", 768, 128, "sts", "111M",
           "Best ko-sbert model on KorSTS (85.6); weak at retrieval (MTEB-ko avg 0.487)."),
    _plain("jhgan/ko-sbert-multitask", 768, 128, "sts", "111M",
           "KLUE-BERT trained on KorNLI+KorSTS (KorSTS 84.7); an STS model."),
    _plain("jhgan/ko-sbert-sts", 768, 128, "sts", "111M",
           "KLUE-BERT trained on KorSTS (81.2); an STS model."),
    _plain("jhgan/ko-sbert-nli", 768, 75, "sts", "92M",
           "KoBERT (SentencePiece tokenizer) trained on KorNLI; KorSTS cosine Spearman 82.36; "
           "needs pip install 'kosearch[kobert]'."),
    _plain("snunlp/KR-SBERT-V40K-klueNLI-augSTS", 768, 128, "sts", "117M",
           "KR-BERT (40k vocabulary) trained on KLUE-NLI and augmented STS; an STS model."),
    _plain("snunlp/KLUE-SRoBERTa-Large-SNUExtended-klueNLI-klueSTS", 1024, 512, "sts", "337M",
           "KLUE-RoBERTa-large trained on KLUE-NLI/STS; a large STS model."),
)

REGISTRY: Mapping[str, ModelSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
"""Known models by id, in display order (read-only)."""


def default_model() -> str:
    """The model used when none is given: ``$KOSEARCH_MODEL`` if set, else :data:`DEFAULT_MODEL`.

    The command line, the server and :meth:`kosearch.Index.build` all resolve it here.
    """
    return os.environ.get(MODEL_ENV, "").strip() or DEFAULT_MODEL


def lookup(name: str) -> ModelSpec | None:
    """Find a known model by id.

    Args:
        name: A model id such as ``"nlpai-lab/KoE5"``; an exact match wins, otherwise the
            match ignores case.

    Returns:
        The model's spec, or ``None`` when the id is not in the registry (a local path or
        another hub model).

    Example:
        >>> lookup("nlpai-lab/koe5").dim
        1024
    """
    spec = REGISTRY.get(name)
    if spec is not None:
        return spec
    folded = name.casefold()
    for candidate in REGISTRY.values():
        if candidate.name.casefold() == folded:
            return candidate
    return None
