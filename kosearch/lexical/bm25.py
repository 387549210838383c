"""BM25 over Korean morphemes: index build, search, and a pickle-free disk format.

Texts become terms through an analyzer (:mod:`kosearch.lexical.analyzers`; by default Kiwi morphemes,
:class:`~kosearch.lexical.analyzers.MorphemeAnalyzer`). Scores are the Lucene variant of BM25
(``bm25s`` method ``"lucene"``)::

    idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))
    score(q, d) = sum over query terms t of  idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))

A query term given twice counts twice. ``bm25s`` builds the per-term score matrix; it is stored
as ``.npy`` (``allow_pickle=False``) beside JSON and searched here, so that rows matching no term
are never returned and ties break by ascending row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from kosearch.errors import ConfigError, IndexFormatError, MissingDependencyError
from kosearch.lexical.analyzers import Analyzer, MorphemeAnalyzer, analyzer_from_config

if TYPE_CHECKING:
    from kosearch.lexical.child_analysis import ChildAnalysis

FORMAT_VERSION = 2  # 2 adds the per-row term ids (terms.npy, terms_indptr.npy) used by updates
METHOD = "lucene"

def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(texts)
    while batch := list(islice(it, size)):
        yield batch


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


def _top_k(scores: NDArray[np.float64], k: int) -> list[tuple[int, float]]:
    """The ``k`` best positive scores, best first, ties by ascending row."""
    rows = np.flatnonzero(scores > 0)
    if rows.size > k:
        values = scores[rows]
        kth = np.partition(values, rows.size - k)[rows.size - k]
        above = rows[values > kth]
        tied = rows[values == kth][: k - above.size]  # flatnonzero is ascending
        rows = np.concatenate([above, tied])
    order = np.lexsort((rows, -scores[rows]))
    return [(int(r), float(scores[r])) for r in rows[order]]


def _analyze(
    texts: Iterable[str],
    analyzer: Analyzer,
    vocab: dict[str, int],
    batch_size: int,
    on_batch: Callable[[int], None] | None,
) -> list[list[int]]:
    """Term ids per text, growing ``vocab`` with new terms."""
    docs: list[list[int]] = []
    for batch in _batches(texts, batch_size):
        for terms in analyzer.tokenize(batch):
            docs.append([vocab.setdefault(t, len(vocab)) for t in terms])
        if on_batch is not None:
            on_batch(len(batch))
    return docs


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
        :mod:`kosearch.lexical.child_analysis`) and a Kiwi analyzer not loaded yet, a :meth:`search` for
        exactly those queries takes the child's terms, so this process never loads Kiwi.
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
        child, terms = self._child_analysis, None
        self._child_analysis = None
        if child is not None:
            if child.texts == queries:
                terms = child.terms(self._analyzer.config())
            child.close()
        return terms if terms is not None else self._analyzer.tokenize(queries)

    def __len__(self) -> int:
        return self._num_docs

    @property
    def updatable(self) -> bool:
        """Whether :meth:`updated` can reuse the stored terms (false for format-1 indexes)."""
        return self._terms is not None

    @property
    def nbytes(self) -> int:
        """Memory held by the score matrix (the per-row terms are memory-mapped, not counted)."""
        return int(self._data.nbytes + self._indices.nbytes + self._indptr.nbytes)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        """The ``k`` best rows for each query.

        Args:
            queries: Query texts; words unknown to the index are ignored.
            k: Results per query (>= 1).

        Returns:
            Per query, ``(row, score)`` pairs best first, ties by ascending row. Rows that match
            no query term are left out, so a query with no known term gets ``[]``.

        Raises:
            ValueError: If ``k < 1``.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        return [self._search_terms(terms, k) for terms in self._analyze_queries(list(queries))]

    def _search_terms(self, terms: list[str], k: int) -> list[tuple[int, float]]:
        ids = [self._vocab[t] for t in terms if t in self._vocab]
        if not ids:
            return []
        starts, ends = self._indptr[ids], self._indptr[np.asarray(ids) + 1]
        rows = np.concatenate([self._indices[s:e] for s, e in zip(starts, ends)])
        weights = np.concatenate([self._data[s:e] for s, e in zip(starts, ends)])
        scores = np.bincount(rows, weights=weights, minlength=self._num_docs)
        return _top_k(scores, k)

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
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        header = {
            "format_version": FORMAT_VERSION,
            **self.config(),
            "num_docs": self._num_docs,
            "num_terms": len(self._vocab),
        }
        text = json.dumps(header, ensure_ascii=False, indent=2)
        (directory / "config.json").write_text(text + "\n", "utf-8")
        terms = sorted(self._vocab, key=self._vocab.__getitem__)
        (directory / "vocab.json").write_text(json.dumps(terms, ensure_ascii=False), "utf-8")
        arrays = {"data": self._data, "indices": self._indices, "indptr": self._indptr}
        if self._terms is not None:
            arrays |= {"terms": self._terms.ids, "terms_indptr": self._terms.indptr}
        for name, array in arrays.items():
            np.save(directory / f"{name}.npy", array, allow_pickle=False)

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        """Read an index written by :meth:`save`.

        Args:
            directory: The directory :meth:`save` wrote.

        Returns:
            The index, with its analyzer rebuilt from the stored config.

        Raises:
            IndexFormatError: If a file is missing, corrupt, inconsistent or from a newer format.
        """
        directory = Path(directory)
        header = _read_header(directory / "config.json")
        terms = _read_vocab(directory / "vocab.json", header["num_terms"])
        arrays = _read_arrays(directory, header["num_docs"], header["num_terms"])
        analyzer = _analyzer_of(header, directory / "config.json")
        vocab = {t: i for i, t in enumerate(terms)}
        doc_terms = _read_doc_terms(directory, header["num_docs"], header["num_terms"])
        return cls(
            analyzer, vocab, arrays, header["num_docs"], k1=header["k1"], b=header["b"],
            terms=doc_terms,
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
    path = Path(directory) / "config.json"
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


def _read_npy(path: Path, kind: str) -> NDArray[Any]:
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise IndexFormatError(f"lexical index file {path} is missing.") from None
    except (OSError, ValueError, EOFError) as e:
        raise IndexFormatError(f"lexical index file {path} is not a plain .npy array ({e}).") from e
    if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype.kind != kind:
        raise IndexFormatError(f"lexical index file {path} does not hold a 1-d {kind!r} array.")
    return array


def _read_arrays(
    directory: Path, num_docs: int, num_terms: int
) -> tuple[NDArray[np.float32], NDArray[np.int32], NDArray[np.int64]]:
    data = _read_npy(directory / "data.npy", "f").astype(np.float32, copy=False)
    indices = _read_npy(directory / "indices.npy", "i").astype(np.int32, copy=False)
    indptr = _read_npy(directory / "indptr.npy", "i").astype(np.int64, copy=False)
    problem = None
    if indptr.size != num_terms + 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        problem = "indptr.npy does not match the vocabulary"
    elif data.size != indices.size or indptr[-1] != data.size:
        problem = "data.npy, indices.npy and indptr.npy disagree in length"
    elif indices.size and (indices.min() < 0 or indices.max() >= num_docs):
        problem = "indices.npy refers to rows outside the index"
    elif not np.all(np.isfinite(data)):
        problem = "data.npy holds non-finite scores"
    if problem:
        raise IndexFormatError(f"the lexical index in {directory} is corrupt: {problem}.")
    return data, indices, indptr


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
        or (ids.size and (int(ids.max()) >= num_terms or int(ids.min()) < 0))
    ):
        raise IndexFormatError(
            f"the lexical index in {directory} is corrupt: terms.npy and terms_indptr.npy do not "
            "match the index."
        )
    return DocTerms(ids, indptr)
