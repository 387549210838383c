"""The vectors of an index: a FAISS index whose row numbers are passage rows (``vectors.faiss``).

The store knows no model: it takes and returns float32 arrays. Scores are always "higher is
better": cosine and inner-product scores as FAISS computes them, and the *negative squared*
distance for l2. Equal scores are ordered by ascending row, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from kosearch.errors import ConfigError, IndexFormatError
from kosearch.storage.checks import check_file, checked_rows, error_reason
from kosearch.storage.faiss_index import describe, empty_like, faiss_metric, index_kind, ivf_part
from kosearch.storage.layout import VECTORS_FILE
from kosearch.types import Metric, parse_metric

if TYPE_CHECKING:
    import faiss

__all__ = ["VectorStore"]


class VectorStore:
    """A FAISS index over float32 vectors whose row numbers are passage rows.

    Build one with :meth:`create` or :meth:`load`. Under ``cosine`` the vectors are
    L2-normalized (copies; the caller's arrays are never changed) and compared by inner product.

    Example:
        >>> store = VectorStore.create(4, "cosine")
        >>> store.add(np.eye(4, dtype=np.float32))
        >>> store.search(np.eye(4, dtype=np.float32)[:1], k=2)[1].tolist()
        [[0, 1]]
    """

    def __init__(
        self, index: faiss.Index, metric: Metric | str, factory: str, *, mapped: bool = False
    ) -> None:
        """Wrap an existing FAISS index (prefer :meth:`create` and :meth:`load`)."""
        self._index = index
        self.metric = parse_metric(metric)
        self.factory = factory
        self._mapped = mapped

    @classmethod
    def create(cls, dim: int, metric: Metric | str, factory: str = "Flat") -> VectorStore:
        """An empty store.

        Args:
            dim: Vector dimension (> 0).
            metric: ``cosine``, ``ip`` or ``l2``.
            factory: A ``faiss.index_factory`` description, e.g. ``"Flat"`` or ``"HNSW32"``.

        Raises:
            ConfigError: If the metric or the factory string is not valid.
            ValueError: If ``dim`` is not positive.
        """
        import faiss

        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        parsed = parse_metric(metric)
        try:
            index = faiss.index_factory(dim, factory, faiss_metric(parsed))
        except RuntimeError as error:
            raise ConfigError(
                f"FAISS cannot build an index from the factory string {factory!r}"
            ) from error
        if hasattr(index, "do_polysemous_training"):
            # The factory turns on polysemous training for IVF-PQ: minutes of training for a
            # Hamming pre-filter kosearch never uses (polysemous_ht stays 0).
            index.do_polysemous_training = False
        return cls(index, parsed, factory)

    @property
    def dim(self) -> int:
        """The vector dimension."""
        return int(self._index.d)

    @property
    def ntotal(self) -> int:
        """How many vectors are stored."""
        return int(self._index.ntotal)

    @property
    def is_trained(self) -> bool:
        """False for an IVF/PQ index that still needs :meth:`train`."""
        return bool(self._index.is_trained)

    @property
    def mapped(self) -> bool:
        """Whether the vectors are memory-mapped from a file (read-only until the next add)."""
        return self._mapped

    @property
    def faiss_index(self) -> Any:
        """The FAISS index itself, to search with parameters (:mod:`.selection`); read only."""
        return self._index

    def prepare(self, vectors: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """Vectors as this store searches them: checked float32, normalized under cosine."""
        return self._prepare(vectors)

    @property
    def kind(self) -> str:
        """``flat``, ``hnsw``, ``ivf-flat``, ``ivf-pq``, ``ivf-sq8`` or ``other``."""
        return index_kind(self._index)

    def search_params(self) -> dict[str, int]:
        """The query-time knobs in force: ``{"nprobe": ...}`` (IVF), ``{"ef_search": ...}``
        (HNSW) or ``{}``; FAISS stores both in the index file."""
        ivf = ivf_part(self._index)
        if ivf is not None:
            return {"nprobe": int(ivf.nprobe)}
        if self.kind == "hnsw":
            return {"ef_search": int(self._index.hnsw.efSearch)}
        return {}

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Set query-time knobs; None leaves a knob as it is.

        Args:
            nprobe: Inverted lists visited per query (IVF types; more is slower and more exact).
            ef_search: Candidate list size of an HNSW search (at least ``k`` is always used).

        Raises:
            ConfigError: If a knob does not apply to this index type.
            ValueError: If a knob is below 1.
        """
        for name, value in (("nprobe", nprobe), ("ef_search", ef_search)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        ivf = ivf_part(self._index)
        if nprobe is not None:
            if ivf is None:
                raise ConfigError(
                    f"nprobe applies only to IVF indexes (ivf-flat, ivf-pq, ivf-sq8), "
                    f"not to this {self.kind} index"
                )
            ivf.nprobe = int(nprobe)
        if ef_search is not None:
            if self.kind != "hnsw":
                raise ConfigError(
                    f"ef_search applies only to hnsw indexes, not to this {self.kind} index"
                )
            self._index.hnsw.efSearch = int(ef_search)

    def set_build_params(self, *, ef_construction: int | None = None) -> None:
        """Set HNSW's build breadth (before adding vectors; higher: better graph, slower add).

        Raises:
            ConfigError: If this is not an HNSW index.
            ValueError: If ``ef_construction`` is below 1.
        """
        if ef_construction is None:
            return
        if ef_construction < 1:
            raise ValueError(f"ef_construction must be at least 1, got {ef_construction}")
        if self.kind != "hnsw":
            raise ConfigError(
                f"ef_construction applies only to hnsw indexes, not to this {self.kind} index"
            )
        self._index.hnsw.efConstruction = int(ef_construction)

    def empty_copy(self) -> VectorStore:
        """A store with the same type, trained parameters and search knobs, but no vectors.

        Re-adding vectors to it needs no retraining (e.g. to rebuild after deletions). The
        vectors are never copied, so this is cheap for a large or memory-mapped index.
        """
        return VectorStore(empty_like(self._index, mapped=self._mapped), self.metric, self.factory)

    def train(self, vectors: NDArray[np.floating[Any]]) -> None:
        """Train an IVF/PQ index on sample vectors of shape ``(n, dim)`` (no-op for Flat/HNSW)."""
        if not self.is_trained:
            self._index.train(self._prepare(vectors))

    def add(self, vectors: NDArray[np.floating[Any]]) -> None:
        """Append vectors; they get the rows ``ntotal .. ntotal + n - 1``.

        Args:
            vectors: Shape ``(n, dim)``, any float dtype; converted to float32 (a copy is
                normalized under cosine; a zero vector stays zero and scores 0).

        Raises:
            ValueError: On a wrong shape, non-finite values, or an untrained index.
        """
        prepared = self._prepare(vectors)
        if not self.is_trained:
            raise ValueError(
                f"the FAISS index {self.factory!r} must be trained (call train()) before add()"
            )
        if self._mapped:
            self._own()
        self._index.add(prepared)

    def search(
        self, queries: NDArray[np.floating[Any]], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The ``k`` best rows for each query.

        Args:
            queries: Shape ``(nq, dim)``.
            k: How many results per query (> 0).

        Returns:
            ``(scores, rows)``, both of shape ``(nq, min(k, ntotal))``, best first. Higher
            scores are better for every metric: l2 scores are negative squared distances.
            Equal scores come in ascending row order. An approximate index that finds fewer
            than ``k`` rows pads with row ``-1`` and score ``-inf``.

        Raises:
            ValueError: If ``k <= 0`` or the queries have a wrong shape or non-finite values.
        """
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        prepared = self._prepare(queries)
        want = min(k, self.ntotal)
        if want == 0 or len(prepared) == 0:
            shape = (len(prepared), want)
            return np.zeros(shape, np.float32), np.zeros(shape, np.int64)
        return self._search_block(prepared, want, min(want + 1, self.ntotal))

    def _search_block(
        self, queries: NDArray[np.float32], want: int, fetch: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Search ``fetch`` deep; queries whose ties run past the cut are searched deeper."""
        distances, labels = self._index.search(queries, fetch)
        scores = 0.0 - distances if self.metric is Metric.L2 else distances  # 0.0 - d: no -0.0
        scores = np.where(labels < 0, np.float32(-np.inf), scores).astype(np.float32)
        order = np.lexsort((labels, -scores), axis=-1)
        scores = np.take_along_axis(scores, order, axis=1)
        rows = np.take_along_axis(labels, order, axis=1).astype(np.int64)
        # A score equal to the last one fetched may be shared by rows not fetched yet.
        tied = np.isfinite(scores[:, want - 1]) & (scores[:, want - 1] == scores[:, -1])
        if fetch < self.ntotal and tied.any():
            deeper = self._search_block(queries[tied], want, min(2 * fetch, self.ntotal))
            scores, rows = scores[:, :want].copy(), rows[:, :want].copy()
            scores[tied], rows[tied] = deeper
            return scores, rows
        return np.ascontiguousarray(scores[:, :want]), np.ascontiguousarray(rows[:, :want])

    def reconstruct(self, rows: Sequence[int]) -> NDArray[np.float32]:
        """The stored vectors of ``rows``, shape ``(len(rows), dim)``.

        Under cosine these are the normalized vectors; quantized indexes return approximations.

        Raises:
            IndexError: If a row is out of range.
        """
        keys = checked_rows(rows, self.ntotal)
        if len(keys) == 0:
            return np.zeros((0, self.dim), np.float32)
        try:
            return np.asarray(self._index.reconstruct_batch(keys), dtype=np.float32)
        except RuntimeError:
            import faiss

            if self._mapped:
                self._own()  # FAISS aborts when it builds the map inside a mapped index
            faiss.extract_index_ivf(self._index).make_direct_map()  # IVF needs a row -> list map
            return np.asarray(self._index.reconstruct_batch(keys), dtype=np.float32)

    def save(self, directory: Path) -> int:
        """Write ``vectors.faiss`` into ``directory`` and return its size in bytes.

        Raises:
            ConfigError: If the file cannot be written.
        """
        import faiss

        path = Path(directory) / VECTORS_FILE
        try:
            faiss.write_index(self._index, str(path))
        except RuntimeError as error:
            raise ConfigError(
                f"cannot write the vector index {path}: {error_reason(error)}"
            ) from error
        return path.stat().st_size

    @classmethod
    def load(
        cls,
        directory: Path,
        metric: Metric | str,
        *,
        mmap: bool = False,
        factory: str | None = None,
        expected_bytes: int | None = None,
    ) -> VectorStore:
        """Open ``directory/vectors.faiss``.

        Args:
            directory: The index directory.
            metric: The metric the vectors were stored under (from the manifest).
            mmap: Memory-map the vectors instead of reading them (FAISS ``IO_FLAG_MMAP_IFC``);
                falls back to a normal read where the index type does not support it. The first
                :meth:`add` copies a mapped index into memory.
            factory: The factory string to report (default: derived from the index).
            expected_bytes: The file size :meth:`save` returned; a mismatch is reported before
                FAISS touches the file. FAISS can crash on a truncated file when mapping it, so
                pass this with ``mmap=True``.

        Raises:
            IndexFormatError: If the file is missing, truncated, corrupt, or stored under
                another metric.
        """
        import faiss

        parsed = parse_metric(metric)
        path = Path(directory) / VECTORS_FILE
        check_file(path, expected_bytes)
        index, mapped = None, False
        if mmap:
            try:
                index, mapped = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC), True
            except RuntimeError:
                pass
        if index is None:
            try:
                index = faiss.read_index(str(path))
            except RuntimeError as error:
                raise IndexFormatError(
                    f"{path} is not a readable FAISS index ({error_reason(error)})"
                ) from error
        if index.metric_type != faiss_metric(parsed):
            stored = "l2" if index.metric_type == faiss.METRIC_L2 else "inner-product (cosine, ip)"
            raise IndexFormatError(
                f"{path} holds vectors for the {stored} metric, not {parsed.value}; "
                "the index is inconsistent"
            )
        described = factory if factory is not None else describe(index)
        return cls(index, parsed, described, mapped=mapped)

    def _prepare(self, vectors: NDArray[np.floating[Any]]) -> NDArray[np.float32]:
        """Validated C-contiguous float32 vectors (a normalized copy under cosine)."""
        import faiss

        array = np.asarray(vectors)
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got shape {array.shape}")
        copy = True if self.metric is Metric.COSINE else None  # never normalize the caller's array
        with np.errstate(over="ignore"):  # overflow becomes inf, reported just below
            prepared = np.array(array, dtype=np.float32, order="C", copy=copy)
        if not np.isfinite(prepared).all():
            raise ValueError(
                "vectors contain non-finite values (NaN, or infinity after conversion to float32)"
            )
        if self.metric is Metric.COSINE:
            faiss.normalize_L2(prepared)
        return prepared

    def fill(self, chunks: Iterable[NDArray[np.floating[Any]]], n: int) -> None:
        """Add exactly ``n`` vectors given in chunks, sizing an exact (Flat) index only once.

        ``add`` lets FAISS grow its buffer by doubling, which briefly holds up to three times
        the vectors; here a Flat index's buffer is allocated at its final size and each chunk
        is written into it, so the peak is the vectors plus one chunk. Other index types fall
        back to :meth:`add` per chunk.

        Raises:
            ValueError: If the chunks hold other than ``n`` vectors, or have the wrong shape.
        """
        import faiss

        flat = type(self._index) in (faiss.IndexFlatIP, faiss.IndexFlatL2, faiss.IndexFlat)
        if not flat or self.ntotal or self._mapped:
            added = 0
            for chunk in chunks:
                self.add(chunk)
                added += len(chunk)
            if added != n:
                raise ValueError(f"expected {n} vectors, got {added}")
            return
        size = n * self.dim * 4
        self._index.codes.resize(size)
        view = faiss.rev_swig_ptr(self._index.codes.data(), size).view(np.float32)
        rows = view.reshape(n, self.dim) if n else np.zeros((0, self.dim), np.float32)
        at = 0
        for chunk in chunks:
            prepared = self._prepare(chunk)
            if at + len(prepared) > n:
                self._index.reset()
                raise ValueError(f"expected {n} vectors, got more")
            rows[at:at + len(prepared)] = prepared
            at += len(prepared)
        if at != n:
            self._index.reset()
            raise ValueError(f"expected {n} vectors, got {at}")
        self._index.ntotal = n

    def copy(self) -> VectorStore:
        """An independent in-memory copy (e.g. to add to while this one keeps serving)."""
        import faiss

        index = faiss.deserialize_index(faiss.serialize_index(self._index))
        return VectorStore(index, self.metric, self.factory)

    def _own(self) -> None:
        """Copy a memory-mapped index into memory; FAISS aborts on writes to a mapped one."""
        import faiss

        self._index = faiss.deserialize_index(faiss.serialize_index(self._index))
        self._mapped = False
