"""Numeric precision of the passage encoder: choosing one, and applying it to a loaded model.

``fp32`` is the reference. ``bf16`` runs the model under ``torch.autocast`` (weights stay fp32,
matrix products run in bfloat16), which is what made indexing 3x faster on an AVX512-BF16 CPU
with no measurable loss (README, "Speed"). ``fp16`` casts the weights to half precision, for
CUDA. ``int8`` is PyTorch dynamic quantization of the linear layers (CPU only); it is shipped
for completeness but lost quality and gained little on the measured machine, so ``auto`` never
picks it. ``auto`` picks fp16 on CUDA, bf16 on a CPU with native bfloat16 instructions, and
fp32 otherwise.

Queries always run in fp32 (they are cheap); the quality guard in the README measures the mix
(passages in bf16, queries in fp32) against fp32 on both sides.

Imports no ML library at module level.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import lru_cache
from pathlib import Path
from typing import Any

from kosearch.errors import ConfigError
from kosearch.types import PRECISIONS

log = logging.getLogger(__name__)

# CPU flags (Linux /proc/cpuinfo) that mean bfloat16 matrix products run natively.
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX512/AMX, Arm "bf16"


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bfloat16 instructions (AVX512-BF16, AMX or Arm BF16).

    Without them torch emulates bfloat16, which is slower than fp32.
    """
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.system() == "Darwin" and platform.machine() == "arm64"  # M2 and later
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features") and _BF16_FLAGS & set(value.split()):
            return True
    return False


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
        raise ConfigError("precision int8 (dynamic quantization) runs on the CPU only; "
                          "use --device cpu or another precision")
    if choice == "bf16" and device == "cpu" and not cpu_supports_bf16():
        log.warning("this CPU has no native bfloat16 instructions: bf16 will be emulated and "
                    "probably slower than fp32")
    return choice


def apply_precision(
    model: Any, precision: str, device: str
) -> Callable[[], AbstractContextManager[Any]]:
    """Prepare a loaded sentence-transformers model for ``precision``.

    Casts or quantizes the weights in place where the precision needs it, and returns a
    factory of the context to run each forward pass in (autocast for bf16).

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
    elif precision == "int8":
        with warnings.catch_warnings():
            # torch.ao deprecation notices (the API still works in this torch).
            warnings.simplefilter("ignore")
            first = model[0]
            quantized = torch.ao.quantization.quantize_dynamic(
                first, {torch.nn.Linear}, dtype=torch.qint8
            )
        model._modules[next(iter(model._modules))] = quantized
    return contextlib.nullcontext
