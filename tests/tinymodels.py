"""Tiny sentence-transformers models built offline, for tests of the real encoder.

Two shapes stand in for the two families kosearch meets in practice:

* ``build_tiny_bert``: a BERT with a WordPiece vocabulary, mean pooling, 128 tokens and no
  prompts, like the ko-sbert / KR-SBERT models;
* ``build_tiny_xlmr``: an XLM-R with a Unigram (sentencepiece-like) vocabulary, mean pooling,
  64 tokens and ``query: ``/``passage: `` prompts in its config, like the e5 family.

Both tokenizers are trained with ``tokenizers`` on a few hundred generated Korean sentences; the
weights are random but seeded, so a model is a pure function of its seed. Each builder saves the
model with ``SentenceTransformer.save`` and returns the directory. Heavy imports stay inside the
functions so that importing this module costs nothing.

``build_tiny_cross_encoder`` adds a reranker: the same WordPiece BERT with a
sequence-classification head, saved with ``save_pretrained`` as a plain transformers checkpoint
(like most hub rerankers), which ``CrossEncoder`` loads directly.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_PEOPLE = ["민수", "지영", "철수", "영희", "서연", "도윤", "하은", "준호", "수빈", "지훈"]
_PLACES = ["서울", "부산", "대구", "인천", "광주", "제주도", "강남역", "학교", "도서관", "시장"]
_THINGS = ["책", "커피", "김치찌개", "자전거", "노트북", "우산", "사과", "신문", "영화", "음악"]
_VERBS = ["읽었다", "샀다", "좋아한다", "찾았다", "만들었다", "보았다", "빌렸다", "기다렸다"]
_ADJS = ["맑다", "흐리다", "춥다", "덥다", "조용하다", "붐빈다", "넓다", "깨끗하다"]
_TIMES = ["오늘", "어제", "내일", "주말에", "아침에", "저녁에", "지난달", "올해"]
_TEMPLATES = [
    "{t} {p}는 {l}에서 {o}을 {v}.",
    "{l}의 날씨는 {t} {a}.",
    "{p}와 {q}는 {l}에 갔다.",
    "{t} {l}은 정말 {a}.",
    "{p}는 {o}에 대해 물었다.",
    "{l}에서 {o} 가격이 올랐다고 한다.",
    "{p}가 {t} {o}을 {v}고 말했다.",
    "{l} 근처에 새로운 {o} 가게가 생겼다.",
]


def korean_sentences(n: int = 300, seed: int = 7) -> list[str]:
    """``n`` generated Korean sentences (deterministic for a given seed)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        template = rng.choice(_TEMPLATES)
        out.append(
            template.format(
                p=rng.choice(_PEOPLE), q=rng.choice(_PEOPLE), l=rng.choice(_PLACES),
                o=rng.choice(_THINGS), v=rng.choice(_VERBS), a=rng.choice(_ADJS),
                t=rng.choice(_TIMES),
            )
        )
    return out


