"""``--precision auto`` on a CPU: measure the candidate precisions once per model and machine.

The fastest precision depends on the CPU: bf16 autocast ran 3x plain fp32 on an AVX512-BF16 CPU
and 3x *slower* on one with AVX2 only; int8 depends on the int8 instructions. So ``auto`` does
not guess. The first time a model is used with ``auto`` on a machine, :func:`calibrate`:

1. encodes a fixed batch (:func:`kosearch.encoding.int8.guard_sample`, 20 Korean texts from a
   few words to ~300 tokens) in fp32 and in each candidate (``int8``, and ``bf16`` where the
   CPU has native bfloat16), after one warm-up call each, :data:`ROUNDS` interleaved rounds;
2. refuses a candidate whose vectors fail the quality guard (any vector below cosine
   :data:`~kosearch.encoding.int8.GUARD_COSINE` to fp32, or their mean below
   :data:`~kosearch.encoding.int8.GUARD_MEAN_COSINE`) or that cannot run;
3. picks the fastest remaining one if it beats fp32 by :data:`MIN_GAIN` (else fp32, so ``auto``
   is never slower than fp32 as measured);
4. caches the figures and the choice in ``<cache>/precision/<key>.json``, keyed by the model's
   fingerprint and token limit, the batch size and threads, the CPU's model and flags, the
   torch and onnxruntime versions and the int8 model's recipe and export format: the next run
   with the same key reads it (no measuring).
   Processes that share the cache take turns (a lock file beside it), so the encoding actors
   of a Ray build that start together on one machine measure once, not side by side.

It takes about 30 s for me5-small-ko on 2 AVX2 cores (plus, once per model, its int8
quantization, about 40 s); ``KOSEARCH_CALIBRATE=0`` turns
it off (``auto`` then picks without measuring:
:func:`kosearch.encoding.precision.resolve_precision`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kosearch.encoding import int8
from kosearch.encoding.cpu import cpu_info
from kosearch.encoding.int8 import guard_failure, guard_sample, reference_vectors
from kosearch.encoding.onnx_export import agreement
from kosearch.encoding.onnx_runtime import EXPORT_VERSION, cache_home
from kosearch.encoding.precision import cpu_supports_bf16
from kosearch.errors import ConfigError, KosearchError

if TYPE_CHECKING:
    import numpy as np

    from kosearch.encoding.encoder import SentenceTransformerEncoder

log = logging.getLogger(__name__)

VERSION = 3
"""Bumped when the procedure changes, so older cached choices are measured again."""
ROUNDS = 2
MIN_GAIN = 1.05
"""How much faster than fp32 (passages/s) a candidate must be to be chosen."""


@dataclass(frozen=True)
class Calibration:
    """What ``auto`` measured for one model on one machine, and what it chose.

    Attributes:
        choice: the precision used (``fp32``, ``bf16`` or ``int8``).
        rates: passages/s on the sample, per precision measured.
        cosines: each candidate's least cosine to fp32 on the sample.
        mean_cosines: each candidate's mean cosine to fp32 on the sample.
        refused: why a candidate was left out (the guard, or an error), per precision.
        key: what the result is cached by.
        measured: when it was measured (UTC, ISO 8601).
        cached: whether this run read it from the cache.
    """

    choice: str
    rates: dict[str, float]
    cosines: dict[str, float] = field(default_factory=dict)
    mean_cosines: dict[str, float] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    key: dict[str, Any] = field(default_factory=dict)
    measured: str = ""
    cached: bool = False

    def summary(self) -> dict[str, Any]:
        """The manifest's record (``model.calibration``): all but ``cached``."""
        record = asdict(self)
        del record["cached"]
        return record

    def describe(self) -> str:
        """One line, e.g. ``auto chose int8: fp32 4.1/s, int8 5.0/s (AMD EPYC, avx2)``."""
        return describe(self.summary())


def describe(record: Mapping[str, Any]) -> str:
    """One line for a manifest's ``model.calibration`` record (a Ray build's workers on several
    kinds of CPU: ``{"nodes": [...]}``, one part per kind)."""
    if "nodes" in record:
        return " | ".join(describe(node) for node in record["nodes"])
    rates = ", ".join(f"{name} {rate:.1f}/s" for name, rate in record.get("rates", {}).items())
    refused = "; ".join(f"{name} refused" for name in record.get("refused", {}))
    key = record.get("key", {})
    where = f"{key.get('cpu', '?')}, {' '.join(key.get('flags', [])) or 'no listed flags'}"
    return (f"auto chose {record.get('choice')}: {rates}{'; ' + refused if refused else ''} "
            f"({where}, {record.get('measured', '')[:10]})")


def measuring_enabled() -> bool:
    """Whether ``auto`` measures on a CPU (``KOSEARCH_CALIBRATE``, default on).

    Raises:
        ConfigError: the variable is set to something other than 0 or 1.
    """
    value = os.environ.get("KOSEARCH_CALIBRATE", "1").strip()
    if value not in ("0", "1"):
        raise ConfigError(f"KOSEARCH_CALIBRATE must be 0 or 1, got {value!r}")
    return value == "1"


def measures(requested: str | None, device: str, enabled: bool | None = None) -> bool:
    """Whether a model loaded with precision ``requested`` on ``device`` measures: ``auto`` on
    the CPU, where ``enabled`` (None: :func:`measuring_enabled`) allows it."""
    if (requested or "").strip().lower() != "auto" or device != "cpu":
        return False
    return measuring_enabled() if enabled is None else enabled


def candidates() -> list[str]:
    """The precisions ``auto`` measures on this CPU besides fp32."""
    return ["int8", "bf16"] if cpu_supports_bf16() else ["int8"]


