"""BM25 over Korean morphemes: the index, its build, update and search.

Texts become terms through an analyzer (:mod:`kosearch.lexical.analyzers`; by default Kiwi
morphemes, :class:`~kosearch.lexical.analyzers.MorphemeAnalyzer`). Scores are the Lucene variant
of BM25 (``bm25s`` method ``"lucene"``)::

    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    score(q, d) = sum over query terms t of  idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))

A query term given twice counts twice. ``bm25s`` builds the per-term score matrix; it is stored
as ``.npy`` (``allow_pickle=False``) beside JSON (:mod:`kosearch.lexical.format`) and searched
here, so that rows matching no term are never returned and ties break by ascending row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from kosearch._batched import batched
from kosearch.errors import IndexFormatError, MissingDependencyError
from kosearch.lexical.analyzers import Analyzer, MorphemeAnalyzer, query_terms
from kosearch.lexical.format import (
    METHOD,
    DocTerms,
    mapped_region,
    read_index,
    release_pages,
    write_index,
)

#: A query whose terms have fewer than ``num_docs / SPARSE_RATIO`` postings sums its scores
#: over the rows it matches only, instead of over an array of every row (80 MB at 10M rows).
SPARSE_RATIO = 16

if TYPE_CHECKING:
    from kosearch.lexical.child_analysis import ChildAnalysis


def _score_matrix(
    docs: list[list[int]], n_terms: int, k1: float, b: float
) -> tuple[NDArray[np.float32], NDArray[np.int32], NDArray[np.int64]]:
    """Per-term BM25 contributions as CSC arrays (column = term, row = document), via bm25s."""
    if not docs or n_terms == 0:
        return (
            np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(n_terms + 1, np.int64)
        )
    try:
        import bm25s
    except ImportError as e:
        raise MissingDependencyError(
            "BM25 indexing needs the bm25s package; install it with: pip install bm25s"
        ) from e
    model = bm25s.BM25(k1=k1, b=b, method=METHOD)
    scores = model.build_index_from_ids(list(range(n_terms)), docs, show_progress=False)
    return (
        np.ascontiguousarray(scores["data"], dtype=np.float32),
        np.ascontiguousarray(scores["indices"], dtype=np.int32),
        np.ascontiguousarray(scores["indptr"], dtype=np.int64),
    )


def _top_k(
    rows: NDArray[np.int64], scores: NDArray[np.float64], k: int
) -> list[tuple[int, float]]:
    """The ``k`` best positive ``scores`` of ``rows`` (ascending), best first, ties by row."""
    positive = scores > 0
    rows, scores = rows[positive], scores[positive]
    if rows.size > k:
        kth = np.partition(scores, rows.size - k)[rows.size - k]
        keep = scores > kth
        keep[np.flatnonzero(scores == kth)[: k - int(keep.sum())]] = True  # the lowest rows
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))
    return [(int(r), float(s)) for r, s in zip(rows[order], scores[order])]


def _best(
    found: tuple[NDArray[np.int64], NDArray[np.float64]] | None, k: int,
    allowed: NDArray[np.bool_] | None,
) -> list[tuple[int, float]]:
    """The ``k`` best of ``found`` (matching rows and their scores, from
    :meth:`LexicalIndex._scores`) whose row ``allowed`` admits; zeroes the others' scores."""
    if found is None:
        return []
    hit, scores = found
    if allowed is not None:
        scores[~allowed[hit]] = 0.0  # _top_k keeps positive scores only
    return _top_k(hit, scores, k)