def _wordpiece_tokenizer(sentences: list[str]) -> Tokenizer:
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    # NFD (BertNormalizer's default strip_accents) would split Hangul syllables into jamo.
    tok.normalizer = normalizers.BertNormalizer(strip_accents=False, lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    trainer = trainers.WordPieceTrainer(
        vocab_size=600, special_tokens=specials, show_progress=False
    )
    tok.train_from_iterator(sentences, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return tok


def _unigram_tokenizer(sentences: list[str]) -> Tokenizer:
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.UnigramTrainer(
        vocab_size=500, special_tokens=specials, unk_token="<unk>", show_progress=False
    )
    # The prompts are part of every input, so the vocabulary should know them.
    tok.train_from_iterator(sentences + ["query: passage: "] * 20, trainer=trainer)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    tok.decoder = decoders.Metaspace()
    return tok


def _save(
    path: Path,
    hf_model: PreTrainedModel,
    hf_tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int,
    prompts: dict[str, str] | None,
) -> Path:
    """Wrap a transformers model in Transformer + mean Pooling and save it with ST."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    with tempfile.TemporaryDirectory() as raw:
        hf_model.save_pretrained(raw)
        hf_tokenizer.save_pretrained(raw)
        transformer = Transformer(raw, max_seq_length=max_seq_length)
        pooling = Pooling(hf_model.config.hidden_size, pooling_mode="mean")
        model = SentenceTransformer(modules=[transformer, pooling], device="cpu", prompts=prompts)
        model.save(str(path))
    return path


@dataclass(frozen=True)
class TinySpec:
    """One kind of tiny model: its tokenizer, architecture, and how it is saved."""

    vocabulary: str  # "wordpiece", "wordpiece-sorted" (stable ids) or "unigram"
    specials: dict[str, str]  # PreTrainedTokenizerFast's special-token arguments
    config: str  # transformers config class
    model: str  # transformers model class
    max_tokens: int
    positions: int  # max_position_embeddings
    prompts: dict[str, str] | None = None
    sentence_transformer: bool = True  # False: a plain transformers checkpoint (rerankers)
    extra_config: dict[str, Any] = field(default_factory=dict)  # ids resolved from the vocab


_BERT_SPECIALS = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                  "sep_token": "[SEP]", "mask_token": "[MASK]"}
TINY_MODELS: dict[str, TinySpec] = {
    # ko-sbert-like: WordPiece BERT, mean pooling, 128 tokens, no prompts
    "bert": TinySpec("wordpiece", _BERT_SPECIALS, "BertConfig", "BertModel", 128, 128,
                     extra_config={"pad_token_id": "[PAD]"}),
    # e5-like: Unigram XLM-R, mean pooling, 64 tokens, query/passage prompts in its config
    "xlmr": TinySpec(
        "unigram",
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
         "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"},
        "XLMRobertaConfig", "XLMRobertaModel", 64, 66,
        prompts={"query": "query: ", "passage": "passage: "},
        extra_config={"pad_token_id": "<pad>", "bos_token_id": "<s>", "eos_token_id": "</s>",
                      "type_vocab_size": 1},
    ),
    # reranker-like: WordPiece BERT with a classification head, saved as hub rerankers are.
    # A wider initialisation than BERT's 0.02 spreads the random scores apart, so that
    # orderings in tests do not hinge on differences in the last float bits.
    "cross-encoder": TinySpec("wordpiece-sorted", _BERT_SPECIALS, "BertConfig",
                              "BertForSequenceClassification", 128, 128,
                              sentence_transformer=False,
                              extra_config={"pad_token_id": "[PAD]", "initializer_range": 0.2}),
}


def build_tiny(kind: str, path: str | Path, *, seed: int = 0, **config: Any) -> Path:
    """Build the tiny model ``kind`` (a key of :data:`TINY_MODELS`) into ``path``.

    Args:
        kind: ``bert``, ``xlmr`` or ``cross-encoder``.
        path: Directory to save the model into (created if missing).
        seed: Seed of the random weights; the vocabulary does not depend on it.
        **config: Extra config fields, e.g. ``num_labels=2`` for a two-class cross-encoder.

    Returns:
        The model directory.
    """
    import torch
    import transformers

    spec = TINY_MODELS[kind]
    sentences = korean_sentences()
    tok = (_unigram_tokenizer(sentences) if spec.vocabulary == "unigram"
           else _wordpiece_tokenizer(sentences))
    if spec.vocabulary == "wordpiece-sorted":
        tok = _renumbered_wordpiece(tok)
    hf_tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=spec.max_tokens, **spec.specials
    )
    resolved = {k: tok.token_to_id(v) if k.endswith("_token_id") else v
                for k, v in spec.extra_config.items()}
    settings = getattr(transformers, spec.config)(
        vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=spec.positions,
        **resolved, **config,
    )
    torch.manual_seed(seed)
    model = getattr(transformers, spec.model)(settings).eval()
    out = Path(path)
    if spec.sentence_transformer:
        return _save(out, model, hf_tokenizer, max_seq_length=spec.max_tokens,
                     prompts=spec.prompts)
    model.save_pretrained(out)
    hf_tokenizer.save_pretrained(out)
    return out


def build_tiny_bert(path: str | Path, *, seed: int = 0) -> Path:
    """``build_tiny("bert", ...)``: a ko-sbert-like model."""
    return build_tiny("bert", path, seed=seed)


def build_tiny_xlmr(path: str | Path, *, seed: int = 0) -> Path:
    """``build_tiny("xlmr", ...)``: an e5-like model with prompts."""
    return build_tiny("xlmr", path, seed=seed)


def build_tiny_cross_encoder(path: str | Path, *, seed: int = 0, num_labels: int = 1) -> Path:
    """``build_tiny("cross-encoder", ...)``: a reranker (``num_labels`` outputs)."""
    return build_tiny("cross-encoder", path, seed=seed, num_labels=num_labels)


def _renumbered_wordpiece(tok: Tokenizer) -> Tokenizer:
    """The same WordPiece tokenizer, with its learned tokens numbered in sorted order.

    The trainer numbers learned tokens in hash-map order, which changes from run to run (the
    special tokens alone keep ids 0-4), so without this the same seed would pair the same
    weights with different token ids.
    """
    from tokenizers import models

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = tok.get_vocab()
    if [vocab[s] for s in specials] != list(range(len(specials))):
        raise ValueError("the special tokens are expected to hold ids 0-4")
    learned = sorted(t for t in vocab if t not in specials)
    numbered = {t: i for i, t in enumerate(specials + learned)}
    tok.model = models.WordPiece(numbered, unk_token="[UNK]", continuing_subword_prefix="##")
    return tok


KOBERT_MODULE = "ko_sentence_transformers.models.KoBertTransformer"
_KOBERT_SPECIALS = ["[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]
_KOBERT_EXTRA = [  # numbers, punctuation, Latin with accents, odd spacing
    "가격은 1,000원에서 12,500원으로 올랐다.", "2024년 3월, 서울의 인구는 9,386,034명이었다.",
    "카페(café)에서 «커피»를 마셨다!", "  공백이   많은  문장 ,  그리고 ``인용''도 있다.  ",
]


def build_tiny_kobert(path: str | Path, *, seed: int = 0, max_seq_length: int = 75) -> Path:
    """Build a model laid out like ko-sbert-nli (KoBERT): ``modules.json`` naming
    ``ko_sentence_transformers.models.KoBertTransformer``, a SentencePiece model
    (``tokenizer_78b3253a26.model``, trained here on a few hundred Korean sentences) numbered by
    ``vocab.txt``, a small random BERT and mean pooling. Needs ``sentencepiece``.

    Returns:
        The model directory.
    """
    import io
    import json

    import sentencepiece as spm
    import torch
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(korean_sentences(400) + _KOBERT_EXTRA * 5), model_writer=buffer,
        vocab_size=600, hard_vocab_limit=False, model_type="unigram", character_coverage=1.0,
        normalization_rule_name="nmt_nfkc", minloglevel=2, num_threads=1,
    )
    (out / "tokenizer_78b3253a26.model").write_bytes(buffer.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=buffer.getvalue())
    pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())
              if not (processor.is_control(i) or processor.is_unknown(i))]
    vocab = _KOBERT_SPECIALS + pieces
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    files = {
        "tokenizer_config.json": {"do_lower_case": False, "tokenizer_class": "KoBertTokenizer",
                                  "model_max_length": 512},
        "special_tokens_map.json": {"unk_token": "[UNK]", "sep_token": "[SEP]",
                                    "pad_token": "[PAD]", "cls_token": "[CLS]",
                                    "mask_token": "[MASK]"},
        "sentence_bert_config.json": {"max_seq_length": max_seq_length, "do_lower_case": False},
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": KOBERT_MODULE},
            {"idx": 1, "name": "1", "path": "1_Pooling",
             "type": "sentence_transformers.models.Pooling"},
        ],
    }
    for name, content in files.items():
        (out / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, pad_token_id=vocab.index("[PAD]"),
    )
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(str(out))
    (out / "1_Pooling").mkdir(exist_ok=True)
    Pooling(32, pooling_mode="mean").save(str(out / "1_Pooling"))
    return out
