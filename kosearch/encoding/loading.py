"""Where models come from and run: device choice, and loading from a directory, the local
cache or the Hugging Face hub, failing fast and clearly when offline.

Shared by :mod:`kosearch.encoding.encoder` and :mod:`kosearch.encoding.rerank`; imports no ML
library at module level.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kosearch.errors import ConfigError, ModelLoadError

_HUB_PROBE_TIMEOUT_S = 3.0
_DEVICE_RE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_QUIET_LOCK = threading.Lock()
_quiet_depth = 0
_restore: list[bool] = []  # whether transformers' bars were on when the first quiet block began
_REPORT_ROW = re.compile(r"^(\S+)\s*\|\s*([A-Z]+)\b", re.MULTILINE)
_REPORT_LOGGER = "transformers.modeling_utils"
_ANSI = re.compile(r"\x1b?\[[0-9;]*m")


def _only_unused_pooler(record: Any) -> bool:
    """``False`` (drop) for transformers' "LOAD REPORT" when all it reports is a missing BERT
    pooler: sentence-transformers models pool the token vectors themselves and never run it,
    and sentence-transformers 5+ saves models without the ``add_pooling_layer=False`` that
    would keep transformers from creating it. Any other report is kept."""
    message = _ANSI.sub("", record.getMessage())  # colours, on a terminal
    if "LOAD REPORT" not in message:
        return True
    rows = [(key, status) for key, status in _REPORT_ROW.findall(message) if key != "Key"]
    return not rows or not all(
        key.startswith("pooler.") and status == "MISSING" for key, status in rows
    )


def select_device(preferred: str | None = None) -> str:
    """Choose the torch device to run a model on.

    Args:
        preferred: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``; ``None`` or ``"auto"``
            picks CUDA when available, then MPS, then the CPU.

    Returns:
        The device string.

    Raises:
        ConfigError: ``preferred`` is not a device name, or that device is not available.

    Example:
        >>> select_device("cpu")
        'cpu'
    """
    import torch

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    mps = bool(torch.backends.mps.is_available())
    choice = (preferred or "auto").strip().lower()
    if choice == "auto":
        return "cuda" if cuda else ("mps" if mps else "cpu")
    if not _DEVICE_RE.match(choice):
        raise ConfigError(
            f"unknown device {preferred!r}; use one of 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        )
    index = int(choice.partition(":")[2] or 0)
    if (choice.startswith("cuda") and index >= cuda) or (choice == "mps" and not mps):
        raise ConfigError(
            f"device {preferred!r} is not available here ({cuda} CUDA device(s) found"
            f"{', no MPS' if not mps else ''}); use --device cpu"
        )
    return choice


def check_sizes(batch_size: int, max_tokens: int | None) -> None:
    """Validate the batch size and token limit every model wrapper accepts."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ConfigError(f"max tokens must be at least 1, got {max_tokens}")


def as_list(texts: Sequence[str]) -> list[str]:
    """The texts as a list; a bare string is a programmer error, not a one-item batch."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    return list(texts)


def is_offline() -> bool:
    """Whether the user asked the Hugging Face libraries to stay offline."""
    truthy = ("1", "ON", "YES", "TRUE")
    return any(os.environ.get(v, "").strip().upper() in truthy for v in _OFFLINE_VARS)


def hub_reachable(timeout: float = _HUB_PROBE_TIMEOUT_S) -> bool:
    """A quick TCP probe of the hub (or the HTTPS proxy), so a dead network fails in seconds.

    Without it, huggingface_hub retries every file with back-off: about 70 s on this kind of
    machine before it gives up.
    """
    target = (
        os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
        or os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    )
    parts = urlsplit(target if "://" in target else f"http://{target}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except Exception:  # noqa: BLE001 - any failure (DNS, refused, blocked) means "not reachable"
        return False


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0].rstrip(".") if text else type(error).__name__


def looks_like_path(model: str) -> bool:
    """A hub id is ``name`` or ``owner/name``; anything else must be a (missing) directory."""
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        return True
    return os.sep != "/" and os.sep in model


def load_model(factory: Any, model: str, device: str, *, kind: str = "model", fix: str) -> Any:
    """Load a local directory, a cached hub model, or (only when the hub answers) download it.

    Args:
        factory: ``SentenceTransformer`` or ``CrossEncoder`` (any class taking
            ``(name_or_path, device=..., local_files_only=...)``).
        model: a hub id or a local directory.
        device: the torch device.
        kind: how messages name the model ("model", "reranker model").
        fix: the clause telling the user how to give a local model instead.

    Raises:
        ModelLoadError: in one sentence, in milliseconds when offline or the hub is unreachable.
    """
    path = model_directory(model, kind=kind, fix=fix)
    if path is not None:
        return _load_directory(factory, path, model, device, kind, fix)
    snapshot = _cached_kobert(model)
    if snapshot is not None:
        return _load_directory(factory, snapshot, model, device, kind, fix)
    try:
        with quiet_loading():
            return factory(model, device=device, local_files_only=True)
    except Exception as cached_error:  # noqa: BLE001 - not in the cache (or a broken entry)
        miss: Exception = cached_error
    offline = is_offline()
    if offline or not hub_reachable():
        why = "HF_HUB_OFFLINE is set" if offline else "the model hub could not be reached"
        raise ModelLoadError(
            f"cannot load {kind} '{model}': it is not a local directory and is not in the local "
            f"cache, and {why}; download it where the hub is reachable, or {fix}"
        ) from miss
    return _attempt(factory, model, model, device, "from the model hub", kind, fix)


def model_directory(model: str, *, kind: str = "model", fix: str) -> Path | None:
    """The model directory ``model`` names, or None for a hub id; checked without loading.

    Raises:
        ModelLoadError: ``model`` is a path, but not of a model directory.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not ((path / "modules.json").is_file() or (path / "config.json").is_file()):
            raise ModelLoadError(
                f"cannot load {kind} '{model}': the directory has no modules.json or config.json, "
                f"so it is not a model directory; {fix}"
            )
        return path
    if path.exists() or looks_like_path(model):
        what = "it is a file, not a model directory" if path.exists() else "no such directory"
        raise ModelLoadError(f"cannot load {kind} '{model}': {what}")
    return None


