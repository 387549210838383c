"""Turning text into vectors: the ``Encoder`` protocol and its sentence-transformers implementation.

This is the only module that imports ``sentence_transformers`` (and torch), and it does so
inside functions, so ``import kosearch`` stays cheap. Prompts are resolved once, at load
time, in this order: an explicit argument, the registry entry of the model id
(:mod:`kosearch.encoding.registry`), the prompts saved in the model's own config, and finally
``""``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import NDArray

from kosearch.encoding.loading import (
    apply_max_tokens,
    as_list,
    check_sizes,
    load_model,
    model_directory,
    select_device,
)
from kosearch.encoding.registry import ModelSpec, lookup
from kosearch.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

    from kosearch.encoding.calibrate import Calibration
    from kosearch.encoding.onnx_runtime import OnnxQueryEncoder
    from kosearch.encoding.workers import EncodePool

logger = logging.getLogger(__name__)

_PASSAGE_PROMPT_KEYS = ("passage", "document", "corpus")
_HUB_PROBE_TIMEOUT_S = 3.0
_COUNT_CHUNK = 1024
# Architecture fields that decide what a checkpoint computes; paths, versions and dtypes are
# left out so that the same weights give the same fingerprint wherever they were loaded from.
_ARCH_KEYS = (
    "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
    "vocab_size", "max_position_embeddings", "type_vocab_size", "hidden_act",
    "position_embedding_type", "num_key_value_heads", "head_dim", "rope_theta",
)
_DEVICE_RE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_FIX = "pass --model /path/to/model (or set KOSEARCH_MODEL)"


def check_model_source(model: str) -> None:
    """Fail, as loading it would, when ``model`` names a path that is no model directory;
    without loading anything (a hub id is checked only when it loads)."""
    model_directory(model, fix=_FIX)


class Encoder(Protocol):
    """What the index needs from a text encoder.

    Attributes:
        name: The model id or path the encoder was created with.
        dim: The embedding dimension.
        max_tokens: The longest input, in tokens, before truncation.
        query_prompt: Text prepended to every query.
        passage_prompt: Text prepended to every passage.
        fingerprint: A short hex digest identifying the model's weights and tokenizer.
    """

    name: str
    dim: int
    max_tokens: int
    query_prompt: str
    passage_prompt: str
    fingerprint: str

    def encode_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Encode queries to a ``(len(texts), dim)`` float32 array."""
        ...

    def encode_passages(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> NDArray[np.float32]:
        """Encode passages to a ``(len(texts), dim)`` float32 array."""
        ...


class SentenceTransformerEncoder:
    """An :class:`Encoder` backed by a sentence-transformers model.

    Args:
        model: A model id (from the registry or the Hugging Face hub cache) or a local model
            directory.
        device: The torch device; ``None`` picks one with :func:`select_device`.
        batch_size: Passages per forward pass.
        query_prompt: Overrides the query prompt (``""`` disables it).
        passage_prompt: Overrides the passage prompt (``""`` disables it).
        max_tokens: Lowers (or raises, up to what the model supports) the truncation length.
        precision: ``fp32`` (default), ``bf16``, ``fp16`` (CUDA), ``int8`` (CPU, onnxruntime;
            refused for a model that fails the quality guard) or ``auto`` (on a CPU: measured
            once per model and machine, see :mod:`kosearch.encoding.calibrate`); the
            fingerprint is always taken from the unmodified weights, so every precision of a
            model matches the same index.
        processes: Worker processes for large :meth:`encode_passages` calls; ``None`` decides
            per call (:func:`kosearch.encoding.workers.auto_processes`), ``1`` never starts any.
        measure: Whether ``auto`` measures on a CPU; ``None`` (default): unless
            ``KOSEARCH_CALIBRATE=0``. A Ray build passes its driver's decision to the workers.

    Raises:
        ModelLoadError: The model cannot be found or loaded.
        ConfigError: ``batch_size``, ``max_tokens`` or ``device`` is invalid.

    Example:
        >>> enc = SentenceTransformerEncoder("dragonkue/multilingual-e5-small-ko")
        >>> enc.encode_queries(["전세 계약 갱신"]).shape
        (1, 384)
    """

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        batch_size: int = 32,
        query_prompt: str | None = None,
        passage_prompt: str | None = None,
        max_tokens: int | None = None,
        precision: str | None = None,
        processes: int | None = None,
        measure: bool | None = None,
    ) -> None:
        from kosearch.encoding.precision import apply_precision, resolve_precision

        check_sizes(batch_size, max_tokens)
        if processes is not None and processes < 1:
            raise ConfigError(f"processes must be at least 1, got {processes}")
        self.name = model
        self.batch_size = batch_size
        self.device = select_device(device)
        self.spec: ModelSpec | None = lookup(model)
        logger.info("loading model %s on %s", model, self.device)
        from sentence_transformers import SentenceTransformer

        self._model = load_model(SentenceTransformer, model, self.device, fix=_FIX)
        self.dim = _embedding_dim(self._model, model)
        self.max_tokens = apply_max_tokens(self._model, max_tokens)
        own = dict(self._model.prompts or {})
        self.query_prompt = _resolve_prompt(
            query_prompt, self.spec.query_prompt if self.spec else None, own, ("query",)
        )
        self.passage_prompt = _resolve_prompt(
            passage_prompt, self.spec.passage_prompt if self.spec else None, own,
            _PASSAGE_PROMPT_KEYS,
        )
        # Symmetric tasks (STS): the registry knows; otherwise a model that ships a query
        # prompt (the e5 convention: "query: " on both sides) uses it on both sides.
        self.sts_prompt = self.spec.sts_prompt if self.spec else own.get("query", "")
        self.fingerprint = _fingerprint(self._model, self.dim)
        self._tokenizer: Tokenizer | None = None
        # After the fingerprint: casting the weights changes what it samples.
        self.precision = resolve_precision(precision, self.device)
        #: What ``auto`` measured on this CPU (:mod:`kosearch.encoding.calibrate`), or None.
        self.calibration: Calibration | None = None
        from kosearch.encoding.calibrate import calibrate, measures

        if measures(precision, self.device, measure):
            self.calibration = calibrate(self)
            self.precision = self.calibration.choice
        self._context = apply_precision(self._model, self.precision, self.device)
        self._int8: OnnxQueryEncoder | None = None
        if self.precision == "int8":
            import torch

            from kosearch.encoding.int8 import int8_encoder

            self._int8 = int8_encoder(self, torch.get_num_threads())
        self.processes = processes
        self._pool: EncodePool | None = None

    def __repr__(self) -> str:
        return (
            f"SentenceTransformerEncoder(name={self.name!r}, dim={self.dim}, "
            f"max_tokens={self.max_tokens}, device={self.device!r}, "
            f"precision={self.precision!r})"
        )

    def close(self) -> None:
        """Stop the worker processes of multi-process encoding, if any were started."""
        if self._pool is not None:
            self._pool_finalizer()
            self._pool = None

    @property
    def model(self) -> SentenceTransformer:
        """The underlying ``SentenceTransformer`` (for advanced use)."""
        return self._model

    def encode_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Encode queries with the query prompt.

        Args:
            texts: The queries.

        Returns:
            A ``(len(texts), dim)`` float32 array, as the model outputs it (not normalized
            here; the store normalizes for cosine).
        """
        return self._encode(as_list(texts), self.query_prompt)

    def encode_symmetric(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Encode texts for a symmetric task (STS) with the same prompt on both sides.

        Args:
            texts: The sentences.

        Returns:
            A ``(len(texts), dim)`` float32 array.
        """
        return self._encode(as_list(texts), self.sts_prompt)

    def encode_passages(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> NDArray[np.float32]:
        """Encode passages with the passage prompt, longest first to waste little padding.

        Args:
            texts: The passages.
            on_batch: Called with the batch size after each batch (to drive a progress bar).

        Returns:
            A ``(len(texts), dim)`` float32 array whose row ``i`` is ``texts[i]``.
        """
        items = as_list(texts)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        if not items:
            return out
        lengths = np.asarray(self.count_tokens(items), dtype=np.int64)
        # A stable sort on the negated length: longest first, ties keep their input order.
        order = np.argsort(-np.minimum(lengths, self.max_tokens), kind="stable")
        pool = self._pool_for(len(items))
        if pool is not None:
            step = self.batch_size * 4
            slices = [order[s : s + step] for s in range(0, len(order), step)]
            texts_of = [[items[i] for i in rows] for rows in slices]
            for rows, vectors in zip(slices, pool.map(texts_of, on_batch)):
                out[rows] = vectors
            return out
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = [items[i] for i in rows]
            out[rows] = (self._int8.encode_passages(batch) if self._int8 is not None
                         else self._encode(batch, self.passage_prompt))
            if on_batch is not None:
                on_batch(len(rows))
        return out

    def _pool_for(self, n_items: int) -> EncodePool | None:
        """The worker pool for a call of ``n_items`` passages, started on first need."""
        if self.processes == 1:
            return None
        import torch

        from kosearch.encoding.workers import EncodePool, WorkerSpec, auto_processes, worker_devices

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        n = self.processes or auto_processes(self.device, n_items, gpus=gpus)
        if n <= 1:
            return None
        if self._pool is None or self._pool.size != n:
            self.close()
            threads = max(1, (os.cpu_count() or 1) // n)
            spec = WorkerSpec(
                model=self.name, device=self.device, batch_size=self.batch_size,
                query_prompt=self.query_prompt, passage_prompt=self.passage_prompt,
                max_tokens=self.max_tokens, precision=self.precision, threads=threads,
            )
            logger.info("encoding with %d worker processes (%d threads each)", n, threads)
            self._pool = EncodePool(spec, worker_devices(self.device, n, gpus), worker_encoder)
            self._pool_finalizer = weakref.finalize(self, EncodePool.close, self._pool)
        return self._pool

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """A copy of the model's fast tokenizer with truncation and padding turned off."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            source = getattr(self._model.tokenizer, "backend_tokenizer", None)
            if source is None:
                raise ModelLoadError(
                    f"model '{self.name}' has no fast (Rust) tokenizer, which kosearch needs "
                    "to count tokens; use a model with a tokenizer.json"
                )
            copy = Tokenizer.from_str(source.to_str())
            copy.no_truncation()
            copy.no_padding()
            self._tokenizer = copy
        return self._tokenizer

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Count the tokens the model would see for each passage, before truncation.

        Args:
            texts: The passages (without prompt).

        Returns:
            One count per text, including special tokens and the passage prompt.
        """
        items = as_list(texts)
        tokenizer = self.backend_tokenizer
        counts: list[int] = []
        for start in range(0, len(items), _COUNT_CHUNK):
            chunk = [self.passage_prompt + t for t in items[start : start + _COUNT_CHUNK]]
            counts.extend(len(e.ids) for e in tokenizer.encode_batch(chunk))
        return counts

    def _encode(self, texts: list[str], prompt: str) -> NDArray[np.float32]:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        with self._context():
            vectors = self._model.encode(
                texts,
                prompt=prompt,
                batch_size=self.batch_size,
                show_progress_bar=False,
                convert_to_tensor=True,
                normalize_embeddings=False,
            )
        return np.ascontiguousarray(vectors.float().cpu().numpy(), dtype=np.float32)


def worker_encoder(spec: Mapping[str, Any], device: str) -> SentenceTransformerEncoder:
    """The encoder of one worker process of an :class:`~kosearch.encoding.workers.EncodePool`.

    Args:
        spec: the fields of the parent's :class:`~kosearch.encoding.workers.WorkerSpec` but
            ``threads`` (the parent's ``device`` is ignored).
        device: this worker's device.
    """
    options = {k: v for k, v in spec.items() if k not in ("model", "device")}
    return SentenceTransformerEncoder(spec["model"], device=device, processes=1, **options)


# ---------------------------------------------------------------------------- helpers


def _resolve_prompt(
    explicit: str | None, registry: str | None, own: Mapping[str, str], keys: Sequence[str]
) -> str:
    """Explicit argument > registry entry > the model's own config > ``""``."""
    if explicit is not None:
        return explicit
    if registry is not None:
        return registry
    for key in keys:
        if own.get(key):
            return own[key]
    return ""


def _embedding_dim(model: SentenceTransformer, name: str) -> int:
    dim = model.get_embedding_dimension()
    if dim is None:
        raise ModelLoadError(f"model '{name}' does not report its embedding dimension")
    return int(dim)


def _tensor_digest(tensor: Any) -> dict[str, Any]:
    """Shape and a rounded, strided sample of one weight tensor."""
    flat = tensor.detach().reshape(-1)
    step = max(1, flat.numel() // 4096)
    sample = flat[::step].float().cpu().numpy().astype(np.float64)
    digest = hashlib.sha256(np.round(sample, 5).tobytes()).hexdigest()
    return {"shape": list(tensor.shape), "sample": digest}


def _fingerprint(model: SentenceTransformer, dim: int) -> str:
    """A 16-hex-digit digest of architecture, tokenizer, pooling and weights (not the path)."""
    hf = model.transformers_model
    config = hf.config.to_dict() if hf is not None else {}
    tokenizer = getattr(model[0], "tokenizer", None)
    pooling = [
        str(getattr(m, "pooling_mode", "")) + f"/prompt={getattr(m, 'include_prompt', True)}"
        for m in model
        if type(m).__name__ == "Pooling"
    ]
    # The pooler head is loaded or not depending on library versions, and mean pooling ignores it.
    params = [p for name, p in model.named_parameters() if "pooler" not in name]
    picked = [params[0], params[len(params) // 2], params[-1]] if params else []
    identity = {
        "modules": [type(m).__name__ for m in model],
        "arch": {k: config[k] for k in _ARCH_KEYS if k in config},
        "vocab": len(tokenizer) if tokenizer is not None else None,
        "dim": dim,
        "pooling": pooling,
        "weights": [_tensor_digest(p) for p in picked],
    }
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
