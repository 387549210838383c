"""Highlights: the best sentence(s) of a hit and the offsets of the matched query morphemes,
through Python, ``to_dict``, the CLI (plain, bold on a terminal, ``--full``, ``--json``) and the
HTTP server; on indexes with and without BM25, and on text that is not in NFC."""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import SAMPLE_DOCS, HashEncoder

from kosearch import Document, Highlights, Hit, Index, SearchOptions
from kosearch.lexical.analyzers import MorphemeAnalyzer
from kosearch.retrieval.highlight import MIN_CHARS, Highlighter

pytest.importorskip("kiwipiepy")

DATA = Path(__file__).resolve().parent / "data"
SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample.jsonl"
BOLD = "\x1b[1m"

TEXT = ("부산은 바다가 아름다운 항구 도시로 여름마다 많은 사람이 찾는다. "
        "서울에서는 내일 오후부터 비가 내린다는 예보가 있어 우산을 챙기는 것이 좋겠다. "
        "제주도는 화산섬이다.")


@pytest.fixture(scope="module")
def analyzer() -> MorphemeAnalyzer:
    return MorphemeAnalyzer(num_workers=1)


@pytest.fixture(scope="module")
def index() -> Index:
    docs = [*SAMPLE_DOCS, Document("weather", TEXT, "날씨")]
    return Index.build(docs, encoder=HashEncoder())


def check_shape(hit: Hit) -> Highlights:
    """The agreed invariants: the snippet is text[start:end], spans sorted, disjoint, inside."""
    found = hit.highlights
    assert found is not None
    assert 0 <= found.start <= found.end <= len(hit.text)
    assert hit.text[found.start:found.end] == found.snippet
    previous = found.start
    for s, e in found.spans:
        assert previous <= s < e <= found.end
        previous = e
    return found


def test_the_best_sentence_and_the_matched_morphemes(analyzer: MorphemeAnalyzer) -> None:
    found = Highlighter(analyzer).highlight("서울 날씨 비 예보", [TEXT])[0]
    assert found.snippet.startswith("서울에서는") and found.snippet.endswith("좋겠다.")
    assert TEXT[found.start:found.end] == found.snippet
    assert [TEXT[s:e] for s, e in found.spans] == ["서울", "비", "예보"]  # not "에서는", "가"


def test_a_short_best_sentence_is_joined_with_its_neighbour(analyzer: MorphemeAnalyzer) -> None:
    found = Highlighter(analyzer).highlight("화산섬", [TEXT])[0]
    assert found.snippet.endswith("제주도는 화산섬이다.")
    assert len(found.snippet) >= MIN_CHARS and found.snippet.startswith("서울에서는")
    assert [TEXT[s:e] for s, e in found.spans] == ["화산섬"]


def test_no_match_gives_the_first_sentence_and_no_spans(analyzer: MorphemeAnalyzer) -> None:
    found = Highlighter(analyzer).highlight("GPU 딥러닝", [TEXT])[0]
    assert TEXT.startswith(found.snippet) and found.start == 0 and found.spans == ()


def test_weights_pick_the_sentence_with_the_rarer_term(analyzer: MorphemeAnalyzer) -> None:
    text = ("사과와 배를 샀다. 오늘 시장에서 포도를 샀다. "
            "배가 제일 맛있었다고 한다. 그리고 집에 왔다.")
    plain = Highlighter(analyzer).highlight("포도 배", [text])[0]
    assert plain.snippet.startswith("사과와")  # one term each: the earlier sentence wins
    weighted = Highlighter(analyzer).highlight(
        "포도 배", [text], lambda terms: [5.0 if t == "포도" else 1.0 for t in terms])[0]
    assert "포도" in weighted.snippet and weighted.start > 0


def test_offsets_map_back_to_decomposed_hangul(analyzer: MorphemeAnalyzer) -> None:
    text = unicodedata.normalize("NFD", TEXT)
    assert len(text) > len(TEXT)
    found = Highlighter(analyzer).highlight("서울 날씨 예보", [text])[0]
    assert text[found.start:found.end] == found.snippet
    assert [unicodedata.normalize("NFC", text[s:e]) for s, e in found.spans] == ["서울", "예보"]


