"""The first hits never depend on k: the top-m of a k=m search equals the top-m of a k=10m
search, in every mode, fusion, metric and index type, with and without reranking and filters.

A small fusion depth makes the exact (flat) searches go deeper than the statistics they
normalize by, so the certainty test (no unseen passage could outrank a hit) is exercised.
Approximate index types hold the claim by searching a fixed depth: the fusion depth here
covers the deepest search either k needs (README, "Hybrid search").
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import numpy as np
import pytest
from fakes import HashEncoder
from numpy.typing import NDArray

from kosearch import Document, Fusion
from kosearch.index import Index
from kosearch.settings import ChunkSettings
from kosearch.types import INDEX_TYPES

WORDS = ("서울 부산 대구 인천 광주 대전 울산 세종 경기 강원 충북 충남 전북 전남 경북 경남 제주 "
         "전세 월세 계약 갱신 보증금 임대인 임차인 대출 금리 은행 예금 적금 연금 보험 세금 "
         "병원 약국 치료 검사 증상 진료 의사 간호 수술 처방 날씨 태풍 장마 폭염 한파 미세먼지 "
         "학교 시험 입시 교사 학생 졸업 등록금 장학금 도서관 강의").split()
QUERIES = ["전세 계약 갱신", "병원 진료 예약", "서울 날씨 태풍", "장학금 등록금 학생"]
TYPES = [t for t in INDEX_TYPES if t != "auto"]
EXACT = {"flat"}
HYBRID_FUSIONS = {
    "convex-minmax": Fusion(),
    "convex-zscore": Fusion(normalize="zscore"),
    "convex-dbsf": Fusion(normalize="dbsf", dense_weight=0.3),
    "convex-adaptive": Fusion(dense_weight=None),
    "rrf": Fusion(method="rrf"),
}


def _docs(n: int = 160, seed: int = 7) -> list[Document]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.choice((6, 12, 40)))]  # some get chunked
        docs.append(Document(f"d{i:03d}", " ".join(words), title=rng.choice(WORDS),
                             meta={"group": i % 3}))
    return docs


class _HashReranker:
    """Scores a passage by a hash of (query, text): an order no retriever would produce."""

    name = "hash"

    def score(self, query: str, texts: Sequence[str]) -> NDArray[np.float32]:
        return np.array([int.from_bytes(hashlib.blake2b(f"{query}|{t}".encode(),
                                                        digest_size=4).digest(), "little") / 2**32
                         for t in texts], dtype=np.float32)


_BUILT: dict[tuple[str, str], Index] = {}


def _index(metric: str, index_type: str) -> Index:
    key = (metric, index_type)
    if key not in _BUILT:
        _BUILT[key] = Index.build(_docs(), encoder=HashEncoder(dim=32, max_tokens=24),
                                  metric=metric, index_type=index_type,
                                  chunking=ChunkSettings(max_tokens=24))
    return _BUILT[key]


def _cases() -> list[tuple[str, str, str, str]]:
    stores = [(metric, kind) for metric in ("cosine", "ip") for kind in TYPES]
    modes = [("dense", "-")] + [("hybrid", name) for name in HYBRID_FUSIONS]
    # BM25 ranks the same whatever the vector index: lexical mode once
    return [("lexical", "-", "cosine", "flat")] + [(*m, *s) for m in modes for s in stores]


@pytest.mark.parametrize(("mode", "fusion_name", "metric", "index_type"), _cases())
def test_top_m_does_not_depend_on_k(mode: str, fusion_name: str, metric: str,
                                    index_type: str) -> None:
    index = _index(metric, index_type)
    base = HYBRID_FUSIONS.get(fusion_name, Fusion())
    exact = index_type in EXACT
    # exact types: statistics over a shallow prefix, deeper searches on top; approximate
    # types: one fixed depth that covers every search below
    fusion = Fusion(method=base.method, dense_weight=base.dense_weight,
                    normalize=base.normalize, depth=8 if exact else 160)
    assert len(index) > 160  # chunking made more passages than documents
    for rerank in (None, _HashReranker()):
        for flt in (None, {"group": 1}):
            for passages in (False, True):
                for m in (2,):
                    small, large = (index.search_batch(QUERIES, k, mode=mode, fusion=fusion,
                                                       rerank=rerank, rerank_top=5,
                                                       passages=passages, filter=flt)
                                    for k in (m, 10 * m))
                    for few, many in zip(small, large):
                        assert len(few) == min(m, len(many))
                        if mode != "lexical":  # BM25 leaves out passages matching no term
                            assert len(many) == 10 * m
                        assert [(h.id, h.chunk) for h in few] == \
                            [(h.id, h.chunk) for h in many[:m]]
                        assert [h.score for h in few] == [h.score for h in many[:m]]


def test_a_fused_score_depends_on_the_passage_not_on_k() -> None:
    index = _index("cosine", "flat")
    fusion = Fusion(depth=8)
    few = index.search_batch(QUERIES, 5, fusion=fusion, passages=True)
    many = index.search_batch(QUERIES, 60, fusion=fusion, passages=True)
    for short, long in zip(few, many):
        scores = {(h.id, h.chunk): h.score for h in long}
        assert all(scores[(h.id, h.chunk)] == h.score for h in short)
        # every hybrid hit carries both retrievers' exact scores
        assert all({"dense_score", "lexical_score"} <= set(h.scores) for h in long)


def test_hits_past_the_rerank_pool_keep_the_fused_order_below_it() -> None:
    index = _index("cosine", "flat")
    hits = index.search("전세 계약 갱신", k=12, rerank=_HashReranker(), rerank_top=4,
                        passages=True)
    assert [h.scores.get("rerank_rank") for h in hits[:4]] == [1, 2, 3, 4]
    assert all("rerank_rank" not in h.scores for h in hits[4:])
    tail = [h.scores["fused_score"] for h in hits[4:]]
    assert tail == sorted(tail, reverse=True)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
