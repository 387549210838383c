"""Numeric precision of the passage encoder: choosing one, and applying it to a loaded model.

``fp32`` is the reference. ``bf16`` runs the model under ``torch.autocast`` (weights stay fp32,
matrix products run in bfloat16), which made indexing 3x faster on an AVX512-BF16 CPU with no
measurable loss (README, "Speed"). ``fp16`` casts the weights to half precision, for CUDA.
``int8`` encodes passages with onnxruntime's dynamic int8 quantization of the model's ONNX
export (:mod:`kosearch.encoding.int8`), refused for a model whose vectors it moves too far.

``auto`` is fp16 on CUDA. On a CPU it measures (:mod:`kosearch.encoding.calibrate`): the first
time a model is used on a machine, a fixed batch is encoded in each candidate precision that
passes the quality guard, and the fastest one wins (never one slower than fp32); the choice is
cached per model, CPU and library versions. Without measuring (:func:`resolve_precision`
alone, or ``KOSEARCH_CALIBRATE=0``) it picks bf16 on a CPU with native bfloat16 instructions and
fp32 otherwise.

Queries always run in fp32 (they are cheap); the quality guard in the README measures the mix
(passages in another precision, queries in fp32) against fp32 on both sides.

Imports no ML library at module level.
"""

from __future__ import annotations

import contextlib
import logging
import platform
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from kosearch.encoding.cpu import cpu_info
from kosearch.errors import ConfigError
from kosearch.types import PRECISIONS

log = logging.getLogger(__name__)

# CPU flags (Linux /proc/cpuinfo) that mean bfloat16 matrix products run natively.
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX512/AMX, Arm "bf16"


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bfloat16 instructions (AVX512-BF16, AMX or Arm BF16).

    Without them torch emulates bfloat16, which is slower than fp32.
    """
    if platform.system() == "Darwin":
        return platform.machine() == "arm64"  # M2 and later
    return bool(_BF16_FLAGS & set(cpu_info()["flags"]))


def resolve_precision(requested: str | None, device: str) -> str:
    """Turn ``requested`` (``auto``, ``fp32``, ``bf16``, ``fp16``, ``int8``) into a concrete one.

    Args:
        requested: the user's choice; ``None`` means ``fp32``.
        device: the torch device the model runs on (``cpu``, ``cuda``, ``cuda:1``, ``mps``).

    Returns:
        ``fp32``, ``bf16``, ``fp16`` or ``int8``.

    Raises:
        ConfigError: an unknown name, or a precision the device cannot run.

    Example:
        >>> resolve_precision("fp32", "cpu")
        'fp32'
    """
    choice = (requested or "fp32").strip().lower()
    if choice not in PRECISIONS:
        valid = ", ".join(PRECISIONS)
        raise ConfigError(f"unknown precision {requested!r}; choose one of: {valid}")
    cuda = device.startswith("cuda")
    if choice == "auto":
        if cuda:
            return "fp16"
        return "bf16" if device == "cpu" and cpu_supports_bf16() else "fp32"
    if choice == "fp16" and not cuda:
        raise ConfigError("precision fp16 needs a CUDA device; on a CPU use bf16 (or auto)")
    if choice == "int8" and device != "cpu":
        raise ConfigError("precision int8 (onnxruntime dynamic quantization) runs on the CPU only; "
                          "use --device cpu or another precision")
    if choice == "bf16" and device == "cpu" and not cpu_supports_bf16():
        log.warning("this CPU has no native bfloat16 instructions: bf16 will be emulated and "
                    "probably slower than fp32")
    return choice


def apply_precision(
    model: Any, precision: str, device: str
) -> Callable[[], AbstractContextManager[Any]]:
    """Prepare a loaded sentence-transformers model for ``precision``.

    Casts the weights in place where the precision needs it (fp16), and returns a factory of
    the context to run each forward pass in (autocast for bf16). ``int8`` leaves the model
    alone: its passages run in onnxruntime (:mod:`kosearch.encoding.int8`).

    Args:
        model: a ``SentenceTransformer`` (already on ``device``).
        precision: a concrete precision from :func:`resolve_precision`.
        device: the torch device.

    Returns:
        A zero-argument callable returning a context manager.
    """
    import torch

    if precision == "bf16":
        kind = "cuda" if device.startswith("cuda") else "cpu"
        return lambda: torch.autocast(kind, dtype=torch.bfloat16)
    if precision == "fp16":
        model.half()
    return contextlib.nullcontext
