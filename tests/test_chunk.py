"""Sentence splitting and token-budget packing (kosearch.ingest) with the real me5 tokenizer."""

from __future__ import annotations

import json
import random

import pytest
from realdata import data_path, missing, model_path

from kosearch.errors import ConfigError
from kosearch.ingest.chunk import Chunker, ChunkStats
from kosearch.ingest.sentences import SentenceSplitter
from kosearch.ingest.tokens import TokenCounter
from kosearch.settings import ChunkSettings
from kosearch.types import Document, Passage

TOKENIZER = model_path("tokenizer.json")
CORPUS = data_path("ko_open_docs", "corpus.jsonl")
PROMPT = "passage: "

needs_tokenizer = pytest.mark.skipif(not TOKENIZER.exists(), reason=missing(TOKENIZER))


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    if not TOKENIZER.exists():
        pytest.skip(missing(TOKENIZER))
    return TokenCounter.from_file(str(TOKENIZER), max_tokens=512, prompt=PROMPT)


@pytest.fixture(scope="module")
def splitter() -> SentenceSplitter:
    return SentenceSplitter(num_workers=1)


@pytest.fixture(scope="module")
def sample() -> list[Document]:
    if not CORPUS.exists():
        pytest.skip(missing(CORPUS))
    with CORPUS.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    picked = random.Random(7).sample(rows, 100)
    return [Document(r["id"], r["text"], r.get("title", "")) for r in picked]


def make(counter: TokenCounter, splitter: SentenceSplitter, **settings: object) -> Chunker:
    return Chunker(counter, ChunkSettings(**settings), splitter=splitter)  # type: ignore[arg-type]


def squash(text: str) -> str:
    return "".join(text.split())


def sentence_texts(splitter: SentenceSplitter, text: str) -> list[str]:
    return [text[a:b] for a, b in splitter.split([text])[0]]


def check_passages(
    docs: list[Document], passages: list[Passage], chunker: Chunker, counter: TokenCounter
) -> None:
    """Fits the budget, offsets are right, numbering is 0.., text is covered in order."""
    by_id = {d.id: d for d in docs}
    lengths = counter.full_length([chunker.encode_text(p) for p in passages])
    assert max(lengths) <= chunker.budget
    grouped: dict[str, list[Passage]] = {}
    for p in passages:
        assert by_id[p.doc_id].text[p.start : p.end] == p.text
        assert p.text == p.text.strip() and p.text
        grouped.setdefault(p.doc_id, []).append(p)
    for doc_id, group in grouped.items():
        assert [p.chunk for p in group] == list(range(len(group)))
        if chunker.settings.overlap == 0:
            assert squash("".join(p.text for p in group)) == squash(by_id[doc_id].text)


# --- sentence splitting -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '그는 "내일 비가 온다."라고 말했다. 정말일까?',
            ['그는 "내일 비가 온다."라고 말했다.', "정말일까?"],
        ),
        ("값은 3.5와 1.2이다. 다음을 보라.", ["값은 3.5와 1.2이다.", "다음을 보라."]),
        (
            "Dr. Kim은 U.S.A.에 갔다. 그리고 돌아왔다",
            ["Dr. Kim은 U.S.A.에 갔다.", "그리고 돌아왔다"],
        ),
        (
            "준비물은 다음과 같다.\n1. 사과\n2. 배\n3. 포도",
            ["준비물은 다음과 같다.", "1. 사과\n2. 배\n3. 포도"],
        ),
        ("첫 줄 마침표 없음\n둘째 줄도 없음", ["첫 줄 마침표 없음", "둘째 줄도 없음"]),
        ("  \n  앞뒤 공백  \n ", ["앞뒤 공백"]),
        ("", []),
        (" \n\t ", []),
    ],
)
def test_split_tricky_korean(splitter: SentenceSplitter, text: str, expected: list[str]) -> None:
    assert sentence_texts(splitter, text) == expected


def test_split_keeps_words_whole_around_emoji_and_hanja(splitter: SentenceSplitter) -> None:
    # Kiwi alone cuts before the emoji and between 漢字 and 도.
    text = "이모지😀가 있다. 漢字도 있다. 끝"
    sentences = sentence_texts(splitter, text)
    assert any("이모지😀가" in s for s in sentences)
    assert any("漢字도" in s for s in sentences)
    assert squash("".join(sentences)) == squash(text)


