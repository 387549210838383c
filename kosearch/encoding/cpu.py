"""The CPU at hand: its model name and the instruction-set flags that decide the fast paths.

``avx512_bf16``/``amx_bf16`` (native bfloat16 matrix products), ``avx512f``, ``avx2`` (the
int8 and fp32 kernels of onnxruntime and torch), ``avx512_vnni``/``avx_vnni``/``amx_int8``
(int8 dot products). The precision's calibration is cached per CPU (model and these flags), and
every speed figure of the benchmarks names them.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path
from typing import Any

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
         "bf16")
"""The flags that matter here (``bf16``: Arm's bfloat16 instructions)."""


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """``{"model": ..., "flags": [...], "cores": n}`` from /proc/cpuinfo (or ``platform``)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key in ("flags", "Features"):
            flags |= set(value.split())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "flags": [f for f in FLAGS if f in flags], "cores": cores}


def cpu_line() -> str:
    """One line for a report, e.g. ``CPU: AMD EPYC, 2 cores, flags avx2 (no avx512f, ...)``."""
    info = cpu_info()
    flags = info["flags"]
    missing = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f not in flags]
    absent = f" (no {', '.join(missing)})" if missing else ""
    return (f"CPU: {info['model']}, {info['cores']} cores, flags "
            f"{' '.join(flags) or 'none of ' + ' '.join(FLAGS)}{absent}")
