"""BM25 over Kiwi morphemes: analysis rules, scoring formula, ranking, and the on-disk format."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kosearch.errors import ConfigError, IndexFormatError
from kosearch.lexical.analyzers import (
    DEFAULT_TAGS,
    CharBigramAnalyzer,
    MorphemeAnalyzer,
    WhitespaceAnalyzer,
    analyzer_from_config,
)
from kosearch.lexical.bm25 import LexicalIndex

# Hand-written cases: the query shares words with its document only up to particles, endings,
# letter case or inflection. Together with KorQuAD (bench/lexical.py) they chose DEFAULT_TAGS.
DOCS = [
    "서울에서는 지하철이 가장 편리한 교통수단이다.",
    "부산의 해운대 해수욕장은 여름마다 붐빈다.",
    "엔비디아는 새로운 GPU를 발표했다.",
    "김치찌개를 맛있게 끓이는 방법을 알려 드립니다.",
    "2024년 파리 올림픽에서 한국은 금메달 13개를 땄다.",
    "전세 계약을 갱신하려면 계약 만료 6개월 전에 요구해야 한다.",
    "고양이는 하루에 열다섯 시간 넘게 잠을 잔다.",
    "서울의 집값은 작년보다 크게 올랐다.",
]
CASES = [
    ("서울 지하철이 편리한가요", 0),
    ("해운대에 사람이 많나요", 1),
    ("gpu", 2),
    ("맛있게 끓이려면", 3),
    ("금메달 13개", 4),
    ("전세계약 갱신 요구", 5),
    ("고양이가 자는 시간", 6),
    ("서울 집값이 올랐나요", 7),
]


FILES = ["config.json", "vocab.json", "data.npy", "indices.npy", "indptr.npy"]


@pytest.fixture(scope="module")
def analyzer() -> MorphemeAnalyzer:
    return MorphemeAnalyzer()


@pytest.fixture(scope="module")
def index(analyzer: MorphemeAnalyzer) -> LexicalIndex:
    return LexicalIndex.build(DOCS, analyzer=analyzer)


# --- analysis --------------------------------------------------------------------------------


def test_morphemes_drop_particles_and_endings_keep_stems(analyzer: MorphemeAnalyzer) -> None:
    assert analyzer.tokenize(["서울에서는", "서울의", "서울은", "먹었어요"]) == [
        ["서울"], ["서울"], ["서울"], ["먹"]
    ]


def test_irregular_stems_are_kept(analyzer: MorphemeAnalyzer) -> None:
    # Kiwi tags irregular conjugations "VA-I"/"VV-I"; they still count as VA/VV.
    assert analyzer.tokenize(["날씨가 추웠다", "추운 겨울", "빨리 걸어서"]) == [
        ["날씨", "춥"], ["춥", "겨울"], ["걷"]
    ]


def test_morphemes_lowercase_english_and_keep_numbers(analyzer: MorphemeAnalyzer) -> None:
    (terms,) = analyzer.tokenize(["NVIDIA GPU 3090은 9.5점"])
    assert terms[:3] == ["nvidia", "gpu", "3090"]
    assert "9.5" in terms


def test_analyzers_batch_keeps_order_and_empty_texts(analyzer: MorphemeAnalyzer) -> None:
    texts = ["", "고양이", "  ", "강아지"]
    assert analyzer.tokenize(texts) == [[], ["고양이"], [], ["강아지"]]
    assert analyzer.tokenize([]) == []


def test_whitespace_and_bigram_analyzers() -> None:
    assert WhitespaceAnalyzer().tokenize(["GPU를 샀다, (정말!)  좋다"]) == [["gpu를", "샀다", "정말", "좋다"]]
    assert CharBigramAnalyzer().tokenize(["서울 에서", "가", ""]) == [["서울", "울에", "에서"], ["가"], []]


def test_morpheme_analyzer_validates_tags() -> None:
    with pytest.raises(ConfigError, match="NOPE"):
        MorphemeAnalyzer({"NNG", "NOPE"})
    with pytest.raises(ConfigError):
        MorphemeAnalyzer(set())
    with pytest.raises(ValueError):
        MorphemeAnalyzer(num_workers=0)


def test_analyzer_config_round_trip() -> None:
    kiwi = MorphemeAnalyzer({"NNG", "SL"})
    config = kiwi.config()
    assert config["name"] == "kiwi" and config["tags"] == ["NNG", "SL"] and config["kiwipiepy"]
    rebuilt = analyzer_from_config(config)
    assert isinstance(rebuilt, MorphemeAnalyzer) and rebuilt.tags == {"NNG", "SL"}
    assert isinstance(analyzer_from_config(WhitespaceAnalyzer().config()), WhitespaceAnalyzer)
    assert isinstance(analyzer_from_config(CharBigramAnalyzer().config()), CharBigramAnalyzer)
    with pytest.raises(ConfigError):
        analyzer_from_config({"name": "mecab"})


@pytest.mark.parametrize(("query", "row"), CASES)
def test_hand_written_cases_rank_their_document_first(
    index: LexicalIndex, query: str, row: int
) -> None:
    assert index.search([query], k=3)[0][0][0] == row


def test_whitespace_analyzer_misses_glued_particles() -> None:
    whitespace = LexicalIndex.build(DOCS, analyzer=WhitespaceAnalyzer())
    assert whitespace.search(["서울"], k=5) == [[]]
    hits = [whitespace.search([q], k=1)[0] for q, _ in CASES]
    correct = sum(1 for h, (_, row) in zip(hits, CASES) if h and h[0][0] == row)
    assert correct <= len(CASES) // 2


def test_particle_variants_of_a_noun_all_match(index: LexicalIndex) -> None:
    for query in ["서울", "서울에서", "서울의", "서울은"]:
        assert {row for row, _ in index.search([query], k=10)[0]} == {0, 7}


def test_english_case_and_numbers(index: LexicalIndex) -> None:
    gpu = index.search(["GPU", "gpu", "Gpu"], k=5)
    assert gpu[0] == gpu[1] == gpu[2] and gpu[0][0][0] == 2
    assert index.search(["2024"], k=5)[0][0][0] == 4
    assert index.search(["13"], k=5)[0][0][0] == 4


@pytest.mark.parametrize("query", ["", "   ", "?!...", "—", "에서는", "에게서는", "ㅋㅋㅋ", "쀏쀏쀏"])
def test_queries_without_known_terms_return_nothing(index: LexicalIndex, query: str) -> None:
    assert index.search([query], k=5) == [[]]


def test_english_only_query(analyzer: MorphemeAnalyzer) -> None:
    docs = ["Machine Learning 입문서", "딥러닝 교과서", "machine 번역"]
    idx = LexicalIndex.build(docs, analyzer=analyzer)
    hits = idx.search(["machine learning"], k=5)[0]
    assert [row for row, _ in hits] == [0, 2]


def test_very_long_query(index: LexicalIndex) -> None:
    query = ("서울의 지하철 요금과 GPU 가격 " * 400)[:5000]
    (hits,) = index.search([query], k=3)
    assert len(hits) == 3 and hits[0][0] in (0, 2)


def test_search_returns_at_most_k_and_validates_k(index: LexicalIndex) -> None:
    assert len(index.search(["서울"], k=1)[0]) == 1
    assert len(index.search(["서울"], k=100)[0]) == 2
    with pytest.raises(ValueError):
        index.search(["서울"], k=0)


def test_ties_break_by_ascending_row() -> None:
    docs = ["사과 바나나", "포도", "사과 바나나", "사과 바나나", "바나나 사과"]
    idx = LexicalIndex.build(docs, analyzer=WhitespaceAnalyzer())
    (hits,) = idx.search(["사과"], k=10)
    assert [row for row, _ in hits] == [0, 2, 3, 4]
    assert len({score for _, score in hits}) == 1
    assert idx.search(["사과"], k=2) == [hits[:2]]
    assert [row for row, _ in idx.search(["바나나 사과"], k=3)[0]] == [0, 2, 3]


def test_build_streams_batches_and_reports_progress(analyzer: MorphemeAnalyzer) -> None:
    seen: list[int] = []
    texts = (t for t in DOCS[:5])
    idx = LexicalIndex.build(texts, analyzer=analyzer, batch_size=2, on_batch=seen.append)
    assert seen == [2, 2, 1] and len(idx) == 5


def test_empty_index(analyzer: MorphemeAnalyzer) -> None:
    idx = LexicalIndex.build([], analyzer=analyzer)
    assert len(idx) == 0 and idx.search(["서울", ""], k=3) == [[], []]


# --- the BM25 formula ------------------------------------------------------------------------


def _lucene_bm25(docs: list[list[str]], query: list[str], k1: float, b: float) -> list[float]:
    """BM25 as bm25s computes it (method "lucene"): no (k1 + 1) factor, idf = ln(1 + ...)."""
    n = len(docs)
    avgdl = sum(map(len, docs)) / n
    df = Counter(term for doc in docs for term in set(doc))
    scores = []
    for doc in docs:
        tf = Counter(doc)
        score = 0.0
        for term in query:
            if tf[term]:
                idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
                score += idf * tf[term] / (tf[term] + k1 * (1 - b + b * len(doc) / avgdl))
        scores.append(score)
    return scores


def test_scores_match_hand_computed_bm25() -> None:
    docs = ["a b c", "a a d", "b e"]
    idx = LexicalIndex.build(docs, analyzer=WhitespaceAnalyzer(), k1=1.2, b=0.75)
    # By hand: N=3, avgdl=8/3; df(a)=2, df(e)=1 -> idf(a)=ln(1+1.5/2.5), idf(e)=ln(1+2.5/1.5)
    idf_a, idf_e = math.log(1.6), math.log(1 + 2.5 / 1.5)
    norm = [1.2 * (0.25 + 0.75 * dl / (8 / 3)) for dl in (3, 3, 2)]
    expected = {
        0: idf_a * 1 / (1 + norm[0]),
        1: idf_a * 2 / (2 + norm[1]),
        2: idf_e * 1 / (1 + norm[2]),
    }
    (hits,) = idx.search(["a e"], k=3)
    assert [row for row, _ in hits] == sorted(expected, key=lambda r: -expected[r])
    for row, score in hits:
        assert score == pytest.approx(expected[row], rel=1e-6)
    by_formula = _lucene_bm25([d.split() for d in docs], ["a", "e"], 1.2, 0.75)
    assert expected == pytest.approx(dict(enumerate(by_formula)))


_WORDS = st.sampled_from(["가", "나", "다", "라", "마", "바"])


@settings(max_examples=60, deadline=None)
@given(
    docs=st.lists(st.lists(_WORDS, max_size=6), min_size=1, max_size=12),
    query=st.lists(_WORDS, min_size=1, max_size=4),
    k=st.integers(1, 12),
    k1=st.sampled_from([0.0, 0.9, 1.2, 2.0]),
    b=st.sampled_from([0.0, 0.4, 0.75, 1.0]),
)
def test_search_agrees_with_formula(
    docs: list[list[str]], query: list[str], k: int, k1: float, b: float
) -> None:
    idx = LexicalIndex.build([" ".join(d) for d in docs], analyzer=WhitespaceAnalyzer(), k1=k1, b=b)
    (hits,) = idx.search([" ".join(query)], k=k)
    expected = _lucene_bm25(docs, query, k1, b)
    matching = [row for row, score in enumerate(expected) if score > 0]
    assert len(hits) == min(k, len(matching))
    assert [(-s, r) for r, s in hits] == sorted((-s, r) for r, s in hits)
    for row, score in hits:
        assert score == pytest.approx(expected[row], rel=1e-5)
    if hits:  # nothing left out scores clearly better than the last hit
        worst = hits[-1][1]
        returned = {row for row, _ in hits}
        assert all(expected[r] <= worst * (1 + 1e-5) for r in matching if r not in returned)


# --- save / load -----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [MorphemeAnalyzer, WhitespaceAnalyzer, CharBigramAnalyzer])
def test_save_load_round_trip(tmp_path: Path, make: type) -> None:
    original = LexicalIndex.build(DOCS, analyzer=make(), k1=0.9, b=0.4)
    original.save(tmp_path / "lexical")
    loaded = LexicalIndex.load(tmp_path / "lexical")
    assert type(loaded.analyzer) is make and loaded.config() == original.config()
    assert len(loaded) == len(original)
    queries = [q for q, _ in CASES] + ["", "없는단어"]
    assert loaded.search(queries, k=5) == original.search(queries, k=5)


def test_saved_files_are_json_and_plain_npy(tmp_path: Path, index: LexicalIndex) -> None:
    index.save(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([*FILES, "terms.npy", "terms_indptr.npy"])
    for name in names:
        if name.endswith(".json"):
            json.loads((tmp_path / name).read_text("utf-8"))
        else:
            array = np.load(tmp_path / name, allow_pickle=False)
            assert array.dtype != object
    header = json.loads((tmp_path / "config.json").read_text("utf-8"))
    assert header["format_version"] == 2 and header["tokenizer"]["tags"] == sorted(DEFAULT_TAGS)


@pytest.mark.parametrize("name", FILES)
def test_missing_file_is_a_format_error_naming_it(
    tmp_path: Path, index: LexicalIndex, name: str
) -> None:
    index.save(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(IndexFormatError, match=name.replace(".", r"\.")):
        LexicalIndex.load(tmp_path)


@pytest.mark.parametrize("name", FILES)
def test_truncated_file_is_a_format_error(tmp_path: Path, index: LexicalIndex, name: str) -> None:
    index.save(tmp_path)
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(IndexFormatError):
        LexicalIndex.load(tmp_path)


def test_pickled_array_is_refused(tmp_path: Path, index: LexicalIndex) -> None:
    index.save(tmp_path)
    np.save(tmp_path / "data.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(IndexFormatError, match="data.npy"):
        LexicalIndex.load(tmp_path)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("format_version", 99),
        ("num_terms", 3),
        ("num_docs", 1),
        ("method", "bm25+"),
        ("tokenizer", {"name": "x"}),
    ],
)
def test_inconsistent_config_is_a_format_error(
    tmp_path: Path, index: LexicalIndex, field: str, value: object
) -> None:
    index.save(tmp_path)
    header = json.loads((tmp_path / "config.json").read_text("utf-8"))
    header[field] = value
    (tmp_path / "config.json").write_text(json.dumps(header), "utf-8")
    with pytest.raises(IndexFormatError) as info:
        LexicalIndex.load(tmp_path)
    assert str(info.value).endswith(".") and "\n" not in str(info.value)


def test_update_equals_a_fresh_build_of_the_same_rows(analyzer: MorphemeAnalyzer, tmp_path: Path) -> None:
    original = LexicalIndex.build(DOCS, analyzer=analyzer, k1=0.9, b=0.4)
    original.save(tmp_path / "lexical")
    loaded = LexicalIndex.load(tmp_path / "lexical")
    keep = [5, 0, 3]
    added = ["부산 해운대에서 열린 영화제", "서울 지하철 노선이 늘었다"]
    updated = loaded.updated(keep, added)
    fresh = LexicalIndex.build([DOCS[r] for r in keep] + added, analyzer=analyzer, k1=0.9, b=0.4)
    queries = [q for q, _ in CASES] + ["해운대 영화제", "지하철"]
    assert len(updated) == len(keep) + len(added)
    for got, want in zip(updated.search(queries, k=10), fresh.search(queries, k=10)):
        assert [r for r, _ in got] == [r for r, _ in want]
        assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-6)
    assert updated.search(["해운대 영화제"], k=1)[0][0][0] == len(keep)


def test_update_without_stored_terms_asks_for_a_rebuild(tmp_path: Path, index: LexicalIndex) -> None:
    index.save(tmp_path)
    (tmp_path / "terms.npy").unlink()
    (tmp_path / "terms_indptr.npy").unlink()
    old = LexicalIndex.load(tmp_path)
    assert old.search(["서울"], k=3) == index.search(["서울"], k=3)
    with pytest.raises(IndexFormatError, match="rebuild"):
        old.updated([0], ["새 문서"])


def test_corrupt_terms_file_is_a_format_error(tmp_path: Path, index: LexicalIndex) -> None:
    index.save(tmp_path)
    np.save(tmp_path / "terms_indptr.npy", np.array([0, 1], np.int64), allow_pickle=False)
    with pytest.raises(IndexFormatError, match="terms"):
        LexicalIndex.load(tmp_path)


def test_search_scored_scores_the_given_rows_as_search_does() -> None:
    docs = ["사과 배", "사과 사과 포도", "포도", "감 귤", "사과"]
    idx = LexicalIndex.build(docs, analyzer=WhitespaceAnalyzer())
    full = dict(idx.search(["사과 포도"], k=5)[0])
    mask = np.array([False, True, True, True, True])
    (ranked, given), = idx.search_scored(["사과 포도"], 2, [[4, 3, 0]], allowed=mask)
    assert ranked == idx.search(["사과 포도"], 2, allowed=mask)[0]
    # the given rows are scored whatever the mask allows; a row matching no term scores 0
    assert given.tolist() == [full[4], 0.0, full[0]]
    (none, zeros), = idx.search_scored(["없는말"], 3, [[1, 2]])
    assert none == [] and zeros.tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="rows"):
        idx.search_scored(["사과"], 1, [[5]])
    for call in (lambda m: idx.search(["사과"], 1, allowed=m),
                 lambda m: idx.search_scored(["사과"], 1, [[0]], allowed=m)):
        with pytest.raises(ValueError, match="mask covers 3 rows"):
            call(mask[:3])
