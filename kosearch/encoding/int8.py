"""The int8 passage path: onnxruntime's dynamic int8 quantization of the exported model.

``--precision int8`` encodes passages with the model's ONNX export
(:mod:`kosearch.encoding.onnx_export`) whose matrix products onnxruntime quantized: int8
weights with one scale per output channel, activations quantized per batch. The embedding
table, everything else, and the feed-forward blocks' output products (whose inputs, after
GELU, carry the outliers that per-batch activation scales handle worst) stay in fp32. Measured
on me5-small-ko (README, "Speed"): nDCG@10 0.8820 against fp32's 0.8854 on KorQuAD dev, where
quantizing those products too lost 0.008 and PyTorch's dynamic quantization 0.042.

The quantized model is made once per model and token limit, beside the fp32 export in the
per-user cache (``<cache>/onnx/<fingerprint>-<max tokens>-int8-v3``), and checked against torch
fp32 on a sample before it is published (the quality guard: every vector at cosine >=
:data:`GUARD_COSINE`, and their mean >= :data:`GUARD_MEAN_COSINE`). A model that fails the
guard is refused with a :class:`ConfigError`; the verdict is stored with the export, so the
check runs once.

Queries stay fp32 (torch, or the fp32 export), like every precision's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kosearch.encoding.onnx_runtime import (
    DATA_FILE,
    META_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    OnnxCacheError,
    OnnxQueryEncoder,
    export_dir,
    read_export,
)
from kosearch.errors import ConfigError, KosearchError, MissingDependencyError

if TYPE_CHECKING:
    from kosearch.encoding.encoder import SentenceTransformerEncoder

log = logging.getLogger(__name__)

GUARD_COSINE = 0.99
"""The least cosine to fp32 any vector of the guard's sample may have."""
GUARD_MEAN_COSINE = 0.996
"""The least mean cosine to fp32 over the guard's sample. Set between two measurements on
me5-small-ko and KorQuAD dev: every product in int8 reached mean 0.9944 here (each vector above
0.99) and lost 0.0083 nDCG@10, more than the 0.005 the guard allows; with the feed-forward
output products in fp32 (:data:`RECIPE` 2), mean 0.9973 and a loss of 0.0017 (0.0034 from the
eager-attention export of :mod:`kosearch.encoding.onnx_export`, at the same mean cosine)."""
VARIANT = "int8"
RECIPE = 2
"""What the quantized model is: 2 keeps the feed-forward output products in fp32. A cached
model of another recipe is made again."""
FP32_PRODUCTS = ("/output/dense/MatMul",)
"""Name endings of the products kept in fp32 (the feed-forward output of BERT-family graphs,
as torch exports them; the attention output, ``.../attention/output/dense``, is quantized)."""


class GuardError(ConfigError):
    """A precision gives vectors too far from fp32 for a model: it is refused for that model."""


def guard_sample() -> list[str]:
    """The fixed Korean texts the guard and the calibration encode (short to ~300 tokens)."""
    path = Path(__file__).with_name("calibration_ko.txt")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def guard_failure(least: float, mean: float) -> str | None:
    """Why vectors at these cosines to fp32 fail the quality guard; ``None`` if they pass."""
    if least < GUARD_COSINE:
        return (f"a vector of the quality guard's sample is at cosine {least:.4f} to fp32 "
                f"(the least allowed is {GUARD_COSINE})")
    if mean < GUARD_MEAN_COSINE:
        return (f"the quality guard's sample is at mean cosine {mean:.4f} to fp32 (the least "
                f"allowed is {GUARD_MEAN_COSINE}, which keeps nDCG@10 within 0.005 of fp32)")
    return None


def check_guard(name: str, precision: str, least: float, mean: float) -> None:
    """Refuse ``precision`` for model ``name`` when its vectors fail the guard.

    Raises:
        GuardError: naming the model, the precision and the measured cosine.
    """
    reason = guard_failure(least, mean)
    if reason is not None:
        raise GuardError(f"precision {precision} is refused for model {name}: {reason}; "
                         "use --precision fp32 or auto")


