"""Encoding a large corpus with several worker processes (CPU cores or GPUs).

Each worker loads its own copy of the model (same name, prompts, token limit and precision) and
encodes slices of the length-sorted passages; results come back in order. Workers are started
with ``spawn`` (safe with torch and OpenMP) and cost one model load each, so a pool only pays
off for large corpora on machines with many cores or several GPUs: :func:`auto_processes`
decides. On the 2-core machine kosearch was measured on, one process with two threads was
faster than two single-threaded processes (README, "Speed"), so ``auto`` uses one there.

The pool never imports the encoder module: the parent passes a picklable, module-level
function that builds a worker's encoder (:func:`kosearch.encoding.encoder.worker_encoder`), which
the spawned child imports by reference. Imports no ML library at module level.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kosearch.errors import ConfigError

MIN_PASSAGES = 4096  # below this, starting workers costs more than it saves
MIN_CPUS = 8  # CPU pools only on machines with at least this many cores
THREADS_PER_WORKER = 4


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker needs to rebuild the parent's encoder."""

    model: str
    device: str
    batch_size: int
    query_prompt: str
    passage_prompt: str
    max_tokens: int
    precision: str
    threads: int


def auto_processes(device: str, n_items: int, cpus: int | None = None, gpus: int = 0) -> int:
    """How many worker processes to use for ``n_items`` passages (1 = encode in-process).

    Args:
        device: the parent's torch device.
        n_items: passages to encode in this call.
        cpus: cores available (default: ``os.cpu_count()``).
        gpus: CUDA devices available.

    Returns:
        One per GPU when there are several; one per ``THREADS_PER_WORKER`` cores on a CPU with
        at least ``MIN_CPUS`` cores; otherwise 1. Always 1 below ``MIN_PASSAGES`` passages.
    """
    if n_items < MIN_PASSAGES:
        return 1
    if device.startswith("cuda"):
        return gpus if gpus > 1 and device == "cuda" else 1
    cores = cpus if cpus is not None else (os.cpu_count() or 1)
    return cores // THREADS_PER_WORKER if cores >= MIN_CPUS else 1


def worker_devices(device: str, processes: int, gpus: int) -> list[str]:
    """The device of each worker: ``cuda:i`` round-robin on GPUs, else the parent's device."""
    if device == "cuda" and gpus > 1:
        return [f"cuda:{i % gpus}" for i in range(processes)]
    return [device] * processes


BuildEncoder = Callable[[dict[str, Any], str], Any]
"""Builds a worker's encoder from the fields of a :class:`WorkerSpec` (without ``threads``) and
the worker's device; must be a module-level function, so that it pickles by reference."""


class EncodePool:
    """A pool of worker processes, each holding a copy of the encoder.

    Args:
        spec: how to rebuild the encoder in each worker.
        devices: one device per worker.
        build: makes the encoder in each worker (see :data:`BuildEncoder`).
    """

    def __init__(self, spec: WorkerSpec, devices: Sequence[str], build: BuildEncoder) -> None:
        if not devices:
            raise ConfigError("a worker pool needs at least one process")
        context = multiprocessing.get_context("spawn")
        self.size = len(devices)
        self._queue: Any = context.Queue()
        for device in devices:
            self._queue.put(device)
        self._pool = context.Pool(
            self.size, initializer=_init_worker, initargs=(build, asdict(spec), self._queue)
        )

    def map(
        self, slices: Sequence[list[str]], on_done: Callable[[int], None] | None = None
    ) -> Iterator[NDArray[np.float32]]:
        """Encode each slice of passages in a worker; yields the arrays in order."""
        for vectors in self._pool.imap(_encode_slice, slices):
            if on_done is not None:
                on_done(len(vectors))
            yield vectors

    def close(self) -> None:
        """Stop the workers."""
        self._pool.terminate()
        self._pool.join()


# ------------------------------------------------------------------ inside the workers

_WORKER: Any = None


def _init_worker(build: BuildEncoder, spec: dict[str, Any], devices: Any) -> None:
    global _WORKER
    import torch

    torch.set_num_threads(max(1, spec.pop("threads")))
    device = devices.get()
    _WORKER = build(spec, device)


def _encode_slice(texts: list[str]) -> NDArray[np.float32]:
    return _WORKER.encode_passages(texts)
