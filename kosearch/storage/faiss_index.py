"""What kosearch asks of a raw FAISS index: its metric constant, its IVF part, its kosearch type
name, its factory string, and copies of it without the vectors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kosearch.types import Metric

if TYPE_CHECKING:
    import faiss


def faiss_metric(metric: Metric) -> int:
    """The FAISS metric constant: inner product for cosine and ip, L2 for l2."""
    import faiss

    return int(faiss.METRIC_L2 if metric is Metric.L2 else faiss.METRIC_INNER_PRODUCT)


def ivf_part(index: faiss.Index) -> Any:
    """The IVF part of ``index``, or None when it has none."""
    import faiss

    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def index_kind(index: faiss.Index) -> str:
    """The kosearch index type of a FAISS index (``other`` when it is none of them)."""
    import faiss

    if isinstance(index, faiss.IndexFlat):
        return "flat"
    if isinstance(index, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf-flat"
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivf-pq"
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        if index.sq.qtype == faiss.ScalarQuantizer.QT_8bit:
            return "ivf-sq8"
    return "other"


def describe(index: faiss.Index) -> str:
    """The factory string of a FAISS index, or its class name when it cannot be derived."""
    try:
        from faiss.contrib.factory_tools import reverse_index_factory

        return str(reverse_index_factory(index))
    except Exception:  # any failure just means "no factory string"
        return type(index).__name__


def empty_like(index: faiss.Index, *, mapped: bool) -> Any:
    """An index of the same type, trained parameters and search knobs as ``index``, with no
    vectors; the vectors are never copied (``mapped``: ``index`` views mapped memory)."""
    import faiss

    kind = index_kind(index)
    if kind == "flat":
        return faiss.IndexFlat(index.d, index.metric_type)
    if kind == "hnsw":
        empty = faiss.IndexHNSWFlat(index.d, index.hnsw.nb_neighbors(1), index.metric_type)
        empty.hnsw.efConstruction = index.hnsw.efConstruction
        empty.hnsw.efSearch = index.hnsw.efSearch
        return empty
    if ivf_part(index) is not None:
        return clone_without_lists(index)
    # clone + reset; FAISS aborts on resetting a clone that views mapped memory
    source = faiss.serialize_index(index) if mapped else None
    empty = faiss.deserialize_index(source) if source is not None else faiss.clone_index(index)
    empty.reset()
    return empty


def clone_without_lists(index: faiss.Index) -> Any:
    """A copy of an IVF index with its quantizer and codec but empty inverted lists.

    The lists are swapped for empty ones while cloning, so the vectors are never copied and
    mapped lists are never written to (FAISS aborts on clearing a mapped vector).
    """
    import faiss

    ivf = faiss.extract_index_ivf(index)
    lists, owned = ivf.invlists, ivf.own_invlists
    empty = faiss.ArrayInvertedLists(ivf.nlist, ivf.code_size)
    ivf.own_invlists = False  # replace_invlists must not free the real lists
    ivf.replace_invlists(empty, False)
    try:
        clone = faiss.clone_index(index)
    finally:
        ivf.replace_invlists(lists, owned)
    clone_ivf = faiss.extract_index_ivf(clone)
    clone_ivf.direct_map = faiss.DirectMap()  # rebuilt by reconstruct() when needed
    clone_ivf.ntotal = clone.ntotal = 0
    return clone
