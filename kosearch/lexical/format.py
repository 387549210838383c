"""The disk format of a BM25 index: ``config.json``, ``vocab.json`` and ``.npy`` arrays, written
and read back with every check (never pickle).

``config.json`` holds the header (format version, analyzer config, ``k1``, ``b``, method and
counts); ``vocab.json`` the terms in id order; ``data.npy``, ``indices.npy`` and ``indptr.npy``
the per-term score matrix (CSC: column = term, row = passage); ``terms.npy`` and
``terms_indptr.npy`` each row's term ids (:class:`DocTerms`, from format 2 on).
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from kosearch.errors import ConfigError, IndexFormatError
from kosearch.lexical.analyzers import Analyzer, analyzer_from_config

FORMAT_VERSION = 2  # 2 adds the per-row term ids (terms.npy, terms_indptr.npy) used by updates
METHOD = "lucene"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"


class DocTerms:
    """Each row's term ids (with repeats) in CSR form: row ``i`` is ``ids[indptr[i]:indptr[i+1]]``.

    Kept beside the score matrix so that an update re-scores kept rows without analyzing them
    again. Loaded memory-mapped: searches never touch it.
    """

    def __init__(self, ids: NDArray[np.int32], indptr: NDArray[np.int64]) -> None:
        self.ids = ids
        self.indptr = indptr

    @classmethod
    def from_lists(cls, docs: list[list[int]]) -> DocTerms:
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        indptr = np.zeros(len(docs) + 1, np.int64)
        np.cumsum(lengths, out=indptr[1:])
        ids = np.fromiter((t for d in docs for t in d), dtype=np.int32, count=int(indptr[-1]))
        return cls(ids, indptr)

    def lists(
        self, rows: Sequence[int] | NDArray[np.integer[Any]], num_docs: int
    ) -> list[list[int]]:
        keys = np.asarray(rows, dtype=np.int64).reshape(-1)
        if keys.size and (keys.min() < 0 or keys.max() >= num_docs):
            raise IndexError(f"a kept row is out of range for {num_docs} rows")
        ids, indptr = self.ids, self.indptr
        return [ids[indptr[r]:indptr[r + 1]].tolist() for r in keys.tolist()]


class StoredIndex(NamedTuple):
    """What :func:`read_index` found in a directory."""

    analyzer: Analyzer
    vocab: dict[str, int]
    arrays: tuple[NDArray[np.float32], NDArray[np.int32], NDArray[np.int64]]
    num_docs: int
    k1: float
    b: float
    terms: DocTerms | None


def write_index(
    directory: Path,
    config: dict[str, Any],
    vocab: dict[str, int],
    arrays: dict[str, NDArray[Any]],
    num_docs: int,
) -> None:
    """Write the header (``config`` plus the format version and counts), the vocabulary and the
    named ``arrays`` (``data``, ``indices``, ``indptr``, optionally ``terms``, ``terms_indptr``)
    into ``directory``, created if needed; existing files of the same names are overwritten."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    header = {
        "format_version": FORMAT_VERSION,
        **config,
        "num_docs": num_docs,
        "num_terms": len(vocab),
    }
    text = json.dumps(header, ensure_ascii=False, indent=2)
    (directory / CONFIG_FILE).write_text(text + "\n", "utf-8")
    terms = sorted(vocab, key=vocab.__getitem__)
    (directory / VOCAB_FILE).write_text(json.dumps(terms, ensure_ascii=False), "utf-8")
    for name, array in arrays.items():
        np.save(directory / f"{name}.npy", array, allow_pickle=False)


