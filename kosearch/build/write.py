"""Writing a complete index directory from the rows kept of an old index plus newly encoded ones.

A fresh build is the case with no old index. Rows keep their relative order: the kept rows of
the old index come first, then the new passages in corpus order, so row ``i`` of the vectors,
of ``passages.parquet`` and of the lexical index always describe the same passage.

Vectors of kept rows are reused, never re-encoded: an exact store gives them back as stored;
a lossy one (PQ, SQ8) keeps the original vectors in ``embeddings.npy`` for this purpose. A
trained ANN index is refilled without retraining while the collection stays within a factor of
two of the size it was trained at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from kosearch.storage.layout import EMBEDDINGS_FILE, PASSAGES_FILE
from kosearch.storage.passages import PassageTable
from kosearch.storage.vectors import VectorStore

if TYPE_CHECKING:
    import pyarrow as pa

    from kosearch.build.checkpoint import VectorFile
    from kosearch.storage.ann import IndexPlan
    from kosearch.storage.parts import IndexParts

log = logging.getLogger(__name__)

CHUNK_ROWS = 16384  # vectors moved per step (a transient copy of this many is made)
LOSSY_KINDS = frozenset({"ivf-pq", "ivf-sq8"})  # their stored vectors are approximations
RETRAIN_FACTOR = 2.0  # retrain an ANN index once the collection grew or shrank this much


def kept_rows(base: IndexParts | None, drop: set[str]) -> NDArray[np.int64]:
    """The rows of ``base`` whose document is not in ``drop``, in order."""
    if base is None:
        return np.zeros(0, np.int64)
    if not drop:
        return np.arange(len(base.passages), dtype=np.int64)
    import pyarrow as pa
    import pyarrow.compute as pc

    dropped = pc.is_in(base.passages.column("doc_id"), value_set=pa.array(sorted(drop)))
    return np.flatnonzero(~np.asarray(dropped.to_numpy(zero_copy_only=False), dtype=bool))


def write_passages(
    directory: Path,
    base: IndexParts | None,
    keep: NDArray[np.int64],
    meta_updates: Mapping[str, str],
    spool: Path | None,
) -> int:
    """Write ``passages.parquet``: the kept rows (with updated metas), then the spooled ones."""
    import pyarrow.parquet as pq

    with PassageTable.writer(directory) as writer:
        if base is not None:
            for start in range(0, len(keep), CHUNK_ROWS):
                table = base.passages.table.take(keep[start:start + CHUNK_ROWS])
                writer.append_table(_with_metas(table, meta_updates))
        if spool is not None:
            for batch in pq.ParquetFile(spool / PASSAGES_FILE).iter_batches(batch_size=CHUNK_ROWS):
                writer.append_table(batch)
        return writer.close()


def _with_metas(table: pa.Table, updates: Mapping[str, str]) -> pa.Table:
    if not updates:
        return table
    import pyarrow as pa

    ids = table.column("doc_id").to_pylist()
    metas = table.column("meta").to_pylist()
    changed = [updates.get(doc_id, meta) for doc_id, meta in zip(ids, metas)]
    index = table.column_names.index("meta")
    return table.set_column(index, "meta", pa.array(changed, pa.string()))


def write_vectors(
    directory: Path,
    scratch: Path,
    base: IndexParts | None,
    keep: NDArray[np.int64],
    new: VectorFile,
    metric: str,
    plan: IndexPlan,
    on_rows: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write ``vectors.faiss`` (and ``embeddings.npy`` for a lossy type); return manifest fields."""
    from kosearch.storage.ann import build_store

    dim = new.shape[1] if base is None else base.store.dim
    n = len(keep) + len(new)
    old = dict(base.manifest.faiss) if base is not None else {}
    reuse_all = (
        base is not None and old.get("factory") == plan.factory
        and len(keep) == len(base.passages)
    )
    reuse_training = (
        base is not None and plan.train_size > 0 and old.get("factory") == plan.factory
        and base.store.is_trained and _within(n, old.get("trained_on"))
    )
    lossy = plan.kind in LOSSY_KINDS
    combined: NDArray[np.float32] | None = None
    if lossy or (plan.train_size > 0 and not reuse_training and not reuse_all):
        target = directory if lossy else scratch
        combined = _combine(target / EMBEDDINGS_FILE, n, dim, _chunks(base, keep, new))
    trained_on = old.get("trained_on") if (reuse_all or reuse_training) else None
    if reuse_all:
        assert base is not None
        store = base.store.copy()  # the live store keeps serving searches meanwhile
        _add_chunks(store, _chunks(None, keep, new), on_rows)
    elif reuse_training:
        assert base is not None
        store = base.store.empty_copy()
        source = _chunks(base, keep, new) if combined is None else _rows(combined)
        _add_chunks(store, source, on_rows)
    elif combined is not None and plan.train_size > 0:
        store = build_store(combined, metric, plan, on_chunk=_delta(on_rows))
        trained_on = n
    else:
        store = VectorStore.create(dim, metric, plan.factory)
        if plan.kind == "hnsw":
            store.set_build_params(ef_construction=plan.ef_construction)
        store.fill(_counted(_chunks(base, keep, new), on_rows), n)
    store.set_search_params(nprobe=plan.nprobe, ef_search=plan.ef_search)  # saved in the file
    del combined
    size = store.save(directory)
    return {
        **plan.to_dict(), "factory": plan.factory, "ntotal": store.ntotal, "bytes": size,
        "trained_on": trained_on, "embeddings": lossy,
    }


