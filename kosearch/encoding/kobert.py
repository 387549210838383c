"""KoBERT models (ko-sbert-nli and kin): their SentencePiece tokenizer as a fast tokenizer.

Their ``modules.json`` names ``ko_sentence_transformers.models.KoBertTransformer``, a module of the
``ko-sentence-transformers`` package (no release since 2021) that current sentence-transformers
refuses without ``trust_remote_code`` and, with it, fails to construct. What the module adds to
a plain BERT is only its tokenizer, ``KoBertTokenizer``: a SentencePiece model
(``tokenizer_78b3253a26.model``) whose pieces are numbered by ``vocab.txt``, after collapsing
whitespace and dropping accents (NFKD, combining marks removed).

:func:`kobert_view` rebuilds that tokenizer as a ``tokenizers`` Unigram model (the same pieces
and scores, ids from ``vocab.txt``, SentencePiece's own normalization rules) and presents the
model directory to sentence-transformers as an ordinary one: a temporary folder of links to the
weights and modules, with a plain ``Transformer`` in ``modules.json`` and the converted
``tokenizer.json``. The model then encodes with the usual code, and kosearch counts tokens with
the same fast tokenizer. Reading the SentencePiece model needs ``sentencepiece`` (the
``kobert`` extra). One quirk of ``KoBertTokenizer`` is reproduced approximately: it re-splits a
piece that ends in a digit and a comma; here such pieces get the lowest score, so they are
chosen only where nothing else fits, which gives the same split in the cases tested (numbers
with thousands separators).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kosearch.errors import MissingDependencyError, ModelLoadError

KOBERT_MODULE = "KoBertTransformer"
SP_MODEL_FILE = "tokenizer_78b3253a26.model"
VOCAB_FILE = "vocab.txt"
SPECIAL_TOKENS = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                  "sep_token": "[SEP]", "mask_token": "[MASK]"}
_REPLACED = {"modules.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
             "added_tokens.json"}
_DIGIT_COMMA = re.compile(r".*\d,$")
_INSTALL = "pip install 'kosearch[kobert]'"


def is_kobert(directory: Path) -> bool:
    """Whether the model directory's ``modules.json`` uses the KoBERT transformer module."""
    try:
        modules = json.loads((directory / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(modules, list) and any(
        isinstance(m, dict) and str(m.get("type", "")).endswith(KOBERT_MODULE) for m in modules
    )


@contextlib.contextmanager
def kobert_view(directory: Path) -> Iterator[Path]:
    """A temporary directory that sentence-transformers loads as this KoBERT model.

    Raises:
        MissingDependencyError: ``sentencepiece`` is not installed.
        ModelLoadError: the directory lacks the SentencePiece model or ``vocab.txt``.
    """
    tokenizer = fast_tokenizer(directory)
    with tempfile.TemporaryDirectory(prefix="kosearch-kobert-") as tmp:
        view = Path(tmp)
        for entry in directory.iterdir():
            if entry.name not in _REPLACED:
                os.symlink(entry.resolve(), view / entry.name)
        modules = json.loads((directory / "modules.json").read_text(encoding="utf-8"))
        for module in modules:
            if str(module.get("type", "")).endswith(KOBERT_MODULE):
                module["type"] = "sentence_transformers.models.Transformer"
        (view / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
        _save_tokenizer(tokenizer, view, _max_length(directory))
        yield view


def fast_tokenizer(directory: Path) -> Any:
    """``KoBertTokenizer`` of the model in ``directory`` as a ``tokenizers.Tokenizer``."""
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as e:
        raise MissingDependencyError(
            f"the model at {directory} uses the KoBERT (SentencePiece) tokenizer, which needs "
            f"sentencepiece: {_INSTALL}"
        ) from e
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    sp_file, vocab_file = directory / SP_MODEL_FILE, directory / VOCAB_FILE
    for needed in (sp_file, vocab_file):
        if not needed.is_file():
            raise ModelLoadError(
                f"cannot load model '{directory}': it uses the KoBERT tokenizer but has no "
                f"{needed.name}"
            )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(sp_file.read_bytes())
    normal = (proto.SentencePiece.NORMAL, proto.SentencePiece.USER_DEFINED)
    scores = {p.piece: p.score for p in proto.pieces if p.type in normal}
    # The lowest score of a normal piece, as SentencePiece computes it: the unknown-character
    # penalty is 10 below it, in both libraries, so no entry may score lower.
    floor = min((p.score for p in proto.pieces if p.type == proto.SentencePiece.NORMAL),
                default=0.0)
    tokens = [line.strip() for line in vocab_file.read_text(encoding="utf-8").splitlines()]
    vocab = [
        (t, floor if t not in scores or (len(t) > 1 and _DIGIT_COMMA.match(t)) else scores[t])
        for t in tokens
    ]
    ids = {t: i for i, t in enumerate(tokens)}
    missing = [t for t in SPECIAL_TOKENS.values() if t not in ids]
    if missing:
        raise ModelLoadError(
            f"cannot load model '{directory}': its {VOCAB_FILE} lacks {', '.join(missing)}"
        )
    tok = Tokenizer(Unigram(vocab, unk_id=ids["[UNK]"], byte_fallback=False))
    steps = [  # KoBertTokenizer.preprocess_text, then SentencePiece's own rules
        normalizers.Strip(), normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Replace("``", '"'), normalizers.Replace("''", '"'),
        normalizers.NFKD(), normalizers.StripAccents(),
        # SentencePiece's nmt_nfkc rules compose the decomposed Hangul again; tokenizers'
        # copy of its character map does not, so compose here first.
        normalizers.NFKC(),
    ]
    charsmap = proto.normalizer_spec.precompiled_charsmap
    if charsmap:
        steps.append(normalizers.Precompiled(charsmap))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    cls, sep = ids["[CLS]"], ids["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return tok


def _max_length(directory: Path) -> int:
    try:
        config = json.loads((directory / "sentence_bert_config.json").read_text(encoding="utf-8"))
        return int(config.get("max_seq_length") or 512)
    except (OSError, ValueError, TypeError):
        return 512


def _save_tokenizer(tokenizer: Any, folder: Path, max_length: int) -> None:
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_max_length=max_length,
                                      **SPECIAL_TOKENS)
    wrapped.save_pretrained(str(folder))