def test_latin_words_match_case_insensitively_in_mixed_script(
    analyzer: MorphemeAnalyzer,
) -> None:
    text = "이번 달부터 kb국민은행 앱에서 chatgpt로 상담을 받을 수 있습니다. 다른 은행은 아직이다."
    found = Highlighter(analyzer).highlight("KB국민은행 ChatGPT로 상담", [text])[0]
    words = [text[s:e] for s, e in found.spans]
    assert "chatgpt" in words and "상담" in words and any("kb" in w for w in words)


def test_index_search_fills_highlights_and_the_option_turns_them_off(index: Index) -> None:
    hits = index.search("서울 날씨 예보", k=3)
    for hit in hits:
        check_shape(hit)
    top = next(h for h in hits if h.id == "weather")
    assert [top.text[s:e] for s, e in top.highlights.spans] == ["서울", "예보"]
    off = index.search("서울 날씨 예보", k=3, **SearchOptions(highlights=False).keywords())
    assert [h.highlights for h in off] == [None, None, None]
    assert [(h.id, h.score) for h in off] == [(h.id, h.score) for h in hits]


def test_dense_only_index_has_highlights() -> None:
    dense = Index.build([*SAMPLE_DOCS, Document("weather", TEXT)], encoder=HashEncoder(),
                        lexical=False)
    assert dense.lexical is None
    hit = next(h for h in dense.search("서울 날씨 예보", k=7) if h.id == "weather")
    assert [hit.text[s:e] for s, e in check_shape(hit).spans] == ["서울", "예보"]


def test_to_dict_has_the_agreed_json_shape(index: Index) -> None:
    hit = next(h for h in index.search("서울 날씨 예보", k=3) if h.id == "weather")
    found = json.loads(json.dumps(hit.to_dict(), ensure_ascii=False))["highlights"]
    assert set(found) == {"snippet", "start", "end", "spans"}
    assert found["snippet"] == hit.text[found["start"]:found["end"]]
    assert [hit.text[s["start"]:s["end"]] for s in found["spans"]] == ["서울", "예보"]
    assert Hit("x", 0, 1.0, 1, "t").to_dict()["highlights"] is None


def test_an_index_from_0_1_0_gets_highlights(tmp_path: Path) -> None:
    target = tmp_path / "old"
    shutil.copytree(DATA / "index-0.1.0", target)
    old = Index.load(target, encoder=HashEncoder(dim=32, max_tokens=64))
    for hit in old.search("훈민정음 해례본은 언제 발견됐나요?", k=3):
        check_shape(hit)


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "idx"
    Index.build(SAMPLE, path, encoder=HashEncoder())
    return path


@pytest.fixture()
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI loads the index's model by name; here that model is the test fake."""
    encoder = HashEncoder()
    monkeypatch.setattr("kosearch.index.load_query_encoder", lambda *a, **k: encoder)


def run_query(cli_index: Path, *args: str, color: bool = False) -> str:
    from kosearch.cli import cli

    result = CliRunner().invoke(
        cli, ["query", "훈민정음 해례본은 언제 어디에서 발견됐나요?", "-i", str(cli_index), "-k",
              "3", "--query-backend", "torch", *args], color=color)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.usefixtures("fake_model")
def test_cli_shows_the_answering_sentence_bold_only_on_a_terminal(cli_index: Path) -> None:
    piped = run_query(cli_index)
    assert "\x1b[" not in piped
    assert "1940년 경상북도 안동에서 발견되었습니다" in piped  # the answer, mid-passage
    passage = sample_text("doc-016")
    assert passage[:40] not in piped  # the snippet, not the passage's beginning
    colored = run_query(cli_index, color=True)
    assert f"{BOLD}해례본" in colored and f"{BOLD}발견" in colored
    assert click_unstyle(colored) == piped


