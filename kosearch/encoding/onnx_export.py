"""Exporting a model's query path to ONNX, and choosing between that export and torch for queries.

The export is run by :mod:`kosearch.encoding.onnx_runtime`; :func:`load_query_encoder` opens it,
makes it first when it is missing, or falls back to torch.

Needs torch (the model is loaded anyway when this runs) and the ``onnx`` package, which
``torch.onnx.export`` uses. The export is checked before it is published: onnxruntime must give
the same vectors as torch (cosine >= :data:`MIN_COSINE`) on a padded batch of sample texts.

When the export happens: ``kosearch index`` makes it right after building (torch and the model
are already loaded, so it costs seconds, against minutes of encoding), so that the first query
is already fast; :func:`ensure_export` makes it on the first query otherwise (an index built
through the Python API or on another machine, a cleared cache), paying torch once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kosearch._version import __version__
from kosearch.encoding import onnx_runtime
from kosearch.encoding.onnx_runtime import (
    DATA_FILE,
    EXPORT_VERSION,
    META_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    OnnxCacheError,
    OnnxQueryEncoder,
    export_dir,
    read_export,
)
from kosearch.errors import ConfigError, KosearchError, MissingDependencyError, ModelLoadError
from kosearch.types import QUERY_BACKENDS

if TYPE_CHECKING:
    from kosearch.encoding.encoder import SentenceTransformerEncoder

log = logging.getLogger(__name__)

MIN_COSINE = 0.9999
OPSET = 17
_SAMPLES = [
    "전세 계약 갱신 요구권은 언제 쓸 수 있나요?",
    "한글은 누가 만들었나?",
    "서울의 날씨는 오늘 맑고, 내일은 흐리며 주말에는 비가 올 것으로 예상된다. "
    "외출할 때 우산을 챙기자.",
]


class UnsupportedModelError(ModelLoadError):
    """The model has modules the ONNX query path does not reproduce (queries use torch)."""


def ensure_export(encoder: SentenceTransformerEncoder, root: Path | None = None) -> Path:
    """The model's export directory, exporting it first when it is missing or broken.

    Args:
        encoder: the loaded model (any precision; an fp32 copy is loaded if its weights were
            cast or quantized).
        root: the cache root (default :func:`kosearch.encoding.onnx_runtime.cache_root`).

    Returns:
        A verified export directory.

    Raises:
        MissingDependencyError: ``onnx`` or ``onnxruntime`` is not installed.
        UnsupportedModelError: the model's pipeline cannot be exported.
    """
    target = export_dir(encoder.fingerprint, encoder.max_tokens, root)
    try:
        read_export(target)
        return target
    except OnnxCacheError as e:
        if target.exists():
            log.warning("rebuilding the ONNX query model (%s)", e)
    return export(encoder, root)


def export(encoder: SentenceTransformerEncoder, root: Path | None = None) -> Path:
    """Export ``encoder``'s model to ONNX, verify it, and publish it atomically."""
    for module in ("onnx", "onnxruntime"):
        if not _importable(module):
            raise MissingDependencyError(
                f"exporting the query model needs the '{module}' package: "
                "pip install onnxruntime onnx"
            )
    source = _fp32_cpu(encoder)
    layout = _layout(source)
    target = export_dir(encoder.fingerprint, encoder.max_tokens, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write(source, layout, tmp)
        _verify(source, tmp)
        if target.exists():  # a broken cache, or another process just published one
            try:
                read_export(target)
                return target
            except OnnxCacheError:
                shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported the query model to %s", target)
    remove_older_exports(target)
    return target


def remove_older_exports(target: Path) -> None:
    """Delete the exports of the same model (and variant) in older formats (``...-v1``, 250 MB
    each)."""
    stem = target.name.rsplit("-v", 1)[0]
    for version in range(1, EXPORT_VERSION):
        old = target.with_name(f"{stem}-v{version}")
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
            log.info("removed the older ONNX export %s", old)


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _fp32_cpu(encoder: SentenceTransformerEncoder) -> SentenceTransformerEncoder:
    """The encoder itself when its weights are plain fp32 on the CPU, else a fresh fp32 copy."""
    if encoder.precision in ("fp32", "bf16", "int8") and encoder.device == "cpu":
        return encoder  # bf16 is autocast only and int8 runs in onnxruntime: weights untouched
    return type(encoder)(  # the same class: this module does not import the encoder's
        encoder.name, device="cpu", query_prompt=encoder.query_prompt,
        passage_prompt=encoder.passage_prompt, max_tokens=encoder.max_tokens, precision="fp32",
    )


def _layout(encoder: SentenceTransformerEncoder) -> dict[str, Any]:
    """Transformer, then mean or CLS pooling over all tokens, then optionally Normalize."""
    names = [type(m).__name__ for m in encoder.model]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise UnsupportedModelError(f"no ONNX query path for a model made of {names}")
    pooling = encoder.model[1]
    mode = str(getattr(pooling, "pooling_mode", ""))
    if mode not in ("mean", "cls") or not getattr(pooling, "include_prompt", True):
        raise UnsupportedModelError(f"no ONNX query path for pooling {mode!r} without prompt")
    return {"pooling": mode, "normalize": len(names) == 3,
            "do_lower_case": bool(getattr(encoder.model[0], "do_lower_case", False))}


def _write(encoder: SentenceTransformerEncoder, layout: dict[str, Any], directory: Path) -> None:
    import torch

    tokenizer = _tokenizer(encoder)
    tokenizer.save(str(directory / TOKENIZER_FILE))
    hf = encoder.model[0].auto_model
    graph = _QueryGraph(hf, layout["pooling"], layout["normalize"]).eval()
    batch = tokenizer.encode_batch([encoder.query_prompt + t for t in _SAMPLES[:2]])
    ids = torch.tensor([e.ids for e in batch], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in batch], dtype=torch.int64)
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "sentence_embedding": {0: "batch"}}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), \
            eager_attention(hf):
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow
        torch.onnx.export(
            graph, (ids, mask), str(directory / MODEL_FILE),
            input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )
    _externalize(directory / MODEL_FILE)
    files = {name: (directory / name).stat().st_size
             for name in (MODEL_FILE, DATA_FILE, TOKENIZER_FILE)}
    meta = {
        "version": EXPORT_VERSION, "fingerprint": encoder.fingerprint, "dim": encoder.dim,
        "max_tokens": encoder.max_tokens, "model": encoder.name, **layout, "opset": OPSET,
        "files": files, "kosearch_version": __version__, "torch": torch.__version__,
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


@contextlib.contextmanager
def eager_attention(hf: Any) -> Iterator[None]:
    """Trace attention as transformers' plain ("eager") code, then restore the model's own.

    transformers runs BERT-family attention through ``scaled_dot_product_attention`` (SDPA),
    which the tracer spells out as a subgraph of scalings, masks and NaN checks that
    onnxruntime runs slowly at long inputs and that its attention fusion does not recognize.
    The eager code is two matrix products and a softmax, with the same vectors (the export is
    checked against torch). On a 2-core AVX2 CPU with me5-small-ko, passages of a median 437
    tokens: onnxruntime fp32 went from 0.80x torch to 1.05x, and the int8 model (made from
    this export) from 0.94x to 1.45x (README, "Speed"). A model that cannot switch is traced
    as it is.
    """
    switch = getattr(hf, "set_attn_implementation", None)
    before = getattr(getattr(hf, "config", None), "_attn_implementation", None)
    switched = False
    if switch is not None and before not in (None, "eager"):
        try:
            switch("eager")
            switched = True
        except (ValueError, ImportError, NotImplementedError) as e:
            log.info("exporting %s with its own attention (%s)", type(hf).__name__, e)
    try:
        yield
    finally:
        if switched:
            switch(before)


def _externalize(path: Path) -> None:
    """Move the graph's weights into :data:`DATA_FILE` beside it (onnxruntime maps it)."""
    import onnx

    model = onnx.load(str(path))
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=DATA_FILE, size_threshold=1024)


