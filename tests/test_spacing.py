"""BM25 query analysis does not depend on how a query is spaced or its scripts glued.

Users type ``서울시청역`` or ``서울 시청역``, ``KB국민은행`` or ``KB 국민은행``; Kiwi analyzes
these differently, so :meth:`MorphemeAnalyzer.tokenize_queries` adds the terms of respelled
queries (measured in bench/spacing.py). Passages keep their analysis (:meth:`tokenize`).
"""

from __future__ import annotations

import pytest

from kosearch.lexical.analyzers import MorphemeAnalyzer, WhitespaceAnalyzer, query_terms
from kosearch.lexical.bm25 import LexicalIndex

pytest.importorskip("kiwipiepy")

VARIANTS = [
    ("서울시청역 근처 맛집", "서울 시청역 근처 맛집"),
    ("KB국민은행 전세대출 금리", "KB 국민은행 전세 대출 금리"),
    ("ChatGPT로 번역하는 법", "Chat GPT로 번역하는 법"),
    ("SGI서울보증 반환보증", "SGI 서울보증 반환 보증"),
    ("전세계약갱신요구권", "전세 계약 갱신 요구권"),
]
DOCS = [
    "서울시청역 근처에는 오래된 맛집이 많다.",
    "KB국민은행은 전세대출 금리를 내렸다.",
    "ChatGPT로 번역하면 빠르지만 검토가 필요하다.",
    "SGI서울보증의 전세보증금 반환보증 상품 안내.",
    "임차인은 전세 계약 갱신 요구권을 한 번 쓸 수 있다.",
    "부산은 바다가 아름다운 도시다.",
]


@pytest.fixture(scope="module")
def analyzer() -> MorphemeAnalyzer:
    return MorphemeAnalyzer(num_workers=1)


@pytest.mark.parametrize(("typed", "respelled"), [v for v in VARIANTS if "GPT" not in v[0]])
def test_each_spelling_looks_up_the_terms_of_the_other(
    analyzer: MorphemeAnalyzer, typed: str, respelled: str
) -> None:
    a, b = analyzer.tokenize_queries([typed, respelled])
    assert set(analyzer.tokenize([typed])[0]) <= set(b)
    assert set(analyzer.tokenize([respelled])[0]) <= set(a)


def test_latin_words_split_by_a_space_also_look_up_the_glued_word(
    analyzer: MorphemeAnalyzer,
) -> None:
    """One way only: Kiwi keeps ``ChatGPT`` whole, and nothing splits it into ``chat gpt``."""
    assert "chatgpt" in analyzer.tokenize_queries(["Chat GPT로 번역하는 법"])[0]


def test_the_terms_as_typed_come_first_and_keep_their_counts(analyzer: MorphemeAnalyzer) -> None:
    query = "KB국민은행 국민은행 금리 금리"
    plain = analyzer.tokenize([query])[0]
    robust = analyzer.tokenize_queries([query])[0]
    assert robust[: len(plain)] == plain and plain.count("금리") == 2
    extra = robust[len(plain):]
    assert len(extra) == len(set(extra)) and not set(extra) & set(plain)
    assert analyzer.tokenize_queries([]) == []


def test_kiwi_alone_misses_what_the_respellings_find(analyzer: MorphemeAnalyzer) -> None:
    """The failure this fixes: as typed, the two spellings share no term."""
    typed, respelled = analyzer.tokenize(["서울시청역", "서울 시청역"])
    assert not set(typed) & set(respelled)


def test_every_spelling_finds_the_same_document(analyzer: MorphemeAnalyzer) -> None:
    index = LexicalIndex.build(DOCS, analyzer=analyzer)
    for n, pair in enumerate(VARIANTS):
        for query in pair:
            assert index.search([query], k=1)[0][0][0] == n, query


def test_analyzers_without_respellings_analyze_queries_as_passages() -> None:
    assert query_terms(WhitespaceAnalyzer(), ["서울 시청역"]) == [["서울", "시청역"]]
