"""Instant queries: the query encoder as an ONNX model run by onnxruntime + tokenizers.

A one-shot ``kosearch query`` used to spend ~6 s importing torch and sentence-transformers to
encode a dozen tokens. The same model, exported once to ONNX
(:mod:`kosearch.encoding.onnx_export`), runs with onnxruntime, tokenizers and numpy only, and
gives the same vectors (cosine >= 0.9999, checked when the export is made and in the tests).

An export lives in a per-user cache directory named after the model's weight fingerprint and
token limit (``<cache>/onnx/<fingerprint>-<max_tokens>-v3``), so every index built with the same
model shares it and a query needs neither the model directory nor torch:

* ``model.onnx``: transformer + pooling (+ normalization) in one graph, fp32, whose weights
  are in ``model.data`` (ONNX external data), which onnxruntime memory-maps: a session opens in
  ~0.13 s and holds ~140 MB, against ~0.4 s and ~450 MB with the weights inside the graph;
* ``tokenizer.json``: the model's fast tokenizer, truncating at ``max_tokens`` and padding;
* ``export.json``: what was exported (fingerprint, dim, pooling, file sizes) and checked.

A directory is published with one ``os.replace`` of a complete, verified temporary directory; a
cache that is incomplete, truncated or unreadable is reported as :class:`OnnxCacheError` and
rebuilt by the caller. This module imports nothing from torch.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from kosearch.errors import KosearchError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

EXPORT_VERSION = 3  # 2: the weights in DATA_FILE; 3: attention traced as eager code
MODEL_FILE = "model.onnx"
DATA_FILE = "model.data"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "export.json"
FILES = frozenset({MODEL_FILE, DATA_FILE, TOKENIZER_FILE})


class OnnxCacheError(KosearchError):
    """An ONNX export directory is missing, incomplete or unreadable."""


def cache_home() -> Path:
    """kosearch's per-user cache: ``$KOSEARCH_CACHE``, else ``$XDG_CACHE_HOME/kosearch``, else
    ``~/.cache/kosearch``."""
    if os.environ.get("KOSEARCH_CACHE"):
        return Path(os.environ["KOSEARCH_CACHE"])
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(home) / "kosearch"


def cache_root() -> Path:
    """``<kosearch cache>/onnx`` (see :func:`cache_home`)."""
    return cache_home() / "onnx"


def export_dir(fingerprint: str, max_tokens: int, root: Path | None = None, *,
               variant: str = "") -> Path:
    """Where the export of a model (by weight fingerprint and token limit) lives; ``variant``
    names a derived model (``int8``: :mod:`kosearch.encoding.int8`)."""
    kind = f"-{variant}" if variant else ""
    return (root or cache_root()) / f"{fingerprint}-{max_tokens}{kind}-v{EXPORT_VERSION}"


def read_export(directory: Path) -> dict[str, Any]:
    """Read and check an export directory's metadata and file sizes.

    Raises:
        OnnxCacheError: a file is missing, has the wrong size, or the metadata is invalid.
    """
    try:
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise OnnxCacheError(f"no ONNX export at {directory}") from e
    except (OSError, ValueError) as e:
        raise OnnxCacheError(f"the ONNX export at {directory} is unreadable ({e})") from e
    if not isinstance(meta, dict) or meta.get("version") != EXPORT_VERSION:
        raise OnnxCacheError(f"the ONNX export at {directory} has an unknown format")
    for name, size in dict(meta.get("files", {})).items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != size:
            raise OnnxCacheError(f"the ONNX export at {directory} is incomplete ({name})")
    if not {MODEL_FILE, TOKENIZER_FILE} <= set(meta.get("files", {})) <= FILES:
        raise OnnxCacheError(f"the ONNX export at {directory} lists the wrong files")
    return meta


def onnxruntime_available() -> bool:
    """Whether onnxruntime can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


class OnnxQueryEncoder:
    """An :class:`~kosearch.encoding.encoder.Encoder` on an ONNX export: onnxruntime, no torch.

    Args:
        directory: an export directory (see :func:`export_dir`).
        name: the model name to report (the index's model).
        query_prompt: text prepended to every query.
        passage_prompt: text prepended to every passage.
        threads: onnxruntime intra-op threads; 1 suits single queries on a shared machine.
        batch_size: texts per forward pass.

    Raises:
        OnnxCacheError: the export is incomplete or onnxruntime cannot load it.

    Example:
        >>> enc = OnnxQueryEncoder(export_dir(fp, 512), name="me5", query_prompt="query: ",
        ...                        passage_prompt="passage: ")       # doctest: +SKIP
        >>> enc.encode_queries(["전세 계약 갱신"]).shape               # doctest: +SKIP
        (1, 384)
    """

    precision = "fp32"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        name: str,
        query_prompt: str = "",
        passage_prompt: str = "",
        threads: int = 1,
        batch_size: int = 32,
    ) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.directory = Path(directory)
        meta = read_export(self.directory)
        self.name = name
        self.dim = int(meta["dim"])
        self.max_tokens = int(meta["max_tokens"])
        self.fingerprint = str(meta["fingerprint"])
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.batch_size = batch_size
        self._lower = bool(meta.get("do_lower_case", False))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._tokenizer = Tokenizer.from_file(str(self.directory / TOKENIZER_FILE))
            self._session = onnxruntime.InferenceSession(
                str(self.directory / MODEL_FILE), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # noqa: BLE001 - corrupt protobuf/JSON surface as many types
            raise OnnxCacheError(
                f"the ONNX export at {self.directory} cannot be loaded ({e})"
            ) from e
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._plain: Tokenizer | None = None

    def __repr__(self) -> str:
        return (f"OnnxQueryEncoder(name={self.name!r}, dim={self.dim}, "
                f"directory={str(self.directory)!r})")

    def encode_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Encode queries with the query prompt to a ``(len(texts), dim)`` float32 array."""
        return self._encode(_as_list(texts), self.query_prompt)

    def encode_passages(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> NDArray[np.float32]:
        """Encode passages with the passage prompt (fp32; meant for small updates)."""
        items = _as_list(texts)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            out[start : start + len(batch)] = self._encode(batch, self.passage_prompt)
            if on_batch is not None:
                on_batch(len(batch))
        return out

    @property
    def backend_tokenizer(self) -> Tokenizer:
        """A copy of the tokenizer with truncation and padding turned off."""
        if self._plain is None:
            from tokenizers import Tokenizer

            plain = Tokenizer.from_str(self._tokenizer.to_str())
            plain.no_truncation()
            plain.no_padding()
            self._plain = plain
        return self._plain

    def _encode(self, texts: list[str], prompt: str) -> NDArray[np.float32]:
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        inputs = [prompt + t for t in texts]
        if self._lower:
            inputs = [t.lower() for t in inputs]
        parts = []
        for start in range(0, len(inputs), self.batch_size):
            encodings = self._tokenizer.encode_batch(inputs[start : start + self.batch_size])
            feed = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            }
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
            parts.append(self._session.run(None, feed)[0])
        return np.ascontiguousarray(np.vstack(parts), dtype=np.float32)


def _as_list(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    return list(texts)