def read_index(directory: Path, *, mmap: bool = False) -> StoredIndex:
    """Read an index written by :func:`write_index`, its analyzer rebuilt from the stored config.

    With ``mmap`` the score matrix is memory-mapped rather than read: a search pages in the
    columns of its terms only. Its checks then read the files in blocks, not through the map,
    so that loading leaves no pages of the matrix in this process's memory.

    Raises:
        IndexFormatError: If a file is missing, corrupt, inconsistent or from a newer format.
    """
    directory = Path(directory)
    header = _read_header(directory / CONFIG_FILE)
    terms = _read_vocab(directory / VOCAB_FILE, header["num_terms"])
    arrays = _read_arrays(directory, header["num_docs"], header["num_terms"], mmap)
    analyzer = _analyzer_of(header, directory / CONFIG_FILE)
    vocab = {t: i for i, t in enumerate(terms)}
    doc_terms = _read_doc_terms(directory, header["num_docs"], header["num_terms"])
    return StoredIndex(
        analyzer, vocab, arrays, header["num_docs"], header["k1"], header["b"], doc_terms
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise IndexFormatError(f"lexical index file {path} is missing.") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise IndexFormatError(f"lexical index file {path} is not valid JSON ({e}).") from e


def read_analyzer(directory: str | os.PathLike[str]) -> Analyzer:
    """The analyzer of the lexical index saved in ``directory``, without reading the index.

    Raises:
        IndexFormatError: If its ``config.json`` is missing, corrupt or from a newer format.
    """
    path = Path(directory) / CONFIG_FILE
    return _analyzer_of(_read_header(path), path)


def _analyzer_of(header: dict[str, Any], path: Path) -> Analyzer:
    try:
        return analyzer_from_config(header["tokenizer"])
    except ConfigError as e:
        raise IndexFormatError(
            f"lexical index file {path} has an invalid tokenizer ({str(e).rstrip('.')})."
        ) from e


def _read_header(path: Path) -> dict[str, Any]:
    header = _read_json(path)
    if not isinstance(header, dict):
        raise IndexFormatError(f"lexical index file {path} does not hold a JSON object.")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise IndexFormatError(
            f"lexical index file {path} has format version {version!r}, "
            f"but this kosearch reads versions up to {FORMAT_VERSION}."
        )
    counts = [header.get(f) for f in ("num_docs", "num_terms")]
    params = [header.get(f) for f in ("k1", "b")]
    if (
        not all(isinstance(c, int) and c >= 0 for c in counts)
        or not all(isinstance(p, (int, float)) for p in params)
        or not isinstance(header.get("tokenizer"), dict)
    ):
        raise IndexFormatError(
            f"lexical index file {path} lacks valid num_docs, num_terms, k1, b or tokenizer fields."
        )
    if header.get("method") != METHOD:
        raise IndexFormatError(
            f"lexical index file {path} uses BM25 method {header.get('method')!r}, "
            f"but only {METHOD!r} is supported."
        )
    return header


def _read_vocab(path: Path, num_terms: int) -> list[str]:
    terms = _read_json(path)
    if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
        raise IndexFormatError(f"lexical index file {path} is not a JSON list of strings.")
    if len(terms) != num_terms or len(set(terms)) != num_terms:
        raise IndexFormatError(
            f"lexical index file {path} holds {len(terms)} terms ({len(set(terms))} distinct), "
            f"but config.json says {num_terms}."
        )
    return terms


def _read_npy(path: Path, kind: str, mmap: bool = False) -> NDArray[Any]:
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise IndexFormatError(f"lexical index file {path} is missing.") from None
    except (OSError, ValueError, EOFError) as e:
        raise IndexFormatError(f"lexical index file {path} is not a plain .npy array ({e}).") from e
    if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype.kind != kind:
        raise IndexFormatError(f"lexical index file {path} does not hold a 1-d {kind!r} array.")
    return array


def _blocks(array: NDArray[Any], size: int = 1 << 22) -> Any:
    """The values of a 1-d array in blocks; a memory-mapped one is read from its file instead
    of through the map, so that a scan leaves none of its pages resident in this process."""
    filename = getattr(array, "filename", None)
    if filename is None:
        yield array
        return
    with open(filename, "rb") as handle:
        for start in range(0, array.size, size):
            handle.seek(int(getattr(array, "offset", 0)) + start * array.itemsize)
            yield np.fromfile(handle, dtype=array.dtype, count=min(size, array.size - start))


def _within(array: NDArray[Any], stop: int) -> bool:
    """Whether every value of a non-empty 1-d integer array is in ``[0, stop)``, read once in
    blocks."""
    lows, highs = zip(*((block.min(), block.max()) for block in _blocks(array) if block.size))
    return int(min(lows)) >= 0 and int(max(highs)) < stop


def _read_arrays(
    directory: Path, num_docs: int, num_terms: int, mmap: bool = False
) -> tuple[NDArray[np.float32], NDArray[np.int32], NDArray[np.int64]]:
    data = _read_npy(directory / "data.npy", "f", mmap).astype(np.float32, copy=False)
    indices = _read_npy(directory / "indices.npy", "i", mmap).astype(np.int32, copy=False)
    indptr = _read_npy(directory / "indptr.npy", "i").astype(np.int64, copy=False)
    problem = None
    if indptr.size != num_terms + 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        problem = "indptr.npy does not match the vocabulary"
    elif data.size != indices.size or indptr[-1] != data.size:
        problem = "data.npy, indices.npy and indptr.npy disagree in length"
    elif indices.size and not _within(indices, num_docs):
        problem = "indices.npy refers to rows outside the index"
    elif not all(np.all(np.isfinite(block)) for block in _blocks(data)):
        problem = "data.npy holds non-finite scores"
    if problem:
        raise IndexFormatError(f"the lexical index in {directory} is corrupt: {problem}.")
    if mmap:
        data, indices = _remap(data), _remap(indices)
    return data, indices, indptr


def _remap(array: NDArray[Any]) -> NDArray[Any]:
    """A memory-mapped ``.npy`` array (``np.load(mmap_mode="r")``) over a map of our own, so
    that :func:`release_pages` can unmap what searches touched."""
    filename = getattr(array, "filename", None)
    if filename is None or not array.size:
        return array
    with open(filename, "rb") as handle:
        region = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return np.frombuffer(region, dtype=array.dtype, count=array.size,
                         offset=int(getattr(array, "offset", 0)))


def release_pages(*arrays: NDArray[Any]) -> None:
    """Unmap the pages of memory-mapped arrays (from :func:`read_index` with ``mmap``) that this
    process touched; they stay in the page cache and are mapped again when read. Keeps the RSS
    of a served index at what one search touches. A no-op for arrays in memory."""
    for array in arrays:
        region = mapped_region(array)
        if region is not None and hasattr(region, "madvise"):
            region.madvise(mmap.MADV_DONTNEED)


def mapped_region(array: NDArray[Any]) -> mmap.mmap | None:
    """The memory map ``array`` reads from, or None for an array in memory."""
    base = array.base
    if isinstance(base, memoryview):  # np.frombuffer over a map
        base = base.obj
    return base if isinstance(base, mmap.mmap) else None


def _read_doc_terms(directory: Path, num_docs: int, num_terms: int) -> DocTerms | None:
    """The per-row term ids (memory-mapped), or None for a format-1 index without them."""
    paths = [directory / "terms.npy", directory / "terms_indptr.npy"]
    if not all(p.is_file() for p in paths):
        return None
    try:
        ids, indptr = (np.load(p, mmap_mode="r", allow_pickle=False) for p in paths)
    except (OSError, ValueError, EOFError) as e:
        raise IndexFormatError(
            f"the lexical index in {directory} has an unreadable terms file ({e})."
        ) from e
    if (
        ids.ndim != 1 or ids.dtype.kind != "i" or indptr.ndim != 1 or indptr.dtype.kind != "i"
        or indptr.size != num_docs + 1 or (indptr.size and indptr[-1] != ids.size)
        or (ids.size and not _within(ids, num_terms))
    ):
        raise IndexFormatError(
            f"the lexical index in {directory} is corrupt: terms.npy and terms_indptr.npy do not "
            "match the index."
        )
    return DocTerms(ids, indptr)