def _tokenizer(encoder: SentenceTransformerEncoder) -> Any:
    from tokenizers import Tokenizer

    hf_tokenizer = encoder.model.tokenizer
    tokenizer = Tokenizer.from_str(encoder.backend_tokenizer.to_str())
    tokenizer.enable_truncation(encoder.max_tokens)
    pad_id = hf_tokenizer.pad_token_id if hf_tokenizer.pad_token_id is not None else 0
    tokenizer.enable_padding(pad_id=pad_id, pad_token=hf_tokenizer.pad_token or "[PAD]")
    return tokenizer


def _verify(encoder: SentenceTransformerEncoder, directory: Path) -> None:
    """onnxruntime must reproduce torch's fp32 query vectors on a padded batch."""
    onnx_encoder = OnnxQueryEncoder(directory, name=encoder.name,
                                    query_prompt=encoder.query_prompt)
    got = onnx_encoder.encode_queries(_SAMPLES)
    want = encoder.model.encode(
        _SAMPLES, prompt=encoder.query_prompt, convert_to_numpy=True, normalize_embeddings=False,
    ).astype(np.float32)
    least = agreement(got, want)[0] if got.shape == want.shape else -1.0
    if least < MIN_COSINE:
        raise UnsupportedModelError(
            f"the ONNX export of {encoder.name} does not reproduce its vectors "
            f"(cosine {least:.5f} < {MIN_COSINE}); queries will use torch"
        )