def _accumulate(
    rows: NDArray[np.int32], weights: NDArray[np.float32], num_docs: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The summed ``weights`` of each distinct row (ascending rows).

    Few postings (rare terms, the usual query) are summed over their distinct rows only; many
    are summed into one array over all rows, cheaper than sorting them. Either way a row's
    weights are added in the same order, so the scores are the same to the last bit.
    """
    if rows.size * SPARSE_RATIO < num_docs:
        distinct, inverse = np.unique(rows, return_inverse=True)
        return distinct.astype(np.int64), np.bincount(inverse, weights=weights,
                                                      minlength=distinct.size)
    scores = np.bincount(rows, weights=weights, minlength=num_docs)
    hit = np.flatnonzero(scores)
    return hit, scores[hit]


def _scores_of(
    hit: NDArray[np.int64], scores: NDArray[np.float64], rows: NDArray[np.int64]
) -> NDArray[np.float64]:
    """The scores of ``rows`` given the matching rows ``hit`` (ascending); 0 where unmatched."""
    if not hit.size:
        return np.zeros(rows.size)
    at = np.minimum(np.searchsorted(hit, rows), hit.size - 1)
    return np.where(hit[at] == rows, scores[at], 0.0)


def _analyze(
    texts: Iterable[str],
    analyzer: Analyzer,
    vocab: dict[str, int],
    batch_size: int,
    on_batch: Callable[[int], None] | None,
) -> list[list[int]]:
    """Term ids per text, growing ``vocab`` with new terms."""
    docs: list[list[int]] = []
    for batch in batched(texts, batch_size):
        for terms in analyzer.tokenize(batch):
            docs.append([vocab.setdefault(t, len(vocab)) for t in terms])
        if on_batch is not None:
            on_batch(len(batch))
    return docs


class LexicalIndex:
    """A BM25 index over analyzed passages; row ``i`` is the ``i``-th text given to :meth:`build`.

    Create one with :meth:`build` or :meth:`load`; the constructor takes the internal arrays.

    Example:
        >>> index = LexicalIndex.build(["서울에서는 비가 온다", "부산은 맑다"])
        >>> index.search(["서울 날씨"], k=5)[0][0][0]
        0
    """

    def __init__(
        self,
        analyzer: Analyzer,
        vocab: dict[str, int],
        arrays: tuple[NDArray[np.float32], NDArray[np.int32], NDArray[np.int64]],
        num_docs: int,
        *,
        k1: float,
        b: float,
        terms: DocTerms | None = None,
    ) -> None:
        self._analyzer = analyzer
        self._vocab = vocab
        self._data, self._indices, self._indptr = arrays
        self._num_docs = num_docs
        self._k1 = k1
        self._b = b
        self._terms = terms
        self._child_analysis: ChildAnalysis | None = None  # queries being analyzed by a child
        self._last_terms: tuple[list[str], list[list[str]]] | None = None  # the last queries'

    @classmethod
    def build(
        cls,
        texts: Sequence[str] | Iterable[str],
        *,
        analyzer: Analyzer | None = None,
        k1: float = 1.2,
        b: float = 0.75,
        batch_size: int = 4096,
        on_batch: Callable[[int], None] | None = None,
    ) -> LexicalIndex:
        """Analyze ``texts`` batch by batch and build the BM25 index.

        Only term ids are kept in memory, never the texts themselves.

        Args:
            texts: The passages, in row order (any iterable; consumed once).
            analyzer: Defaults to ``MorphemeAnalyzer()``.
            k1: BM25 term-frequency saturation (>= 0).
            b: BM25 length normalization, in [0, 1].
            batch_size: Texts analyzed per call to the analyzer.
            on_batch: Called after each batch with the number of texts in it (progress bars).

        Returns:
            The index.

        Raises:
            ValueError: If ``k1``, ``b`` or ``batch_size`` is out of range.
            MissingDependencyError: If kiwipiepy or bm25s is not installed.
        """
        if not k1 >= 0 or not 0 <= b <= 1:
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        analyzer = analyzer if analyzer is not None else MorphemeAnalyzer()
        vocab: dict[str, int] = {}
        docs = _analyze(texts, analyzer, vocab, batch_size, on_batch)
        return cls._scored(analyzer, vocab, docs, k1=k1, b=b)

    @classmethod
    def _scored(
        cls, analyzer: Analyzer, vocab: dict[str, int], docs: list[list[int]], *, k1: float,
        b: float,
    ) -> LexicalIndex:
        arrays = _score_matrix(docs, len(vocab), k1, b)
        return cls(analyzer, vocab, arrays, len(docs), k1=k1, b=b, terms=DocTerms.from_lists(docs))

    def updated(
        self,
        keep: Sequence[int] | NDArray[np.integer[Any]],
        texts: Iterable[str],
        *,
        analyzer: Analyzer | None = None,
        batch_size: int = 4096,
        on_batch: Callable[[int], None] | None = None,
    ) -> LexicalIndex:
        """A new index over the rows ``keep`` (in that order) followed by ``texts``.

        ``analyzer`` replaces this index's own for ``texts`` (e.g. one sharing a loaded Kiwi); it
        must have the same config, or the terms would not match.

        Kept rows are not analyzed again: their stored term ids are reused, and only ``texts``
        go through the analyzer. Every score is recomputed, since BM25 depends on the whole
        collection (document frequencies, average length). The vocabulary only grows, so the
        term ids of kept rows stay valid.

        Raises:
            IndexFormatError: If this index was saved without per-row terms (format 1); rebuild it.
            IndexError: If a row in ``keep`` is out of range.
        """
        if self._terms is None:
            raise IndexFormatError(
                "this lexical index was written by an older kosearch without per-passage terms, "
                "so it cannot be updated; rebuild the index"
            )
        if analyzer is None:
            analyzer = self._analyzer
        elif analyzer.config() != self._analyzer.config():
            raise ValueError("the analyzer differs from the one this index was built with")
        vocab = dict(self._vocab)
        docs = self._terms.lists(keep, self._num_docs)
        docs += _analyze(texts, analyzer, vocab, batch_size, on_batch)
        return self._scored(self._analyzer, vocab, docs, k1=self._k1, b=self._b)

    @property
    def analyzer(self) -> Analyzer:
        """The analyzer used for passages and queries."""
        return self._analyzer

    def warm_up(self, analysis: ChildAnalysis | None = None) -> None:
        """Get ready for a search soon; a no-op for analyzers that need no loading.

        With ``analysis`` (a child process analyzing the queries about to be searched, see
        :mod:`kosearch.lexical.child_analysis`) and a Kiwi analyzer not loaded yet, a
        :meth:`search` for exactly those queries takes the child's terms, so this process never
        loads Kiwi.
        Otherwise Kiwi starts loading in a background thread.
        """
        if getattr(self._analyzer, "loaded", True):
            if analysis is not None:
                analysis.close()
            return
        if analysis is not None:
            if self._child_analysis is not None:
                self._child_analysis.close()
            self._child_analysis = analysis
            return
        if self._child_analysis is None:
            self._analyzer.warm_up()  # type: ignore[attr-defined]

    def _analyze_queries(self, queries: list[str]) -> list[list[str]]:
        """The query terms of ``queries``: those of the last call again for the same queries
        (a hybrid search looks them up in several passes), else the child's, else analyzed
        here."""
        if self._last_terms is not None and self._last_terms[0] == queries:
            return self._last_terms[1]
        child, terms = self._child_analysis, None
        self._child_analysis = None  # it served this search (it stops once nothing holds it)
        if child is not None and child.texts == queries:
            terms = child.terms(self._analyzer.config())
        if terms is None:
            terms = query_terms(self._analyzer, queries)
        self._last_terms = (list(queries), terms)
        return terms

    def __len__(self) -> int:
        return self._num_docs

    @property
    def updatable(self) -> bool:
        """Whether :meth:`updated` can reuse the stored terms (false for format-1 indexes)."""
        return self._terms is not None

    @property
    def mapped(self) -> bool:
        """Whether the score matrix is memory-mapped (``load(mmap=True)``), not in memory."""
        return mapped_region(self._data) is not None

    @property
    def nbytes(self) -> int:
        """Memory held by the score matrix (what is memory-mapped is not counted)."""
        matrix = 0 if self.mapped else self._data.nbytes + self._indices.nbytes
        return int(matrix + self._indptr.nbytes)

    def search(
        self, queries: Sequence[str], k: int, *, allowed: NDArray[np.bool_] | None = None
    ) -> list[list[tuple[int, float]]]:
        """The ``k`` best rows for each query.

        Args:
            queries: Query texts; words unknown to the index are ignored.
            k: Results per query (>= 1).
            allowed: Only rows where this mask is true are scored (a metadata filter); the
                mask is applied before the top-k, so ``k`` allowed rows come back when ``k``
                allowed rows match a query term.

        Returns:
            Per query, ``(row, score)`` pairs best first, ties by ascending row. Rows that match
            no query term are left out, so a query with no known term gets ``[]``.

        Raises:
            ValueError: If ``k < 1``.
        """
        self._check_request(k, allowed)
        return [self._search_terms(terms, k, allowed)
                for terms in self._analyze_queries(list(queries))]

    def search_scored(
        self,
        queries: Sequence[str],
        k: int,
        rows: Sequence[Sequence[int]],
        *,
        allowed: NDArray[np.bool_] | None = None,
    ) -> list[tuple[list[tuple[int, float]], NDArray[np.float64]]]:
        """:meth:`search`, plus the BM25 score of every row in ``rows[i]`` for query ``i``.

        Each query is analyzed once. A row that matches no query term scores 0; ``allowed``
        limits the top-k only (the given rows are scored whatever the mask says).

        Raises:
            ValueError: If ``k < 1``, the mask does not cover the index, ``rows`` does not hold
                one sequence per query, or a row is out of range.
        """
        self._check_request(k, allowed)
        if len(rows) != len(queries):
            raise ValueError(f"got {len(rows)} row lists for {len(queries)} queries")
        out = []
        for terms, wanted in zip(self._analyze_queries(list(queries)), rows):
            picked = np.asarray(wanted, dtype=np.int64)
            if picked.size and (picked.min() < 0 or picked.max() >= self._num_docs):
                raise ValueError(f"rows must be in [0, {self._num_docs}), got {wanted}")
            found = self._scores(terms)
            given = np.zeros(picked.size) if found is None else _scores_of(*found, picked)
            out.append((_best(found, k, allowed), given))  # after given: _best masks in place
        return out

    def _check_request(self, k: int, allowed: NDArray[np.bool_] | None) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if allowed is not None and len(allowed) != self._num_docs:
            raise ValueError(f"the mask covers {len(allowed)} rows, the index {self._num_docs}")

    def _scores(
        self, terms: list[str]
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]] | None:
        """The rows matching ``terms`` (ascending) and their scores; None when no term is in
        the vocabulary."""
        ids = [self._vocab[t] for t in terms if t in self._vocab]
        if not ids:
            return None
        starts, ends = self._indptr[ids], self._indptr[np.asarray(ids) + 1]
        rows = np.concatenate([self._indices[s:e] for s, e in zip(starts, ends)])
        weights = np.concatenate([self._data[s:e] for s, e in zip(starts, ends)])
        release_pages(self._data, self._indices)  # rows and weights are copies
        return _accumulate(rows, weights, self._num_docs)

    def _search_terms(
        self, terms: list[str], k: int, allowed: NDArray[np.bool_] | None = None
    ) -> list[tuple[int, float]]:
        return _best(self._scores(terms), k, allowed)

    def idf(self, terms: Sequence[str]) -> list[float]:
        """The BM25 weight ``idf(t)`` of each term (0.0 for a term no passage holds)."""
        out = []
        for term in terms:
            tid = self._vocab.get(term)
            df = 0 if tid is None else int(self._indptr[tid + 1] - self._indptr[tid])
            out.append(0.0 if df == 0 else
                       float(np.log1p((self._num_docs - df + 0.5) / (df + 0.5))))
        return out

    def config(self) -> dict[str, Any]:
        """The settings for the index manifest: tokenizer config, ``k1``, ``b`` and ``method``."""
        tokenizer = self._analyzer.config()
        return {"tokenizer": tokenizer, "k1": self._k1, "b": self._b, "method": METHOD}

    def save(self, directory: Path) -> None:
        """Write the index into ``directory`` (created if needed): JSON and ``.npy`` files only.

        The caller makes the write atomic (temporary directory + ``os.replace``).

        Args:
            directory: Target directory; existing files of the same names are overwritten.
        """
        arrays = {"data": self._data, "indices": self._indices, "indptr": self._indptr}
        if self._terms is not None:
            arrays |= {"terms": self._terms.ids, "terms_indptr": self._terms.indptr}
        write_index(Path(directory), self.config(), self._vocab, arrays, self._num_docs)

    @classmethod
    def load(cls, directory: Path, *, mmap: bool = False) -> LexicalIndex:
        """Read an index written by :meth:`save`.

        Args:
            directory: The directory :meth:`save` wrote.
            mmap: Memory-map the score matrix instead of reading it (a served index: a search
                pages in the columns of its query terms only).

        Returns:
            The index, with its analyzer rebuilt from the stored config.

        Raises:
            IndexFormatError: If a file is missing, corrupt, inconsistent or from a newer format.
        """
        stored = read_index(Path(directory), mmap=mmap)
        return cls(
            stored.analyzer, stored.vocab, stored.arrays, stored.num_docs, k1=stored.k1,
            b=stored.b, terms=stored.terms,
        )