def _load_directory(
    factory: Any, path: Path, model: str, device: str, kind: str, fix: str
) -> Any:
    """Load a model directory; a KoBERT one (see :mod:`kosearch.encoding.kobert`) through a
    view that presents its tokenizer as a fast one."""
    from kosearch.encoding.kobert import is_kobert, kobert_view

    if not is_kobert(path):
        return _attempt(factory, str(path), model, device, "from its directory", kind, fix)
    with kobert_view(path) as view:
        return _attempt(factory, str(view), model, device, "from its directory", kind, fix)


def _cached_kobert(model: str) -> Path | None:
    """The cached snapshot of hub model ``model`` if it is a KoBERT model, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "modules.json")
    except Exception:  # noqa: BLE001 - an odd id or cache: the ordinary path reports it
        return None
    if not isinstance(found, str):
        return None
    from kosearch.encoding.kobert import is_kobert

    folder = Path(found).parent
    return folder if is_kobert(folder) else None


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' "Loading weights" (and "Writing model shards") progress bars while
    kosearch loads or saves a local model, and its "LOAD REPORT" when all that report says is
    that an unused BERT pooler was not in the checkpoint (see :func:`_only_unused_pooler`).

    The settings are put back as they were when the last such block (of any thread) ends, so
    the caller's own use of transformers outside kosearch calls is left as they set it.
    """
    global _quiet_depth
    import logging

    from transformers.utils import logging as hf_logging

    with _QUIET_LOCK:
        if _quiet_depth == 0:
            _restore[:] = [hf_logging.is_progress_bar_enabled()]
            if _restore[0]:
                hf_logging.disable_progress_bar()
            logging.getLogger(_REPORT_LOGGER).addFilter(_only_unused_pooler)
        _quiet_depth += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                logging.getLogger(_REPORT_LOGGER).removeFilter(_only_unused_pooler)
                if _restore and _restore[0]:
                    hf_logging.enable_progress_bar()


def _attempt(
    factory: Any, source: str, model: str, device: str, where: str, kind: str, fix: str
) -> Any:
    """Call ``factory`` and turn any failure into a one-line :class:`ModelLoadError`."""
    local = where != "from the model hub"
    try:
        if local:  # downloads keep their progress bars
            with quiet_loading():
                return factory(source, device=device, local_files_only=True)
        return factory(source, device=device, local_files_only=local)
    except Exception as e:  # noqa: BLE001 - corrupt weights, unknown architecture, hub errors
        hint = "" if local else f"; check the id, or {fix}"
        raise ModelLoadError(
            f"cannot load {kind} '{model}' {where} ({first_line(e)}){hint}"
        ) from e


def _supported_max_tokens(model: Any) -> int | None:
    """The longest input the position embeddings allow (RoBERTa reserves two positions)."""
    hf = model.transformers_model
    config = getattr(hf, "config", None)
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        return None
    if any(kind in str(getattr(config, "model_type", "")) for kind in ("roberta", "camembert")):
        limit -= int(getattr(config, "pad_token_id", 1) or 1) + 1
    return limit


def apply_max_tokens(model: Any, requested: int | None) -> int:
    """Set ``model.max_seq_length`` to ``requested`` (capped) and return the effective value."""
    supported = _supported_max_tokens(model)
    current = model.max_seq_length
    if requested is not None:
        model.max_seq_length = min(requested, supported) if supported else requested
    elif current is None or current > 1_000_000:
        # Tokenizers without a limit report a huge sentinel; fall back to the positions.
        model.max_seq_length = supported or 512
    elif supported is not None and current > supported:
        model.max_seq_length = supported
    return int(model.max_seq_length)