def agreement(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """The least and the mean row-wise cosine between two ``(n, dim)`` arrays."""
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
    cosines = np.sum(got * want, axis=1) / np.maximum(norms, 1e-12)
    return float(np.min(cosines)), float(np.mean(cosines))


def _graph_class() -> type:
    import torch

    class QueryGraph(torch.nn.Module):
        """The transformer plus pooling (and normalization), as one traced graph."""

        def __init__(self, hf: Any, pooling: str, normalize: bool) -> None:
            super().__init__()
            self.hf, self.pooling, self.normalize = hf, pooling, normalize

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.hf(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            return pooled

    return QueryGraph


def _QueryGraph(hf: Any, pooling: str, normalize: bool) -> Any:  # noqa: N802 - class factory
    return _graph_class()(hf, pooling, normalize)


def prepare_instant_queries(encoder: Any) -> Path | None:
    """Export the query model after indexing, when possible; never fails the caller.

    Returns:
        The export directory, or ``None`` (not a sentence-transformers encoder, ``onnx`` or
        ``onnxruntime`` missing, or a model the ONNX path cannot reproduce: queries use torch).
    """
    if not hasattr(encoder, "model") or not hasattr(encoder, "precision"):
        return None
    import time

    start = time.perf_counter()
    try:
        directory = ensure_export(encoder)
    except (MissingDependencyError, UnsupportedModelError) as e:
        log.info("queries will use torch: %s", str(e).splitlines()[0])
        return None
    except Exception as e:  # noqa: BLE001 - the index is built; a failed export must not undo that
        log.warning("could not prepare instant queries, queries will use torch: %s",
                    str(e).splitlines()[0] if str(e) else type(e).__name__)
        return None
    log.info("query model ready for instant queries (%s, %.1fs)", directory,
             time.perf_counter() - start)
    return directory


# ------------------------------------------------------------------ choosing the query encoder




def load_query_encoder(info: Any, backend: str, device: str | None,
                       load_torch: Callable[[], Any]) -> Any:
    """The query encoder for an index whose manifest model is ``info``: load or export, then load.

    Args:
        info: the manifest's :class:`~kosearch.storage.manifest.ModelInfo`.
        backend: ``torch`` (always load the model with sentence-transformers), ``onnx`` or
            ``auto`` (onnxruntime on the cached export, made first if missing; torch, with a
            one-line notice, where that is not possible). ``onnx`` and ``auto`` differ only on
            a GPU device, where ``auto`` keeps torch.
        device: the requested torch device (``None`` = auto).
        load_torch: loads the sentence-transformers encoder (called at most once).

    Returns:
        An :class:`OnnxQueryEncoder` or what ``load_torch`` returned.
    """
    if backend not in QUERY_BACKENDS:
        raise ConfigError(f"unknown query backend {backend!r}; use one of {QUERY_BACKENDS}")
    if backend == "torch" or (backend == "auto" and device not in (None, "auto", "cpu")):
        return load_torch()
    if not onnx_runtime.onnxruntime_available():  # looked up on the module: tests replace it
        log.info("onnxruntime is not installed, so queries load torch (slower start); "
                 "pip install onnxruntime onnx for instant queries")
        return load_torch()
    directory = export_dir(info.fingerprint, info.max_tokens)
    try:
        return OnnxQueryEncoder(directory, name=info.name, query_prompt=info.query_prompt,
                                passage_prompt=info.passage_prompt)
    except OnnxCacheError as e:
        if directory.exists():
            log.warning("%s; rebuilding it", e)
    encoder = load_torch()
    try:
        log.info("exporting the query model to ONNX once, for instant queries from now on")
        made = ensure_export(encoder)
        return OnnxQueryEncoder(made, name=info.name, query_prompt=info.query_prompt,
                                passage_prompt=info.passage_prompt)
    except KosearchError as e:
        log.info("queries use torch: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        return encoder