def test_split_spans_cover_text_in_order(
    splitter: SentenceSplitter, sample: list[Document]
) -> None:
    texts = [d.text for d in sample[:20]]
    for text, spans in zip(texts, splitter.split(texts), strict=True):
        assert all(a < b for a, b in spans)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(spans, spans[1:], strict=False))
        assert squash("".join(text[a:b] for a, b in spans)) == squash(text)
        assert all(text[a:b] == text[a:b].strip() for a, b in spans)


def test_splitter_can_share_a_kiwi_instance(splitter: SentenceSplitter) -> None:
    shared = SentenceSplitter(kiwi=splitter.kiwi)
    assert shared.kiwi is splitter.kiwi
    text = '그는 "내일 비가 온다."라고 말했다. 정말일까? 첫 줄 마침표 없음\n둘째 줄'
    assert shared.split([text]) == splitter.split([text])


def test_split_windows_do_not_cut_a_run_without_spaces(splitter: SentenceSplitter) -> None:
    small = SentenceSplitter(num_workers=1, max_chars=1000)
    assert small.split(["가" * 2500]) == [[(0, 2500)]]
    text = "\n".join(f"{i}번째 문장은 여기에서 끝난다." for i in range(300))
    assert small.split([text]) == splitter.split([text])


def test_splitter_rejects_bad_settings() -> None:
    with pytest.raises(ConfigError, match="0"):
        SentenceSplitter(num_workers=0)
    with pytest.raises(ConfigError, match="10"):
        SentenceSplitter(max_chars=10)


# --- token counting -----------------------------------------------------------------------


@needs_tokenizer
def test_counter_matches_the_tokenizer(counter: TokenCounter) -> None:
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(TOKENIZER))
    text = "버락 오바마 미국 제44대 대통령이 공식 취임하였다."
    assert counter.full_length([text]) == [len(raw.encode(PROMPT + text).ids)]
    assert counter.count([text]) == [len(raw.encode(text, add_special_tokens=False).ids)]
    assert counter.overhead == 4  # <s> ▁passage : </s>
    spans = counter.spans(text)
    assert len(spans) == counter.count([text])[0]
    assert "".join(text[a:b] for a, b in spans) == text
    assert counter.spans_batch([text, ""]) == [spans, []]


def test_full_length_with_spans_agrees_with_separate_calls(counter: TokenCounter) -> None:
    texts = ["제목\n첫 문장이다. 둘째 문장이다.", "Mixed 漢字 😀 text", "", "가"]
    got = counter.full_length_with_spans(texts)
    assert [n for n, _ in got] == counter.full_length(texts)
    for text, (_, spans) in zip(texts, got, strict=True):
        assert len(spans) == counter.count([text])[0]
        assert [b for _, b in spans] == [b for _, b in counter.spans(text)]


@needs_tokenizer
def test_counter_never_truncates_and_leaves_the_tokenizer_alone() -> None:
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(TOKENIZER))
    raw.enable_truncation(8)
    counter = TokenCounter(raw, max_tokens=512)
    assert counter.overhead == 2
    assert counter.count(["가나다 " * 50])[0] > 8
    assert raw.truncation is not None and raw.truncation["max_length"] == 8


