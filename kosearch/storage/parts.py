"""An index directory as one value: its manifest and parts, read together and checked.

:func:`read_parts` opens vectors, passages, the optional BM25 part and the original vectors of a
lossy index, and checks that their counts agree with the manifest. A writer may swap a new
index in while it reads: it then reads again, so a reader always gets one whole index.
:func:`save_parts` writes them all into a directory (the caller makes that atomic).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kosearch.errors import IndexFormatError, IndexNotFoundError, KosearchError
from kosearch.storage.layout import EMBEDDINGS_FILE, LEXICAL_DIR
from kosearch.storage.manifest import Manifest, read_manifest, write_manifest
from kosearch.storage.passages import PassageTable
from kosearch.storage.vectors import VectorStore

if TYPE_CHECKING:
    from kosearch.lexical.bm25 import LexicalIndex

LOAD_ATTEMPTS = 5  # reads of an index that a writer keeps replacing meanwhile


@dataclass(frozen=True)
class IndexParts:
    """The manifest and parts of one index; row ``i`` of every part is the same passage.

    Attributes:
        manifest: what the index was built from.
        store: the FAISS vectors.
        passages: the passage table (texts, ids, metadata).
        lexical: the BM25 part, or None for a dense-only index.
        raw: the original vectors of a lossy (PQ/SQ8) index, kept for updates, else None.
    """

    manifest: Manifest
    store: VectorStore
    passages: PassageTable
    lexical: LexicalIndex | None = None
    raw: Any = None


def read_parts(directory: Path, *, mmap: bool = True) -> IndexParts:
    """Read the index at ``directory``; see the module docstring.

    Raises:
        IndexNotFoundError: no index at ``directory``.
        IndexFormatError: a missing or corrupt part, counts that disagree, a newer format.
    """
    for attempt in range(LOAD_ATTEMPTS):
        manifest = read_manifest(directory)
        try:
            parts = _read_once(directory, manifest, mmap=mmap)
        except (IndexFormatError, IndexNotFoundError):
            if attempt + 1 == LOAD_ATTEMPTS or _unchanged(directory, manifest):
                raise
            continue  # a writer swapped in a new index while we read: read that one
        if _unchanged(directory, manifest):
            break
    return parts


def save_parts(directory: Path, parts: IndexParts) -> None:
    """Write every part and the manifest into ``directory``."""
    parts.store.save(directory)
    parts.passages.save(directory)
    if parts.lexical is not None:
        parts.lexical.save(directory / LEXICAL_DIR)
    if parts.raw is not None:
        np.save(directory / EMBEDDINGS_FILE, np.asarray(parts.raw), allow_pickle=False)
    write_manifest(directory, parts.manifest)


def _read_once(directory: Path, manifest: Manifest, *, mmap: bool) -> IndexParts:
    store = VectorStore.load(
        directory, manifest.metric, mmap=mmap, factory=manifest.faiss.get("factory"),
        expected_bytes=manifest.faiss.get("bytes"),
    )
    passages = PassageTable.load(directory, mmap=mmap)
    lexical = None
    if manifest.lexical is not None:
        from kosearch.lexical.bm25 import LexicalIndex

        lexical = LexicalIndex.load(directory / LEXICAL_DIR, mmap=mmap)
    parts = IndexParts(manifest, store, passages, lexical, _read_raw(directory, manifest, mmap))
    _check_counts(directory, parts)
    return parts


def _check_counts(directory: Path, parts: IndexParts) -> None:
    manifest = parts.manifest
    expected = manifest.counts.get("passages")
    found = {"vectors": parts.store.ntotal, "passages": len(parts.passages)}
    if parts.lexical is not None:
        found["lexical"] = len(parts.lexical)
    if any(n != expected for n in found.values()):
        counts = ", ".join(f"{name} {n}" for name, n in found.items())
        raise IndexFormatError(
            f"the index at {directory} is inconsistent: the manifest lists {expected} passages "
            f"but found {counts}; rebuild it"
        )
    if parts.store.dim != manifest.model.dim:
        raise IndexFormatError(
            f"the index at {directory} is inconsistent: vectors have dim {parts.store.dim}, "
            f"the manifest says {manifest.model.dim}; rebuild it"
        )


def _unchanged(directory: Path, manifest: Manifest) -> bool:
    """Whether ``directory`` still holds the index ``manifest`` describes (no swap meanwhile)."""
    try:
        return read_manifest(directory) == manifest
    except KosearchError:
        return False


def _read_raw(directory: Path, manifest: Manifest, mmap: bool) -> Any:
    """The original vectors a lossy index keeps in ``embeddings.npy`` (None for other types)."""
    if not manifest.faiss.get("embeddings"):
        return None
    path = directory / EMBEDDINGS_FILE
    try:
        raw = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise IndexFormatError(
            f"{path} is missing or unreadable ({error}); rebuild the index"
        ) from None
    expected = (manifest.counts.get("passages"), manifest.model.dim)
    if raw.dtype != np.float32 or raw.shape != expected:
        raise IndexFormatError(
            f"{path} holds {raw.dtype} vectors of shape {raw.shape}, expected float32 {expected}; "
            "the index is inconsistent"
        )
    return raw


def describe(parts: IndexParts, path: Path | None) -> dict[str, Any]:
    """The manifest plus memory (when loaded) and on-disk size, as a JSON-ready dict."""
    data = asdict(parts.manifest)
    data["path"] = str(path) if path else None
    memory = {
        "vectors": int(parts.manifest.faiss.get("bytes") or 0),
        "passages": parts.passages.nbytes,  # 0 when memory-mapped
        "lexical": parts.lexical.nbytes if parts.lexical is not None else 0,
    }
    data["memory"] = memory
    data["memory_bytes"] = sum(memory.values())
    if path is not None:
        data["disk_bytes"] = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    data["filter_fields"] = filter_fields(parts.passages)
    return data


def filter_fields(passages: PassageTable, n_examples: int = 3) -> list[dict[str, Any]]:
    """The fields a filter can name: ``id`` and each typed metadata field, with its type and
    a few example values (computed from ``meta`` JSON for an index without typed columns)."""
    from kosearch.storage.metadata import examples

    table = passages.filterable()
    out: list[dict[str, Any]] = [{"name": "id", "type": "string",
                                  "examples": examples_of_ids(table, n_examples)}]
    for name, info in passages.fields().items():
        out.append({"name": name, **info, "examples": examples(table, name, n_examples)})
    return out


def examples_of_ids(table: Any, n: int) -> list[str]:
    """The first ``n`` distinct document ids."""
    seen: dict[str, None] = {}
    for value in table.column("doc_id").slice(0, 1000).to_pylist():
        seen.setdefault(value)
        if len(seen) >= n:
            break
    return list(seen)