def choose(rates: Mapping[str, float], cosines: Mapping[str, float],
           refused: Mapping[str, str], *, min_gain: float = MIN_GAIN) -> str:
    """The fastest precision that passed the guard, if it beats fp32 by ``min_gain``; else fp32.

    Example:
        >>> choose({"fp32": 4.0, "int8": 5.0, "bf16": 6.0}, {"int8": 0.995, "bf16": 0.98}, {})
        'int8'
    """
    fp32 = rates["fp32"]
    passed = [(rate, name) for name, rate in rates.items()
              if name != "fp32" and name not in refused
              and cosines.get(name, 0.0) >= int8.GUARD_COSINE]
    if not passed:
        return "fp32"
    rate, name = max(passed, key=lambda pair: (pair[0], pair[1]))
    return name if rate >= fp32 * min_gain else "fp32"


def cache_key(encoder: SentenceTransformerEncoder, threads: int) -> dict[str, Any]:
    """What a measurement depends on: the model, the batch, the CPU, the libraries."""
    cpu = cpu_info()
    return {
        "version": VERSION, "fingerprint": encoder.fingerprint,
        "max_tokens": encoder.max_tokens, "batch_size": encoder.batch_size, "threads": threads,
        "cpu": cpu["model"], "flags": list(cpu["flags"]),
        "torch": _version("torch"), "onnxruntime": _version("onnxruntime"),
        "int8": f"recipe {int8.RECIPE}, export v{EXPORT_VERSION}",  # a new int8 model: measure
    }


def cache_path(key: Mapping[str, Any], root: Path | None = None) -> Path:
    """Where the calibration for ``key`` is cached."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return (root or cache_home()) / "precision" / f"{digest}.json"


def calibrate(encoder: SentenceTransformerEncoder, *, root: Path | None = None,
              measure: Callable[..., Calibration] | None = None) -> Calibration:
    """The precision ``auto`` uses for ``encoder`` on this machine: cached, or measured now.

    Args:
        encoder: an fp32 CPU encoder (its weights unmodified).
        root: the cache root (default :func:`kosearch.encoding.onnx_runtime.cache_home`).
        measure: replaces :func:`measure` (tests).
    """
    import torch

    key = cache_key(encoder, torch.get_num_threads())
    path = cache_path(key, root)
    with _one_at_a_time(path):
        cached = _read(path, key)
        if cached is not None:
            log.info("precision auto: %s (cached in %s)", cached.describe(), path)
            return cached
        log.info("precision auto: measuring %s on this CPU once (cached in %s)",
                 encoder.name, path)
        result = (measure or measure_precisions)(encoder, key)
        _write(path, result)
    log.info("precision auto: %s", result.describe())
    return result


@contextlib.contextmanager
def _one_at_a_time(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` while the block runs, where the platform and
    the cache allow one (without it, two processes may both measure: slower, not wrong)."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        fcntl = None  # type: ignore[assignment]
    handle = None
    if fcntl is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path.with_suffix(".lock"), "a")  # noqa: SIM115 - closed below
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as e:
            log.debug("measuring without a lock (%s)", e)
    try:
        yield
    finally:
        if handle is not None:
            handle.close()  # releases the lock


def measure_precisions(encoder: SentenceTransformerEncoder, key: dict[str, Any]) -> Calibration:
    """Time fp32 and each of :func:`candidates` on the guard's sample, check the guard, choose."""
    texts = sorted(guard_sample(), key=len, reverse=True)  # as a build batches: longest first
    runners: dict[str, Callable[[list[str]], np.ndarray]] = {"fp32": _fp32(encoder)}
    refused: dict[str, str] = {}
    for name in candidates():
        try:
            runners[name] = _runner(encoder, name, int(key["threads"]))
            runners[name](texts[-2:])  # warm-up (and, for int8, its quantization once)
        except KosearchError as e:
            refused[name] = str(e).splitlines()[0]
            runners.pop(name, None)
    runners["fp32"](texts[-2:])
    best: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(ROUNDS):
        for name, run in runners.items():
            start = time.perf_counter()
            vectors[name] = run(texts)
            elapsed = time.perf_counter() - start
            best[name] = min(best.get(name, elapsed), elapsed)
    rates = {name: round(len(texts) / seconds, 3) for name, seconds in best.items()}
    cosines: dict[str, float] = {}
    means: dict[str, float] = {}
    for name, got in vectors.items():
        if name != "fp32":
            least, mean = agreement(got, vectors["fp32"])
            cosines[name], means[name] = round(least, 6), round(mean, 6)
            reason = guard_failure(least, mean)
            if reason is not None:
                refused[name] = reason
    return Calibration(choice=choose(rates, cosines, refused), rates=rates, cosines=cosines,
                       mean_cosines=means, refused=refused, key=key,
                       measured=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _fp32(encoder: SentenceTransformerEncoder) -> Callable[[list[str]], np.ndarray]:
    return lambda texts: reference_vectors(encoder, texts)


def _runner(encoder: SentenceTransformerEncoder, name: str,
            threads: int) -> Callable[[list[str]], np.ndarray]:
    if name == "int8":
        return int8.int8_encoder(encoder, threads).encode_passages
    import torch

    def bf16(texts: list[str]) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return reference_vectors(encoder, texts)

    return bf16


def _read(path: Path, key: Mapping[str, Any]) -> Calibration | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("key") != dict(key):
            return None
        return Calibration(**{**record, "cached": True})
    except (OSError, ValueError, TypeError):
        return None


def _write(path: Path, result: Calibration) -> None:
    """Write atomically; a cache that cannot be written only costs the next run a measurement."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(result.summary(), handle, indent=2)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not cache the precision calibration in %s (%s)", path, e)
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return ""
