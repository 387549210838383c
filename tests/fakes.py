"""A deterministic fake encoder for tests that need no torch (DESIGN.md: HashEncoder)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from kosearch.types import Document


def _bucket(gram: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, (1.0 if (value >> 32) & 1 else -1.0)


class HashEncoder:
    """Character-bigram hashing into ``dim`` buckets, L2-normalized.

    Texts sharing bigrams get similar vectors, so Korean retrieval tests behave sensibly.
    ``calls`` counts encode calls and ``batches`` records batch sizes, so batching can be asserted.
    """

    def __init__(self, dim: int = 256, name: str = "hash-encoder", max_tokens: int = 64) -> None:
        self.name = name
        self.dim = dim
        self.max_tokens = max_tokens
        self.query_prompt = "query: "
        self.passage_prompt = "passage: "
        self.fingerprint = hashlib.sha256(f"{name}/{dim}".encode()).hexdigest()[:16]
        self.calls = 0
        self.batches: list[int] = []
        self.encoded: list[str] = []

    def _encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            compact = "".join(text.split())
            grams = [compact[j : j + 2] for j in range(max(len(compact) - 1, 1))]
            for gram in grams:
                bucket, sign = _bucket(gram, self.dim)
                out[i, bucket] += sign
            norm = float(np.linalg.norm(out[i]))
            if norm > 0:
                out[i] /= norm
        return out

    def encode_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        self.calls += 1
        return self._encode(list(texts))

    def encode_passages(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> NDArray[np.float32]:
        self.calls += 1
        texts = list(texts)
        self.batches.append(len(texts))
        self.encoded.extend(texts)
        if on_batch is not None:
            on_batch(len(texts))
        return self._encode(texts)

    @property
    def backend_tokenizer(self):  # noqa: ANN201 - a tokenizers.Tokenizer
        """One token per whitespace-separated word, with [CLS]/[SEP] around."""
        from tokenizers import Tokenizer
        from tokenizers.models import WordLevel
        from tokenizers.pre_tokenizers import WhitespaceSplit
        from tokenizers.processors import TemplateProcessing

        tok = Tokenizer(WordLevel({"[UNK]": 0, "[CLS]": 1, "[SEP]": 2}, unk_token="[UNK]"))
        tok.pre_tokenizer = WhitespaceSplit()
        tok.post_processor = TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
        )
        return tok


# Six short Korean documents on distinct topics, shared by the index and server tests.
SAMPLE_DOCS = [
    Document("seoul", "서울은 대한민국의 수도이다. 서울에는 한강이 흐른다.", "서울", {"category": "지리"}),
    Document("busan", "부산은 대한민국 제2의 도시이며 해운대 해수욕장으로 유명하다.", "부산", {"n": 2}),
    Document("kimchi", "김치는 배추와 고춧가루로 담그는 한국의 전통 발효 음식이다.", "김치"),
    Document("hangul", "한글은 세종대왕이 1443년에 창제한 문자로 훈민정음이라고도 부른다.", "한글"),
    Document("gpu", "GPU는 그래픽 처리 장치로 딥러닝 학습을 빠르게 해 준다.", "GPU"),
    Document("jeju", "제주도는 화산섬으로 한라산과 올레길이 유명한 관광지이다.", ""),
]
