"""KoBERT models (ko-sbert-nli): indexed, chunked and queried through kosearch's own adapter.

A tiny model with the real layout (``modules.json`` naming
``ko_sentence_transformers.models.KoBertTransformer``, a SentencePiece model numbered by
``vocab.txt``) is built offline. The converted fast tokenizer is checked against
``KoBertTokenizer``'s algorithm, written out below from the ``ko-sentence-transformers`` 0.3
source and run on SentencePiece itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner
from tinymodels import _KOBERT_EXTRA, korean_sentences

from kosearch.cli import cli
from kosearch.encoding.registry import lookup

pytestmark = pytest.mark.st
spm = pytest.importorskip("sentencepiece", reason="needs the kobert extra")

ROOT = Path(__file__).resolve().parent.parent
UNDERLINE = "▁"


def kobert_reference_ids(text: str, sp: object, token2idx: dict[str, int]) -> list[int]:
    """``KoBertTokenizer(text)["input_ids"]``: preprocess_text, _tokenize, the vocab.txt ids."""
    text = " ".join(text.strip().split()).replace("``", '"').replace("''", '"')
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    pieces: list[str] = []
    for piece in sp.encode(text, out_type=str):  # type: ignore[attr-defined]
        if len(piece) > 1 and piece[-1] == "," and piece[-2].isdigit():
            cur = sp.encode(piece[:-1].replace(UNDERLINE, ""), out_type=str)  # type: ignore[attr-defined]
            if piece[0] != UNDERLINE and cur[0][0] == UNDERLINE:
                cur = cur[1:] if len(cur[0]) == 1 else [cur[0][1:], *cur[1:]]
            pieces.extend([*cur, piece[-1]])
        else:
            pieces.append(piece)
    unk = token2idx["[UNK]"]
    return [token2idx["[CLS]"], *(token2idx.get(p, unk) for p in pieces), token2idx["[SEP]"]]


def sample_texts() -> list[str]:
    lines = (ROOT / "data" / "sample.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines]
    return [d["text"] for d in docs] + [d.get("title", "") or "제목" for d in docs] \
        + korean_sentences(200, seed=3) + _KOBERT_EXTRA + ["", "  ", "Ａｂｃ ①②③ ﾊﾝｶｸ", "ㄱㄴㄷ 한"]


def test_the_fast_tokenizer_gives_kobert_tokenizers_ids(tiny_kobert_dir: Path) -> None:
    from kosearch.encoding.kobert import fast_tokenizer

    sp = spm.SentencePieceProcessor(model_file=str(tiny_kobert_dir / "tokenizer_78b3253a26.model"))
    vocab = (tiny_kobert_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    token2idx = {t: i for i, t in enumerate(vocab)}
    fast = fast_tokenizer(tiny_kobert_dir)
    texts = sample_texts()
    assert len(texts) > 300
    for text in texts:
        assert fast.encode(text).ids == kobert_reference_ids(text, sp, token2idx), text


def test_token_counts_and_offsets_follow_the_kobert_tokenizer(tiny_kobert_dir: Path) -> None:
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.ingest.tokens import TokenCounter

    encoder = SentenceTransformerEncoder(str(tiny_kobert_dir), device="cpu", processes=1)
    assert (encoder.max_tokens, encoder.dim) == (75, 32)
    sp = spm.SentencePieceProcessor(model_file=str(tiny_kobert_dir / "tokenizer_78b3253a26.model"))
    token2idx = {t: i for i, t in enumerate(
        (tiny_kobert_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())}
    texts = sample_texts()[:60]
    assert encoder.count_tokens(texts) == [len(kobert_reference_ids(t, sp, token2idx))
                                           for t in texts]
    counter = TokenCounter(encoder.backend_tokenizer, max_tokens=encoder.max_tokens)
    text = "서울의 날씨는 오늘 맑다. 민수는 학교에서 책을 읽었다."
    spans = counter.spans(text)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert spans == sorted(spans) and all(0 <= a <= b <= len(text) for a, b in spans)
    covered = {i for a, b in spans for i in range(a, b)}
    assert all(i in covered for i, c in enumerate(text) if not c.isspace())


def test_a_kobert_model_indexes_chunks_and_answers_queries(tiny_kobert_dir: Path,
                                                           tmp_path: Path) -> None:
    corpus, out = ROOT / "data" / "sample.jsonl", tmp_path / "idx"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def kosearch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kosearch", *args], cwd=tmp_path, env=env,
                              text=True, capture_output=True, timeout=600)

    built = kosearch("index", str(corpus), "-o", str(out), "--model", str(tiny_kobert_dir))
    assert built.returncode == 0, built.stderr
    assert "Loading weights" not in built.stderr and "Traceback" not in built.stderr
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    n_docs = len((corpus).read_text(encoding="utf-8").splitlines())
    assert manifest["counts"]["documents"] == n_docs
    assert manifest["counts"]["passages"] > n_docs  # 75 tokens: long documents were split
    assert manifest["model"]["max_tokens"] == 75
    question = "전세 보증금을 돌려받지 못했어요"
    found = kosearch("query", question, "-i", str(out), "--json", "-k", "3")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)["hits"]
    assert len(hits) == 3 and hits[0]["rank"] == 1


def test_passages_fit_the_kobert_token_budget(tiny_kobert_dir: Path, tmp_path: Path) -> None:
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.index import Index

    encoder = SentenceTransformerEncoder(str(tiny_kobert_dir), device="cpu", processes=1)
    index = Index.build(ROOT / "data" / "sample.jsonl", encoder=encoder, lexical=False)
    texts = index.passages.table.column("text").to_pylist()
    titles = index.passages.table.column("title").to_pylist()
    from kosearch.types import join_title

    counts = encoder.count_tokens([join_title(t, x) for t, x in zip(titles, texts)])
    assert max(counts) <= encoder.max_tokens


def test_without_the_extra_the_error_is_one_line(tiny_kobert_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # `import sentencepiece` fails
    result = CliRunner().invoke(cli, ["index", str(ROOT / "data" / "sample.jsonl"), "-o",
                                      str(tmp_path / "idx"), "--model", str(tiny_kobert_dir)])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "pip install 'kosearch[kobert]'" in errors[0]
    assert "Traceback" not in result.stderr


def test_the_registry_knows_ko_sbert_nli() -> None:
    spec = lookup("jhgan/ko-sbert-nli")
    assert spec is not None
    assert (spec.dim, spec.max_tokens, spec.kind) == (768, 75, "sts")
    assert "82.36" in spec.note and "kosearch[kobert]" in spec.note