@needs_tokenizer
def test_counter_rejects_bad_max_tokens() -> None:
    with pytest.raises(ConfigError, match="0"):
        TokenCounter.from_file(str(TOKENIZER), max_tokens=0)


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (ChunkSettings(max_tokens=128, overlap=124), ["124", "128"]),
        (ChunkSettings(max_tokens=128, overlap=500), ["500", "128"]),
        (ChunkSettings(overlap=-1), ["-1"]),
        (ChunkSettings(max_tokens=-5), ["-5"]),
        (ChunkSettings(max_tokens=0), ["0"]),
        (ChunkSettings(max_tokens=1024), ["1024", "512"]),
        (ChunkSettings(max_tokens=10), ["10", "4"]),
    ],
)
def test_bad_settings_raise_config_error(
    counter: TokenCounter, splitter: SentenceSplitter, settings: ChunkSettings, named: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        Chunker(counter, settings, splitter=splitter)
    message = str(caught.value)
    assert all(value in message for value in named)
    assert "\n" not in message


def test_default_budget_is_the_model_limit_capped_at_512(splitter: SentenceSplitter) -> None:
    if not TOKENIZER.exists():
        pytest.skip(missing(TOKENIZER))
    big = TokenCounter.from_file(str(TOKENIZER), max_tokens=8192)
    small = TokenCounter.from_file(str(TOKENIZER), max_tokens=128)
    assert Chunker(big, splitter=splitter).budget == 512
    assert Chunker(small, splitter=splitter).budget == 128
    assert (
        Chunker(small, ChunkSettings(max_tokens=100, overlap=90), splitter=splitter).budget == 100
    )


# --- packing ------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [64, 128, 512])
def test_every_passage_of_real_documents_fits(
    counter: TokenCounter, splitter: SentenceSplitter, sample: list[Document], budget: int
) -> None:
    chunker = make(counter, splitter, max_tokens=budget)
    passages = chunker.chunk(sample)
    check_passages(sample, passages, chunker, counter)
    assert chunker.stats.documents == len(sample)
    assert chunker.stats.passages == len(passages)
    assert chunker.stats.over_limit == 0
    if budget == 512:  # many of these documents fit whole; the rest are packed, not cut
        assert len(passages) < 3 * len(sample)
        assert chunker.stats.sentences_split <= 2


def test_kiwi_reads_only_text_near_cuts(
    counter: TokenCounter, splitter: SentenceSplitter, sample: list[Document]
) -> None:
    short = [Document(f"s{i}", "짧은 문서이다. 한 문장 더 있다.") for i in range(5)]
    before = splitter.chars_analyzed
    chunker = make(counter, splitter, max_tokens=512)
    assert len(chunker.chunk(short)) == 5
    assert splitter.chars_analyzed == before  # documents that fit never reach Kiwi
    chunker.chunk(sample)
    read = splitter.chars_analyzed - before
    assert 0 < read < 0.4 * sum(len(d.text) for d in sample)


def test_passages_end_at_sentence_ends(
    counter: TokenCounter, splitter: SentenceSplitter, sample: list[Document]
) -> None:
    docs = sample[:50]
    chunker = make(counter, splitter, max_tokens=256)
    passages = chunker.chunk(docs)
    full = dict(zip([d.id for d in docs], splitter.split([d.text for d in docs]), strict=True))
    at_end = sum(p.end in {e for _, e in full[p.doc_id]} for p in passages)
    # Kiwi judges each cut from a window of text; it agrees with a whole-document split
    # almost always, and a long sentence cut at a token boundary ends mid-sentence.
    assert at_end >= 0.95 * len(passages)


def test_packing_is_greedy_over_whole_sentences(
    counter: TokenCounter, splitter: SentenceSplitter
) -> None:
    text = " ".join(f"{i}번째 문장은 조용히 여기에서 끝난다." for i in range(60))
    doc = Document("d", text)
    chunker = make(counter, splitter, max_tokens=64)
    passages = chunker.chunk([doc])
    check_passages([doc], passages, chunker, counter)
    sentences = splitter.split([text])[0]
    starts, ends = {a for a, _ in sentences}, {b for _, b in sentences}
    assert all(p.start in starts and p.end in ends for p in passages)
    # greedy: adding the next sentence would not have fitted
    for p, q in zip(passages, passages[1:], strict=False):
        next_end = min(b for b in ends if b > p.end)
        longer = chunker.encode_text(Passage("d", 0, text[p.start : next_end], p.start, next_end))
        assert counter.full_length([longer])[0] > 64
        assert q.start == p.end + 1
    assert chunker.stats.sentences_split == 0


def test_overlap_repeats_whole_trailing_sentences(
    counter: TokenCounter, splitter: SentenceSplitter
) -> None:
    text = " ".join(f"{i}번째 문장은 여기에서 끝난다." for i in range(80))
    doc = Document("d", text, title="겹침 시험")
    chunker = make(counter, splitter, max_tokens=96, overlap=30)
    passages = chunker.chunk([doc])
    check_passages([doc], passages, chunker, counter)
    sentences = splitter.split([text])[0]
    starts, ends = {a for a, _ in sentences}, {b for _, b in sentences}
    for p, q in zip(passages, passages[1:], strict=False):
        assert p.start < q.start < p.end < q.end  # overlaps, and brings new text
        assert q.start in starts and p.end in ends
        shared = text[q.start : p.end]
        assert 0 < counter.count([shared])[0] <= 30 + 1  # +1: a leading "▁" counted alone
        one_more = max(a for a in starts if a < q.start)
        assert counter.count([text[one_more : p.end]])[0] > 30
    assert len(passages) > len(make(counter, splitter, max_tokens=96).chunk([doc]))


def test_overlap_on_real_documents(
    counter: TokenCounter, splitter: SentenceSplitter, sample: list[Document]
) -> None:
    docs = sample[:30]
    texts = {d.id: d.text for d in docs}
    sentences = dict(zip(texts, splitter.split(list(texts.values())), strict=True))
    chunker = make(counter, splitter, max_tokens=128, overlap=32)
    passages = chunker.chunk(docs)
    check_passages(docs, passages, chunker, counter)
    overlapping = 0
    for p, q in zip(passages, passages[1:], strict=False):
        if p.doc_id != q.doc_id:
            continue
        assert p.start < q.start and p.end < q.end  # progress
        text, spans = texts[p.doc_id], sentences[p.doc_id]
        if q.start < p.end:  # whole trailing sentences of p, within the overlap
            overlapping += 1
            assert q.start in {a for a, _ in spans}
            assert counter.count([text[q.start : p.end]])[0] <= 32 + 1
        else:  # p's last sentence is longer than the overlap, or leaves q no room
            assert not text[p.end : q.start].strip()
            last = max(max((a for a, _ in spans if a < p.end), default=p.start), p.start)
            wider = Passage(q.doc_id, q.chunk, text[last : q.end], last, q.end, q.title)
            too_long = counter.count([text[last : p.end]])[0] > 32 - 1
            assert too_long or counter.full_length([chunker.encode_text(wider)])[0] > 128
    assert overlapping > 0


def test_giant_sentence_is_split_not_dropped(
    counter: TokenCounter, splitter: SentenceSplitter
) -> None:
    words = ["대한민국", "정부는", "오늘", "새로운", "정책을", "경제", "성장률", "전망을"]
    rng = random.Random(3)
    giant = " ".join(rng.choice(words) for _ in range(1500))
    text = f"앞 문장이다. {giant}. 뒤 문장이다."
    doc = Document("g", text)
    chunker = make(counter, splitter, max_tokens=128)
    passages = chunker.chunk([doc])
    check_passages([doc], passages, chunker, counter)
    assert len(passages) - 1 >= counter.count([giant])[0] // (128 - counter.overhead)
    assert chunker.stats.sentences_split == 1
    cut = [p for p in passages[:-1] if not p.text.endswith(".")]
    assert cut and all(text[p.end].isspace() for p in cut)  # cut between words


def test_giant_run_without_spaces_is_split(
    counter: TokenCounter, splitter: SentenceSplitter
) -> None:
    text = "가나다라마바사아자차카타파하" * 400
    doc = Document("g", text, title="공백 없는 문서")
    chunker = make(counter, splitter, max_tokens=64)
    passages = chunker.chunk([doc])
    check_passages([doc], passages, chunker, counter)
    assert passages[0].start == 0 and passages[-1].end == len(text)
    assert chunker.stats.sentences_split == 1


@pytest.mark.parametrize("spaces", [True, False])
def test_enormous_line_needs_bounded_work(
    counter: TokenCounter, splitter: SentenceSplitter, spaces: bool
) -> None:
    words = ["대한민국", "정부는", "오늘", "새로운", "정책을", "경제", "성장률", "전망", "학교"]
    rng = random.Random(5)
    size = 300_000 if spaces else 60_000
    text = " ".join(rng.choice(words) for _ in range(size // 3))[:size]
    if not spaces:
        text = text.replace(" ", "")
    doc = Document("huge", text)
    chunker = make(counter, splitter, max_tokens=512)
    before = splitter.chars_analyzed
    passages = chunker.chunk([doc])
    assert squash("".join(p.text for p in passages)) == squash(text)
    # Kiwi reads each region a bounded number of times, never the whole text per passage.
    assert splitter.chars_analyzed - before <= 2 * len(text)
    lengths = counter.full_length([chunker.encode_text(p) for p in passages[::25]])
    assert max(lengths) <= 512


def test_empty_whitespace_and_punctuation_documents(
    counter: TokenCounter, splitter: SentenceSplitter
) -> None:
    docs = [
        Document("empty", ""),
        Document("blank", " \n\t  \n", title="제목만 있는 문서"),
        Document("punct", "...!!!???"),
        Document("mixed", "Seoul 서울特別市는 😀 大韓民國의 首都이다. It has 9.7 million! 끝"),
        Document("padded", "\n\n  앞뒤에 공백이 있는 문장이다.  \n"),
    ]
    chunker = make(counter, splitter, max_tokens=64)
    passages = chunker.chunk(docs)
    check_passages(docs, passages, chunker, counter)
    assert {p.doc_id for p in passages} == {"punct", "mixed", "padded"}
    assert [p.text for p in passages if p.doc_id == "punct"] == ["...!!!???"]
    padded = next(p for p in passages if p.doc_id == "padded")
    assert (padded.start, padded.text) == (4, "앞뒤에 공백이 있는 문장이다.")
    assert chunker.stats.empty_documents == 2
    assert chunker.stats.documents == 5


def test_long_title_is_cut_for_encoding_only(
    counter: TokenCounter, splitter: SentenceSplitter
) -> None:
    title = "아주 긴 제목 " * 80
    doc = Document("t", "본문 첫 문장이다. " * 40, title=title)
    chunker = make(counter, splitter, max_tokens=128)
    passages = chunker.chunk([doc])
    check_passages([doc], passages, chunker, counter)
    assert all(p.title == title for p in passages)
    encoded = chunker.encode_text(passages[0])
    used_title = encoded.split("\n")[0]
    assert title.startswith(used_title) and len(used_title) < len(title)
    assert counter.count([used_title])[0] <= (128 - counter.overhead) // 2


def test_encode_text_joins_title_and_text(
    counter: TokenCounter, splitter: SentenceSplitter
) -> None:
    chunker = make(counter, splitter)
    assert chunker.encode_text(Passage("d", 0, "본문", 0, 2, "제목")) == "제목\n본문"
    assert chunker.encode_text(Passage("d", 0, "본문", 0, 2)) == "본문"
    assert chunker.encode_text(Passage("d", 0, "본문", 0, 2, "  ")) == "본문"


def test_chunking_disabled_keeps_documents_whole(
    counter: TokenCounter, splitter: SentenceSplitter, sample: list[Document]
) -> None:
    docs = [*sample[:20], Document("blank", "   ")]
    chunker = make(counter, splitter, enabled=False)
    passages = chunker.chunk(docs)
    assert [p.doc_id for p in passages] == [d.id for d in sample[:20]]
    assert all(
        p.chunk == 0 and p.text == d.text.strip()
        for p, d in zip(passages, sample[:20], strict=True)
    )
    lengths = counter.full_length([chunker.encode_text(p) for p in passages])
    assert chunker.stats.over_limit == sum(n > 512 for n in lengths) > 0
    assert chunker.stats.empty_documents == 1


def test_chunking_is_deterministic_and_stats_accumulate(
    counter: TokenCounter, splitter: SentenceSplitter, sample: list[Document]
) -> None:
    docs = sample[:25]
    first = Chunker(counter, ChunkSettings(max_tokens=128, overlap=16), splitter=splitter)
    second = Chunker(
        counter, ChunkSettings(max_tokens=128, overlap=16), splitter=SentenceSplitter(num_workers=2)
    )
    once = first.chunk(docs)
    assert once == second.chunk(docs)
    assert once == first.chunk(docs)
    assert first.stats == ChunkStats(50, 2 * len(once), 0, 0, 2 * second.stats.sentences_split)