def _within(n: int, trained_on: Any) -> bool:
    if not isinstance(trained_on, int) or trained_on <= 0:
        return False
    return trained_on / RETRAIN_FACTOR <= n <= trained_on * RETRAIN_FACTOR


def _chunks(
    base: IndexParts | None, keep: NDArray[np.int64], new: VectorFile | NDArray[np.float32]
) -> Iterator[NDArray[np.float32]]:
    """The vectors of the final rows in order, ``CHUNK_ROWS`` at a time: kept, then new."""
    if base is not None:
        for start in range(0, len(keep), CHUNK_ROWS):
            rows = keep[start:start + CHUNK_ROWS]
            if base.raw is not None:
                yield np.asarray(base.raw[rows], dtype=np.float32)
            else:
                yield base.store.reconstruct(rows)
    yield from _rows(new)


def _rows(array: VectorFile | NDArray[np.float32]) -> Iterator[NDArray[np.float32]]:
    for start in range(0, len(array), CHUNK_ROWS):
        yield np.asarray(array[start:start + CHUNK_ROWS], dtype=np.float32)


def _combine(
    path: Path, n: int, dim: int, chunks: Iterator[NDArray[np.float32]]
) -> NDArray[np.float32]:
    """All final vectors in one ``.npy`` file on disk (memory-mapped), e.g. to train on."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    at = 0
    for chunk in chunks:
        array[at:at + len(chunk)] = chunk
        at += len(chunk)
    array.flush()
    return array


def _delta(on_rows: Callable[[int], None] | None) -> Callable[[int, int], None] | None:
    """Turn ``build_store``'s ``(rows added so far, n)`` calls into ``on_rows(new rows)`` ones."""
    if on_rows is None:
        return None
    done = [0]

    def report(total: int, _n: int) -> None:
        on_rows(total - done[0])
        done[0] = total

    return report


def _counted(
    chunks: Iterator[NDArray[np.float32]], on_rows: Callable[[int], None] | None
) -> Iterator[NDArray[np.float32]]:
    for chunk in chunks:
        yield chunk
        if on_rows is not None:
            on_rows(len(chunk))


def _add_chunks(
    store: VectorStore, chunks: Iterator[NDArray[np.float32]], on_rows: Callable[[int], None] | None
) -> None:
    for chunk in chunks:
        if len(chunk):
            store.add(chunk)
            if on_rows is not None:
                on_rows(len(chunk))


def write_lexical(
    directory: Path,
    base: IndexParts | None,
    keep: NDArray[np.int64],
    new_texts: Iterator[str],
    all_texts: Callable[[], Iterator[str]],
    kiwi: Callable[[], Any],
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write ``lexical/``: the kept rows' stored terms plus the new texts analyzed, re-scored.

    ``kiwi`` gives the run's Kiwi (the chunker's, ~300 MB, with the default dictionaries), so
    that no second one is loaded, except to update an index analyzed with other dictionaries.
    """
    from kosearch.lexical.analyzers import MorphemeAnalyzer
    from kosearch.lexical.bm25 import LexicalIndex
    from kosearch.lexical.kiwi import DEFAULT_DICTS
    from kosearch.storage.layout import LEXICAL_DIR

    lexical = None
    if base is not None and base.lexical is not None:
        if base.lexical.updatable:
            old = base.lexical.analyzer
            analyzer = old
            if isinstance(old, MorphemeAnalyzer) and old.dicts == DEFAULT_DICTS:
                analyzer = MorphemeAnalyzer(old.tags, kiwi=kiwi())
            lexical = base.lexical.updated(keep, new_texts, analyzer=analyzer, on_batch=on_batch)
        else:
            log.warning("the index's BM25 part predates per-passage terms; analyzing every "
                        "passage again")
    if lexical is None:
        lexical = LexicalIndex.build(all_texts(), analyzer=MorphemeAnalyzer(kiwi=kiwi()),
                                     on_batch=on_batch)
    lexical.save(directory / LEXICAL_DIR)
    return lexical.config()
