"""The scratch directory of one indexing run, checkpointed so that an interrupted run resumes.

An indexing run chunks the documents that need encoding into a passage spool
(``passages.parquet``), then encodes them window by window, appending each window's vectors to
``vectors.f32`` (raw float32 rows). After every window the vectors are flushed to disk and only
then is ``state.json`` replaced (write, fsync, rename) with the new count, so the checkpoint
never counts a vector that is not on disk. A killed or interrupted run leaves this directory
beside the index; the same command finds it, checks that the run's ``key`` (model, settings,
corpus files, base index) is unchanged, and continues from the last checkpoint. The live index
is untouched until the run is complete (see :mod:`kosearch.storage.atomic`).

Example:
    >>> work = Checkpoint.open(Path("idx.partial"), {"model": "m"}, restart=False)  # doctest: +SKIP
    >>> work.append_vectors(vectors)                                            # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kosearch.errors import ConfigError
from kosearch.storage.atomic import atomic_write_lines
from kosearch.storage.layout import CHECKPOINT_SUFFIX

STATE_FILE = "state.json"
#: Key fields whose change makes a checkpoint obsolete rather than a conflict: the index it was
#: updating has changed since (e.g. the run was killed right after swapping its result in).
OBSOLETE_IF = frozenset({"base"})
VECTORS_FILE = "vectors.f32"
FORMAT = 1

log = logging.getLogger(__name__)


def checkpoint_path(target: Path) -> Path:
    """Where the run that writes the index ``target`` keeps its scratch files."""
    return target.with_name(target.name + CHECKPOINT_SUFFIX)


class Checkpoint:
    """A run's scratch directory: passage spool, encoded vectors, and the checkpoint.

    Attributes:
        path: The directory.
        resumed: Whether an earlier run's checkpoint was found and is being continued.
    """

    def __init__(self, path: Path, state: dict[str, Any], *, resumed: bool) -> None:
        """Wrap an opened directory (use :meth:`open`)."""
        self.path = path
        self.resumed = resumed
        self._state = state

    @classmethod
    def open(cls, path: Path, key: dict[str, Any], *, restart: bool = False) -> Checkpoint:
        """Continue the run checkpointed in ``path``, or start a fresh one there.

        Args:
            path: The scratch directory (created when missing).
            key: JSON-ready description of the run (model, settings, inputs); a checkpoint made
                under another key is never continued.
            restart: Discard any checkpoint instead of continuing it.

        Raises:
            ConfigError: If ``path`` holds a checkpoint of a run with another key (and
                ``restart`` is false), or cannot be written.
        """
        state = None if restart else _read_state(path)
        if state is not None:
            if state.get("key") == key:
                return cls(path, state, resumed=True)
            differ = sorted(
                name for name in set(key) | set(state.get("key") or {})
                if (state.get("key") or {}).get(name) != key.get(name)
            )
            if set(differ) <= OBSOLETE_IF or not state.get("encoded"):
                log.warning("discarding an interrupted run's checkpoint in %s (%s changed since)",
                            path, ", ".join(differ))
                return cls._fresh(path, key)
            raise ConfigError(
                f"{path} holds an interrupted indexing run with other settings (they differ in: "
                f"{', '.join(differ) or 'format'}); rerun it with the same model, settings and "
                "corpus to resume it, or pass --restart to discard it"
            )
        return cls._fresh(path, key)

    @classmethod
    def _fresh(cls, path: Path, key: dict[str, Any]) -> Checkpoint:
        shutil.rmtree(path, ignore_errors=True)
        try:
            path.mkdir(parents=True)
        except OSError as error:
            raise ConfigError(f"cannot create {path}: {error.strerror or error}") from error
        work = cls(path, {"format": FORMAT, "key": key, "chunked": None, "encoded": 0},
                   resumed=False)
        work._save()
        return work

    # ------------------------------------------------------------------ phase 1: the spool
    @property
    def chunked(self) -> dict[str, Any] | None:
        """What the chunking pass recorded (passage count, changes), or None if it did not end."""
        value = self._state.get("chunked")
        return value if isinstance(value, dict) else None

    def mark_chunked(self, record: dict[str, Any]) -> None:
        """Checkpoint the end of the chunking pass; ``record`` must hold ``passages``."""
        self._state["chunked"] = record
        self._state["encoded"] = 0
        self._save()

    # ------------------------------------------------------------------ phase 2: vectors
    @property
    def encoded(self) -> int:
        """How many spooled passages have checkpointed vectors."""
        return int(self._state.get("encoded", 0))

    def append_vectors(self, vectors: NDArray[np.floating[Any]]) -> None:
        """Append one window's vectors on disk, then checkpoint the new count."""
        array = np.ascontiguousarray(vectors, dtype=np.float32)
        path = self.path / VECTORS_FILE
        offset = self.encoded * array.shape[1] * 4 if array.ndim == 2 else 0
        with open(path, "r+b" if path.exists() else "w+b") as handle:
            handle.truncate(offset)  # drop rows written after the last checkpoint
            handle.seek(offset)
            handle.write(array.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        self._state["encoded"] = self.encoded + len(array)
        self._save()

    def vectors(self, dim: int) -> VectorFile:
        """The checkpointed vectors, ``(encoded, dim)``, read from disk a slice at a time."""
        return VectorFile(self.path / VECTORS_FILE, self.encoded, dim)

    # ------------------------------------------------------------------ the end
    def discard(self) -> None:
        """Delete the directory (after the index it fed is in place)."""
        shutil.rmtree(self.path, ignore_errors=True)

    def _save(self) -> None:
        try:
            state = json.dumps(self._state, ensure_ascii=False)
            atomic_write_lines(self.path / STATE_FILE, [state])
        except OSError as error:
            raise ConfigError(
                f"cannot write the checkpoint in {self.path}: {error.strerror or error}"
            ) from error


class VectorFile:
    """Rows of a raw float32 file, read slice by slice with plain reads.

    Not a memory map: mapped pages that were read stay in the process's resident memory, and
    an indexing run reads every vector once; reads keep its peak at the index's own size.
    """

    def __init__(self, path: Path, n: int, dim: int) -> None:
        self.path = path
        self.shape = (n, dim)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> NDArray[np.float32]:
        n, dim = self.shape
        start, stop, step = rows.indices(n)
        if step != 1:
            raise ValueError("only contiguous slices can be read")
        count = max(stop - start, 0)
        if count == 0:
            return np.zeros((0, dim), np.float32)
        data = np.fromfile(self.path, dtype=np.float32, count=count * dim, offset=start * dim * 4)
        return data.reshape(count, dim)


def _read_state(path: Path) -> dict[str, Any] | None:
    """The checkpoint in ``path``; None when there is none or it is unreadable (start over)."""
    try:
        state = json.loads((path / STATE_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return None
    return state