def int8_encoder(encoder: SentenceTransformerEncoder, threads: int) -> OnnxQueryEncoder:
    """The int8 passage session of ``encoder``'s model, quantizing (and checking) it first
    when the cache has none.

    Raises:
        MissingDependencyError: onnxruntime or onnx is not installed.
        GuardError: the model fails the quality guard in int8.
        KosearchError: the model cannot be exported to ONNX.
    """
    directory = export_dir(encoder.fingerprint, encoder.max_tokens, variant=VARIANT)
    try:
        meta = read_export(directory)
        if meta.get("recipe") != RECIPE or "mean_cosine" not in meta.get("guard", {}):
            raise OnnxCacheError(f"the int8 model at {directory} is of an older recipe")
    except OnnxCacheError as e:
        if directory.exists():
            log.warning("rebuilding the int8 model (%s)", e)
        meta = read_export(_quantize(encoder, directory))
    guard = meta["guard"]
    check_guard(encoder.name, VARIANT, float(guard["min_cosine"]), float(guard["mean_cosine"]))
    return _session(encoder, directory, threads)


def _session(encoder: SentenceTransformerEncoder, directory: Path,
             threads: int) -> OnnxQueryEncoder:
    return OnnxQueryEncoder(directory, name=encoder.name, query_prompt=encoder.query_prompt,
                            passage_prompt=encoder.passage_prompt, threads=threads,
                            batch_size=encoder.batch_size)


def _quantize(encoder: SentenceTransformerEncoder, target: Path) -> Path:
    """Quantize the fp32 export into ``target``: written to a temporary directory, checked
    against torch fp32 on :func:`guard_sample`, then renamed into place."""
    from kosearch.encoding.onnx_export import ensure_export, remove_older_exports

    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        raise MissingDependencyError(
            "precision int8 needs onnxruntime: pip install onnxruntime onnx"
        ) from e
    source = ensure_export(encoder)
    log.info("quantizing %s to int8 once (cached in %s)", encoder.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        staged = tmp / "staged.onnx"
        with _quiet_root_logger():  # the quantizer logs each tensor (and advice) on the root logger
            quantize_dynamic(
                str(source / MODEL_FILE), str(staged), per_channel=True,
                weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                nodes_to_exclude=_fp32_products(source / MODEL_FILE),
                use_external_data_format=True, extra_options={"MatMulConstBOnly": True},
            )
        _resave(staged, tmp / MODEL_FILE)
        for name in os.listdir(tmp):
            if name not in (MODEL_FILE, DATA_FILE):
                (tmp / name).unlink()
        shutil.copyfile(source / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
        meta = {**read_export(source), "variant": VARIANT, "recipe": RECIPE,
                "files": {n: (tmp / n).stat().st_size
                          for n in (MODEL_FILE, DATA_FILE, TOKENIZER_FILE)}}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        least, mean = _guard_cosines(encoder, tmp)
        meta["guard"] = {"min_cosine": least, "mean_cosine": mean, "threshold": GUARD_COSINE,
                         "mean_threshold": GUARD_MEAN_COSINE, "sample": len(guard_sample())}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if target.exists():  # a broken cache, or another process just published one
            shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except KosearchError:
        raise
    except Exception as e:  # noqa: BLE001 - onnx/onnxruntime raise many types
        raise KosearchError(f"could not quantize {encoder.name} to int8 ({e})") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    remove_older_exports(target)
    return target


def _fp32_products(model: Path) -> list[str]:
    """The names of the products :data:`FP32_PRODUCTS` keeps in fp32 in the graph at ``model``."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type == "MatMul"
            and node.name.endswith(FP32_PRODUCTS) and "/attention/" not in node.name]


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Drop records up to WARNING while the block runs (then restore the previous setting)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _resave(staged: Path, path: Path) -> None:
    """Re-save a quantized model with its weights in :data:`DATA_FILE` beside it."""
    import onnx

    model = onnx.load(str(staged))
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=DATA_FILE, size_threshold=1024)


def _guard_cosines(encoder: SentenceTransformerEncoder, directory: Path) -> tuple[float, float]:
    """The least and mean cosine between the int8 model's passage vectors and torch fp32's."""
    from kosearch.encoding.onnx_export import agreement

    sample = guard_sample()
    got = _session(encoder, directory, threads=1).encode_passages(sample)
    want = reference_vectors(encoder, sample)
    return agreement(got, want)


def reference_vectors(encoder: SentenceTransformerEncoder, texts: list[str]) -> Any:
    """Torch fp32 passage vectors of ``texts`` (the encoder's weights are never modified)."""
    return encoder.model.encode(
        texts, prompt=encoder.passage_prompt, batch_size=encoder.batch_size,
        convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False,
    ).astype(np.float32)