@pytest.mark.usefixtures("fake_model")
def test_cli_full_prints_whole_passages(cli_index: Path) -> None:
    out = run_query(cli_index, "--full", color=True)
    hits = json.loads(run_query(cli_index, "--json"))["hits"]
    assert BOLD in out
    plain = click_unstyle(out)
    for hit in hits:  # every line of every passage, as it is
        for line in hit["text"].splitlines():
            assert f"     {line}\n" in plain


@pytest.mark.usefixtures("fake_model")
def test_cli_json_has_highlights_and_no_highlights_turns_them_off(cli_index: Path) -> None:
    record = json.loads(run_query(cli_index, "--json"))
    hit = record["hits"][0]
    found = hit["highlights"]
    assert hit["id"] == "doc-016" and "1940년" in found["snippet"]
    assert hit["text"][found["start"]:found["end"]] == found["snippet"]
    assert "해례본" in [hit["text"][s["start"]:s["end"]] for s in found["spans"]]
    off = json.loads(run_query(cli_index, "--json", "--no-highlights"))
    assert [h["highlights"] for h in off["hits"]] == [None] * 3


def sample_text(doc_id: str) -> str:
    records = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]
    return next(r["text"] for r in records if r["id"] == doc_id)


def click_unstyle(text: str) -> str:
    import click

    return click.unstyle(text)


# ---------------------------------------------------------------------------- the server


def test_server_responses_carry_highlights(index: Index) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from kosearch.serving.app import create_app

    with TestClient(create_app(index)) as client:
        body = client.post("/search", json={"query": "서울 날씨 예보", "k": 3}).json()
        off = client.post("/search/batch", json={"queries": ["서울 날씨 예보"], "k": 3,
                                                 "highlights": False}).json()
        schema = client.get("/openapi.json").json()["components"]["schemas"]
    hit = next(h for h in body["hits"] if h["id"] == "weather")
    found = hit["highlights"]
    assert hit["text"][found["start"]:found["end"]] == found["snippet"]
    assert [hit["text"][s["start"]:s["end"]] for s in found["spans"]] == ["서울", "예보"]
    assert [h["highlights"] for h in off["results"][0]["hits"]] == [None] * 3
    assert {"snippet", "start", "end", "spans"} <= set(schema["Highlights"]["properties"])


def test_kiwi_reads_only_the_best_rough_sentence_and_the_next() -> None:
    from kosearch.retrieval.highlight import rough_candidates, rough_sentences

    filler = "이 문장은 질문과 아무 관계가 없는 긴 설명으로 채워져 있는 문장입니다."
    answer = "서울에서는 내일 비가 온다는 예보가 나왔습니다."
    parts = [filler] * 4 + ["짧다.", answer, filler, filler]
    text = " ".join(parts)
    units = rough_sentences(text)
    assert all(text[lo:hi].strip() == text[lo:hi] for lo, hi in units)
    assert any(text[lo:hi].startswith("짧다. 서울에서는") for lo, hi in units)  # a short one joins
    (lo, hi), = rough_candidates(text, {"서울": 1.0, "예보": 2.0})
    assert text[lo:hi].startswith("짧다. 서울에서는") and text[lo:hi].endswith(filler)
    assert hi - lo < len(text) / 2


def test_the_best_sentence_is_found_deep_in_a_long_passage(analyzer: MorphemeAnalyzer) -> None:
    filler = "이 문장은 질문과 아무 관계가 없는 긴 설명으로 채워져 있는 문장입니다."
    answer = "서울에서는 내일 오후부터 밤늦게까지 곳곳에 강한 비가 내린다는 기상청의 예보가 있다."
    assert len(answer) >= MIN_CHARS
    text = "\n".join([filler] * 6 + [answer] + [filler] * 6)
    found = Highlighter(analyzer).highlight("서울 예보", [text])[0]
    assert found.snippet == answer
    assert [text[s:e] for s, e in found.spans] == ["서울", "예보"]
