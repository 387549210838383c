"""Index facade: build, search, save/load, checks — with the HashEncoder fake (no torch)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from fakes import SAMPLE_DOCS, HashEncoder

from kosearch import (
    ConfigError,
    CorpusError,
    Document,
    IndexFormatError,
    IndexNotFoundError,
    ModelMismatchError,
)
from kosearch.index import Index
from kosearch.settings import ChunkSettings

DOCS = SAMPLE_DOCS


@pytest.fixture()
def encoder() -> HashEncoder:
    return HashEncoder()


@pytest.fixture()
def built(tmp_path: Path, encoder: HashEncoder) -> Index:
    return Index.build(DOCS, tmp_path / "idx", encoder=encoder)


def test_build_in_memory_and_search_finds_the_right_document(encoder: HashEncoder) -> None:
    index = Index.build(DOCS, encoder=encoder)
    assert index.path is None
    assert len(index) == len(DOCS)
    for mode in ("dense", "lexical", "hybrid"):
        hits = index.search("한글은 누가 창제했나요?", k=3, mode=mode)
        assert hits[0].id == "hangul", mode
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_hit_carries_text_title_meta_and_offsets(built: Index) -> None:
    hit = built.search("서울 한강", k=1, mode="dense")[0]
    assert hit.id == "seoul"
    assert hit.title == "서울"
    assert hit.meta == {"category": "지리"}
    doc = next(d for d in DOCS if d.id == "seoul")
    assert doc.text[hit.start : hit.end] == hit.text


def test_hybrid_hits_report_both_retrievers(built: Index) -> None:
    hit = built.search("김치 배추", k=1)[0]
    assert hit.id == "kimchi"
    assert {"dense_rank", "dense_score", "lexical_rank", "lexical_score"} <= set(hit.scores)
    assert hit.to_dict()["scores"]["lexical_rank"] == 1


def test_default_mode_is_hybrid_with_lexical_and_dense_without(tmp_path: Path) -> None:
    with_lex = Index.build(DOCS, encoder=HashEncoder())
    without = Index.build(DOCS, encoder=HashEncoder(), lexical=False)
    assert with_lex.default_mode.value == "hybrid"
    assert without.default_mode.value == "dense"
    assert without.lexical is None


def test_hybrid_on_dense_only_index_falls_back_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    index = Index.build(DOCS, encoder=HashEncoder(), lexical=False)
    with caplog.at_level(logging.WARNING, logger="kosearch"):
        hits = index.search("부산 해운대", k=2, mode="hybrid")
    assert hits[0].id == "busan"
    assert "no lexical" in caplog.text
    with pytest.raises(ConfigError, match="no lexical"):
        index.search("부산", mode="lexical")


def test_k_larger_than_the_collection_returns_everything_once(built: Index) -> None:
    hits = built.search("대한민국", k=50, mode="dense")
    assert sorted(h.id for h in hits) == sorted(d.id for d in DOCS)


@pytest.mark.parametrize("k", [0, -1])
def test_non_positive_k_is_an_error(built: Index, k: int) -> None:
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        built.search("서울", k=k)


@pytest.mark.parametrize("query", ["", "   "])
def test_empty_query_is_an_error(built: Index, query: str) -> None:
    with pytest.raises(ConfigError, match="empty"):
        built.search(query)


def test_unknown_mode_lists_the_valid_ones(built: Index) -> None:
    with pytest.raises(ConfigError, match="hybrid, dense, lexical"):
        built.search("서울", mode="fuzzy")


def test_search_batch_equals_single_searches(built: Index) -> None:
    queries = ["서울 한강", "김치 배추", "GPU 딥러닝"]
    batch = built.search_batch(queries, k=3)
    assert batch == [built.search(q, k=3) for q in queries]


def test_save_load_round_trip(built: Index, tmp_path: Path, encoder: HashEncoder) -> None:
    loaded = Index.load(tmp_path / "idx", encoder=encoder)
    for query in ("서울 한강", "제주도 한라산", "훈민정음"):
        assert loaded.search(query, k=4) == built.search(query, k=4)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format_version"] == 1
    assert manifest["model"]["name"] == encoder.name
    assert manifest["model"]["dim"] == encoder.dim
    assert manifest["counts"]["documents"] == len(DOCS)
    assert manifest["metric"] == "cosine"
    assert manifest["lexical"] is not None


def test_passages_by_default_group_per_document(tmp_path: Path) -> None:
    long_text = " ".join(f"문장 {i}번은 서울 이야기이다." for i in range(40))
    docs = [Document("long", long_text, "서울 이야기"), *DOCS]
    index = Index.build(docs, encoder=HashEncoder(max_tokens=32), chunking=ChunkSettings())
    assert index.manifest.counts["passages"] > len(docs)
    grouped = index.search("서울 이야기", k=3, mode="dense")
    assert len({h.id for h in grouped}) == len(grouped) == 3
    raw = index.search("서울 이야기", k=3, mode="dense", passages=True)
    assert [h.id for h in raw] == ["long"] * 3
    assert len({h.chunk for h in raw}) == 3


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_other_metrics_score_higher_is_better(metric: str) -> None:
    index = Index.build(DOCS, encoder=HashEncoder(), metric=metric, lexical=False)
    # the encoded passage is "title\ntext"; querying with exactly that gives distance 0
    hits = index.search("김치\n김치는 배추와 고춧가루로 담그는 한국의 전통 발효 음식이다.", k=3)
    assert hits[0].id == "kimchi"
    assert hits[0].score > hits[1].score
    if metric == "l2":
        assert hits[0].score == pytest.approx(0.0, abs=1e-5)


def test_unknown_metric_is_an_error() -> None:
    with pytest.raises(ConfigError, match="cosine, ip, l2"):
        Index.build(DOCS, encoder=HashEncoder(), metric="manhattan")


def test_query_model_of_another_dimension_is_refused(built: Index, tmp_path: Path) -> None:
    with pytest.raises(ModelMismatchError, match="dim 256.*dim 32"):
        Index.load(tmp_path / "idx", encoder=HashEncoder(dim=32))


def test_query_model_with_other_weights_is_refused(built: Index, tmp_path: Path) -> None:
    with pytest.raises(ModelMismatchError, match="other-model"):
        Index.load(tmp_path / "idx", encoder=HashEncoder(name="other-model"))


def test_missing_index_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="no kosearch index"):
        Index.load(tmp_path / "nothing")


@pytest.mark.parametrize("victim", ["vectors.faiss", "passages.parquet"])
def test_missing_part_is_a_format_error(built: Index, tmp_path: Path, victim: str) -> None:
    (tmp_path / "idx" / victim).unlink()
    with pytest.raises(IndexFormatError, match=victim):
        Index.load(tmp_path / "idx")


def test_count_mismatch_is_a_format_error(built: Index, tmp_path: Path) -> None:
    path = tmp_path / "idx" / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["counts"]["passages"] += 1
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(IndexFormatError, match="inconsistent"):
        Index.load(tmp_path / "idx")


def test_newer_format_is_refused(built: Index, tmp_path: Path) -> None:
    path = tmp_path / "idx" / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["format_version"] = 99
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(IndexFormatError, match="newer"):
        Index.load(tmp_path / "idx")


def test_failed_rebuild_leaves_the_old_index_untouched(built: Index, tmp_path: Path) -> None:
    before = {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir() if p.is_file()}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "좋은 문서"}\n{"id": "b", "text": \n', encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad.jsonl:2"):
        Index.build(bad, tmp_path / "idx", encoder=HashEncoder())
    after = {p.name: p.read_bytes() for p in (tmp_path / "idx").iterdir() if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "idx"]


def test_refuses_to_replace_a_directory_that_is_not_an_index(tmp_path: Path) -> None:
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(ConfigError, match="does not look like a kosearch directory"):
        Index.build(DOCS, precious, encoder=HashEncoder())
    assert (precious / "cat.jpg").read_bytes() == b"meow"


def test_empty_corpus_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no documents"):
        Index.build([], encoder=HashEncoder())
    with pytest.raises(CorpusError, match="1 had an empty text"):
        Index.build([Document("a", "   ")], encoder=HashEncoder())


def test_empty_texts_are_skipped_or_fatal_with_strict() -> None:
    docs = [*DOCS, Document("blank", " \n ")]
    index = Index.build(docs, encoder=HashEncoder())
    assert index.manifest.counts["skipped_empty"] == 1
    assert index.manifest.counts["documents"] == len(DOCS)
    with pytest.raises(CorpusError, match="blank"):
        Index.build(docs, encoder=HashEncoder(), strict=True)


def test_duplicate_document_ids_are_an_error() -> None:
    with pytest.raises(CorpusError, match="duplicate document id 'seoul'"):
        Index.build([*DOCS, Document("seoul", "또 다른 서울")], encoder=HashEncoder())


def test_build_from_a_file_streams_through_the_encoder_in_windows(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl"
    with corpus.open("w", encoding="utf-8") as f:
        for d in DOCS:
            f.write(json.dumps({"id": d.id, "text": d.text, "title": d.title}, ensure_ascii=False) + "\n")
    encoder = HashEncoder()
    index = Index.build(corpus, tmp_path / "idx", encoder=encoder)
    assert index.manifest.corpus["sources"] == [str(corpus)]
    assert len(encoder.encoded) == len(DOCS)
    # the title is part of what gets encoded
    assert any(text.startswith("서울\n") for text in encoder.encoded)


def test_vectors_match_the_encoder_output(built: Index, encoder: HashEncoder) -> None:
    stored = built.store.reconstruct(list(range(len(built))))
    texts = [f"{d.title}\n{d.text}" if d.title else d.text for d in DOCS]
    expected = encoder.encode_passages(texts)
    np.testing.assert_allclose(stored, expected, atol=1e-6)


class _LengthReranker:
    """Prefers shorter passages: an order no retriever would produce."""

    name = "length"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def score(self, query: str, texts):  # noqa: ANN001, ANN201
        self.calls.append((query, len(texts)))
        return np.array([-len(t) for t in texts], dtype=np.float32)


def test_rerank_reorders_the_top_passages(built: Index) -> None:
    reranker = _LengthReranker()
    hits = built.search("대한민국", k=3, rerank=reranker, rerank_top=6)
    assert reranker.calls == [("대한민국", 6)]
    lengths = [len(h.title) + len(h.text) for h in hits]
    assert lengths == sorted(lengths)
    assert all(h.score == h.scores["rerank_score"] for h in hits)
    assert [h.scores["rerank_rank"] for h in hits] == [1, 2, 3]


def test_rerank_top_must_be_positive(built: Index) -> None:
    with pytest.raises(ConfigError, match="rerank_top"):
        built.search("서울", rerank=_LengthReranker(), rerank_top=0)


def test_fusion_methods_and_weights(built: Index) -> None:
    from kosearch.settings import Fusion

    query = "제주도 한라산"
    dense_only = built.search(query, k=6, fusion=Fusion(dense_weight=1.0))
    lexical_only = built.search(query, k=6, fusion=Fusion(dense_weight=0.0))
    assert [h.id for h in dense_only][:3] == [h.id for h in built.search(query, k=3, mode="dense")]
    assert lexical_only[0].id == built.search(query, k=1, mode="lexical")[0].id
    rrf_hits = built.search(query, k=3, fusion=Fusion(method="rrf"))
    assert rrf_hits[0].id == "jeju"
    assert rrf_hits[0].score == pytest.approx(0.5 / 61 + 0.5 / 61)  # rank 1 in both, k=60
    with pytest.raises(ConfigError, match="between 0 and 1"):
        Fusion(dense_weight=1.5)
    with pytest.raises(ConfigError, match="convex or rrf"):
        Fusion(method="max")


def test_a_question_about_the_last_paragraph_finds_the_long_document() -> None:
    filler = [f"{i}번째 문단은 날씨와 교통 이야기를 길게 늘어놓는다." for i in range(30)]
    ending = "마지막 문단에서 비밀 열쇠는 등대지기 할머니가 보관한다고 밝혀진다."
    long_doc = Document("long", "\n\n".join([*filler, ending]), "긴 소설")
    index = Index.build([long_doc, *DOCS], encoder=HashEncoder(max_tokens=48))
    assert index.manifest.counts["passages"] > 5
    for mode in ("dense", "lexical", "hybrid"):
        hit = index.search("비밀 열쇠는 누가 보관하나요 등대지기", k=1, mode=mode)[0]
        assert hit.id == "long", mode
        assert ending in hit.text
        assert long_doc.text[hit.start : hit.end] == hit.text
        assert hit.start > len(long_doc.text) // 2


@pytest.mark.parametrize(
    "query",
    ["은는이가을를에서", "?!…", "What is a GPU used for deep learning", "서울 " * 2500],
)
def test_odd_queries_still_answer_in_hybrid_mode(built: Index, query: str) -> None:
    hits = built.search(query, k=3)
    assert len(hits) == 3  # dense always answers; BM25 may have nothing to add
    assert [h.rank for h in hits] == [1, 2, 3]


def test_no_chunk_reports_documents_longer_than_the_model_limit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    long_text = " ".join(f"단어{i}" for i in range(200))
    docs = [Document("long", long_text), *DOCS]
    with caplog.at_level(logging.WARNING, logger="kosearch"):
        index = Index.build(docs, encoder=HashEncoder(max_tokens=64),
                            chunking=ChunkSettings(enabled=False), lexical=False)
    assert index.manifest.counts["passages"] == len(docs)
    assert "1 document(s) are longer than the model's 64-token limit" in caplog.text
    assert index.search("단어199", k=1, mode="dense", passages=True)[0].text == long_text


def test_in_memory_index_saves_and_loads(tmp_path: Path, encoder: HashEncoder) -> None:
    index = Index.build(DOCS, encoder=encoder)
    with pytest.raises(ConfigError, match="give save\\(\\) a path"):
        index.save()
    index.save(tmp_path / "saved")
    loaded = Index.load(tmp_path / "saved", encoder=encoder)
    assert loaded.search("김치 배추", k=3) == index.search("김치 배추", k=3)
    loaded.save()  # back to where it came from, over its own memory-mapped files
    again = Index.load(tmp_path / "saved", encoder=encoder)
    assert again.search("서울 한강", k=4) == index.search("서울 한강", k=4)
