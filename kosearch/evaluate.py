"""Evaluation data and metrics: BEIR and STS loaders, ranking metrics, STS correlations, run files.

Everything here is a pure function of its inputs; the runners that drive an ``Index`` build on it.
The ranking metrics follow trec_eval (``ndcg_cut``, ``recip_rank``, ``recall``) and the STS figures
follow sentence-transformers' ``EmbeddingSimilarityEvaluator``, so numbers can be compared with
published ones.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from kosearch.errors import DatasetError

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
STS_FILES: tuple[str, ...] = ("pairs.tsv", "pairs.jsonl", "sts-dev.tsv")
_STS_FIELDS = ("sentence1", "sentence2", "score")
_METRIC_HELP = "ndcg@K, mrr@K and recall@K with K a positive integer, e.g. 'ndcg@10'"


# ---------------------------------------------------------------------------------------------
# Loaders


@dataclass(frozen=True)
class BeirDataset:
    """A retrieval test set in the BEIR layout.

    Attributes:
        corpus_path: ``corpus.jsonl`` (or ``corpus.jsonl.gz``) to index; read by the corpus reader.
        queries: Query id -> text, only for queries that have judgments in ``qrels``.
        qrels: Query id -> {corpus id -> graded relevance}; a score <= 0 means not relevant.
        split: The qrels split that was loaded (``qrels/<split>.tsv``).
        unjudged_queries: How many queries of ``queries.jsonl`` were ignored for lack of qrels.
    """

    corpus_path: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    split: str
    unjudged_queries: int = 0


@dataclass(frozen=True)
class StsPairs:
    """Sentence pairs with gold similarity scores (KorSTS: 0 = unrelated ... 5 = equivalent)."""

    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]

    def __len__(self) -> int:
        return len(self.scores)


def load_beir(directory: str | os.PathLike[str], *, split: str = "test") -> BeirDataset:
    """Load a BEIR folder: ``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]`` and ``qrels/<split>.tsv``.

    Queries are JSON objects with ``_id`` (or ``id``) and ``text``. The qrels file holds
    tab-separated ``query-id``, ``corpus-id`` and integer ``score`` columns with an optional header
    line (four-column TREC qrels ``qid iter docid rel`` are read too). Queries without qrels are
    left out and counted in ``unjudged_queries``; the corpus is only located, not read.

    Args:
        directory: The dataset folder.
        split: Which qrels file to use.

    Returns:
        The dataset.

    Raises:
        DatasetError: A file is missing or malformed (the message names the file and line), a
            qrels query id has no query, or the qrels file is empty.

    Example:
        >>> data = load_beir("korquad_v1_retrieval_dev")  # doctest: +SKIP
        >>> len(data.queries), data.corpus_path.name  # doctest: +SKIP
        (2844, 'corpus.jsonl')
    """
    root = Path(directory)
    layout = f"expected corpus.jsonl, queries.jsonl and qrels/{split}.tsv inside"
    if not root.is_dir():
        raise DatasetError(f"no BEIR dataset at '{root}': the folder does not exist ({layout})")
    corpus = _first_file(root, ("corpus.jsonl", "corpus.jsonl.gz"))
    queries_path = _first_file(root, ("queries.jsonl", "queries.jsonl.gz"))
    qrels_path = root / "qrels" / f"{split}.tsv"
    found = {"corpus.jsonl": corpus, "queries.jsonl": queries_path}
    missing = [name for name, file in found.items() if file is None]
    if not qrels_path.is_file():
        missing.append(f"qrels/{split}.tsv{_available_splits(root)}")
    if corpus is None or queries_path is None or missing:
        raise DatasetError(
            f"'{root}' is not a complete BEIR dataset: missing {', '.join(missing)} ({layout})"
        )
    qrels = _read_qrels(qrels_path)
    queries, unjudged = _read_queries(queries_path, qrels)
    orphans = [qid for qid in qrels if qid not in queries]
    if orphans:
        examples = ", ".join(repr(qid) for qid in orphans[:3])
        raise DatasetError(
            f"{qrels_path}: {len(orphans)} query id(s) have no query in {queries_path.name}, "
            f"e.g. {examples}"
        )
    return BeirDataset(corpus, queries, qrels, split, unjudged)


def load_sts(path: str | os.PathLike[str]) -> StsPairs:
    """Load STS sentence pairs from a TSV or JSONL file, or from a folder holding one.

    A ``.tsv`` file needs a header line naming ``sentence1``, ``sentence2`` and ``score`` columns
    in any position, so the original 7-column KorSTS layout (genre, filename, year, id, score,
    sentence1, sentence2) loads as is; fields are split on tabs only and quotes stay literal.
    A ``.jsonl`` file holds objects with those three fields (others are ignored). For a folder,
    the first of ``pairs.tsv``, ``pairs.jsonl`` and ``sts-dev.tsv`` found inside is used.
    Sentences are stripped of surrounding whitespace; blank lines are skipped.

    Args:
        path: The file or folder.

    Returns:
        The pairs, in file order.

    Raises:
        DatasetError: The file is missing, lacks a column (the message lists the columns found),
            has a bad score (file:line) or holds no pairs.

    Example:
        >>> pairs = load_sts("korsts_dev")  # doctest: +SKIP
        >>> len(pairs)  # doctest: +SKIP
        1500
    """
    target = Path(path)
    if target.is_dir():
        found = _first_file(target, STS_FILES)
        if found is None:
            raise DatasetError(
                f"no STS pairs in the folder '{target}' (expected one of: {', '.join(STS_FILES)})"
            )
        target = found
    elif not target.is_file():
        raise DatasetError(f"STS file '{target}' does not exist")
    suffix = target.suffix.lower()
    if suffix == ".jsonl":
        rows = _sts_jsonl_rows(target)
    elif suffix in (".tsv", ".txt"):
        rows = _sts_tsv_rows(target)
    else:
        raise DatasetError(f"cannot read '{target}': unknown STS format (supported: .tsv, .jsonl)")
    pairs = StsPairs([], [], [])
    for where, first, second, raw_score in rows:
        pairs.sentences1.append(first.strip())
        pairs.sentences2.append(second.strip())
        pairs.scores.append(_float_score(raw_score, where))
    if not pairs.scores:
        raise DatasetError(f"{target}: the file has no sentence pairs")
    return pairs


def _first_file(folder: Path, names: Iterable[str]) -> Path | None:
    """The first of ``names`` that is a file inside ``folder``."""
    return next((folder / name for name in names if (folder / name).is_file()), None)


def _available_splits(root: Path) -> str:
    """A hint listing the qrels splits that do exist."""
    folder = root / "qrels"
    splits = sorted(p.stem for p in folder.glob("*.tsv")) if folder.is_dir() else []
    return f" (qrels/ has: {', '.join(splits)})" if splits else ""


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (line number from 1, text), splitting on ``\\n`` only; ``.gz`` is decompressed."""
    opener: Callable[..., Any] = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    where = f"{path}:{number}"
                    raise DatasetError(f"{where}: the line is not valid UTF-8 text") from None
                if number == 1:
                    line = line.removeprefix("\ufeff")
                yield number, line.rstrip("\r\n")
    except (OSError, EOFError, zlib.error) as exc:  # OSError covers gzip.BadGzipFile
        reason = getattr(exc, "strerror", None) or exc
        raise DatasetError(f"cannot read '{path}' ({reason})") from exc


def _json_object(line: str, where: str) -> dict[str, Any]:
    """Parse one JSONL line that must hold an object."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object, found {type(record).__name__}")
    return record


def _names(record: Mapping[str, Any]) -> str:
    """The keys of a JSON object, for messages."""
    return ", ".join(record) or "none"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _int_score(raw: str, where: str) -> int:
    """A relevance grade: an integer, also written as ``2.0``."""
    with contextlib.suppress(ValueError):
        return int(raw)
    value = float(raw) if _is_number(raw) else math.nan
    if not value.is_integer():
        raise DatasetError(f"{where}: relevance score {raw!r} is not an integer")
    return int(value)


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Read ``query-id, corpus-id, score`` rows; a first line with no numeric score is a header."""
    qrels: dict[str, dict[str, int]] = {}
    seen_line = False
    for number, line in _lines(path):
        if not line.strip():
            continue
        fields = [f.strip() for f in (line.split("\t") if "\t" in line else line.split())]
        if not seen_line:
            seen_line = True
            if not _is_number(fields[-1]):
                continue
        if len(fields) == 4:  # TREC qrels: qid iteration docid relevance
            fields = [fields[0], fields[2], fields[3]]
        if len(fields) != 3:
            raise DatasetError(
                f"{path}:{number}: expected 3 tab-separated columns (query-id, corpus-id, score), "
                f"found {len(fields)}"
            )
        if not fields[0] or not fields[1]:
            raise DatasetError(f"{path}:{number}: the query id or corpus id is empty")
        qrels.setdefault(fields[0], {})[fields[1]] = _int_score(fields[2], f"{path}:{number}")
    if not qrels:
        raise DatasetError(f"{path}: the qrels file has no judgments")
    return qrels


def _read_queries(path: Path, qrels: Mapping[str, object]) -> tuple[dict[str, str], int]:
    """Read ``{"_id", "text"}`` lines; return the judged queries and the count of the others."""
    queries: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for number, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        record = _json_object(line, where)
        key = "_id" if "_id" in record else "id"
        qid, text = record.get(key), record.get("text")
        if qid is None or text is None:
            field = "_id" if qid is None else "text"
            raise DatasetError(f"{where}: missing field '{field}' (found: {_names(record)})")
        if isinstance(qid, bool) or not isinstance(qid, str | int):
            raise DatasetError(f"{where}: field '{key}' must be a string, found {qid!r}")
        if not isinstance(text, str):
            raise DatasetError(f"{where}: field 'text' must be a string, found {text!r}")
        qid = str(qid)
        if qid in first_seen:
            first = first_seen[qid]
            raise DatasetError(f"{where}: duplicate query id {qid!r} (first seen at line {first})")
        first_seen[qid] = number
        if qid in qrels:
            queries[qid] = text
    return queries, len(first_seen) - len(queries)


def _sts_tsv_rows(path: Path) -> Iterator[tuple[str, str, str, str]]:
    """Yield (where, sentence1, sentence2, raw score) from a tab-separated file with a header."""
    columns: list[int] | None = None
    for number, line in _lines(path):
        if not line.strip():
            continue
        fields = line.split("\t")
        if columns is None:
            names = [name.strip().lower() for name in fields]
            missing = [f"'{c}'" for c in _STS_FIELDS if c not in names]
            if missing:
                raise DatasetError(
                    f"{path}:{number}: the header has no {', '.join(missing)} column "
                    f"(found: {', '.join(fields[:10])})"
                )
            columns = [names.index(c) for c in _STS_FIELDS]
            continue
        if len(fields) <= max(columns):
            raise DatasetError(
                f"{path}:{number}: expected at least {max(columns) + 1} tab-separated fields, "
                f"found {len(fields)}"
            )
        yield f"{path}:{number}", fields[columns[0]], fields[columns[1]], fields[columns[2]]


def _sts_jsonl_rows(path: Path) -> Iterator[tuple[str, str, str, object]]:
    """Yield (where, sentence1, sentence2, raw score) from JSONL objects."""
    for number, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        record = _json_object(line, where)
        missing = [f"'{c}'" for c in _STS_FIELDS if c not in record]
        if missing:
            fields = ", ".join(missing)
            raise DatasetError(f"{where}: missing field {fields} (found: {_names(record)})")
        first, second = record["sentence1"], record["sentence2"]
        if not isinstance(first, str) or not isinstance(second, str):
            raise DatasetError(f"{where}: 'sentence1' and 'sentence2' must be strings")
        yield where, first, second, record["score"]


def _float_score(raw: object, where: str) -> float:
    """A finite gold similarity score from a number or numeric string."""
    value = math.nan
    if isinstance(raw, int | float | str) and not isinstance(raw, bool):
        with contextlib.suppress(ValueError):
            value = float(raw)
    if not math.isfinite(value):
        raise DatasetError(f"{where}: score {raw!r} is not a finite number")
    return value


# ---------------------------------------------------------------------------------------------
# Ranking metrics, trec_eval conventions: gain = grade, log2 discount, grade > 0 is relevant


def dedupe_ranking(ranked: Sequence[str]) -> list[str]:
    """Keep the first (best) occurrence of each id, so several passages of one document count once.

    Example:
        >>> dedupe_ranking(["d2", "d1", "d2", "d3", "d1"])
        ['d2', 'd1', 'd3']
    """
    return list(dict.fromkeys(ranked))


def _top(ranked: Sequence[str], k: int) -> list[str]:
    """The first ``k`` distinct ids of a ranking."""
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    top: dict[str, None] = {}
    for doc_id in ranked:
        if len(top) == k:
            break
        top.setdefault(doc_id)
    return list(top)


def ndcg_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """nDCG@k as trec_eval's ``ndcg_cut``: gain = grade (negative = 0), discount log2(rank + 1).

    Args:
        ranked: Document ids, best first (duplicates count once, at their best rank).
        qrels: Document id -> relevance grade for this query.
        k: The cut-off.

    Returns:
        DCG of the top k over the DCG of the ideal top k; 0.0 when nothing is relevant.

    Example:
        >>> round(ndcg_at_k(["a", "b"], {"b": 1}, 10), 4)  # (1 / log2 3) / 1
        0.6309
    """
    dcg = sum(max(qrels.get(d, 0), 0) / math.log2(i + 2) for i, d in enumerate(_top(ranked, k)))
    ideal = sorted((grade for grade in qrels.values() if grade > 0), reverse=True)[:k]
    idcg = sum(grade / math.log2(i + 2) for i, grade in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Reciprocal rank of the first relevant (grade > 0) id within the top k, else 0.0.

    Example:
        >>> mrr_at_k(["a", "b", "c"], {"c": 1}, 10)
        0.3333333333333333
    """
    for rank, doc_id in enumerate(_top(ranked, k), start=1):
        if qrels.get(doc_id, 0) > 0:
            return 1.0 / rank
    return 0.0


def recall_at_k(ranked: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Share of the relevant (grade > 0) ids found in the top k; 0.0 when nothing is relevant.

    Example:
        >>> recall_at_k(["a", "b"], {"a": 1, "c": 2}, 10)
        0.5
    """
    top = _top(ranked, k)
    relevant = [d for d, grade in qrels.items() if grade > 0]
    if not relevant:
        return 0.0
    found = set(top)
    return sum(1 for d in relevant if d in found) / len(relevant)


_MetricFn = Callable[[Sequence[str], Mapping[str, int], int], float]
_METRICS: Mapping[str, _MetricFn] = MappingProxyType(
    {"ndcg": ndcg_at_k, "mrr": mrr_at_k, "recall": recall_at_k}
)


def _parse_metric(name: str) -> tuple[_MetricFn, int]:
    """``"ndcg@10"`` -> (ndcg_at_k, 10)."""
    base, sep, cut = str(name).strip().lower().partition("@")
    function = _METRICS.get(base)
    if function is None or not sep or not (cut.isascii() and cut.isdigit()) or int(cut) <= 0:
        raise ValueError(f"unknown metric {name!r}; valid metrics are {_METRIC_HELP}")
    return function, int(cut)


def validate_metrics(metrics: Sequence[str]) -> None:
    """Check metric names before an expensive run.

    Raises:
        ValueError: A name is not ``ndcg@K``, ``mrr@K`` or ``recall@K`` (the message lists them),
            or the list is empty.
    """
    if not metrics:
        raise ValueError(f"no metrics given; valid metrics are {_METRIC_HELP}")
    for name in metrics:
        _parse_metric(name)


def per_query(
    run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], metric: str
) -> dict[str, float]:
    """One metric for every query of ``qrels``; a query missing from ``run`` scores 0.0.

    Args:
        run: Query id -> document ids, best first.
        qrels: Query id -> {document id -> grade}.
        metric: ``ndcg@K``, ``mrr@K`` or ``recall@K``.

    Returns:
        Query id -> value, in the order of ``qrels``.

    Raises:
        ValueError: The metric name is unknown.
    """
    function, k = _parse_metric(metric)
    return {qid: function(run.get(qid, ()), judged, k) for qid, judged in qrels.items()}


def evaluate_run(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    metrics: Sequence[str] = DEFAULT_METRICS,
) -> dict[str, float]:
    """Mean of each metric over ALL queries of ``qrels`` (missing from ``run`` = 0.0).

    Rankings are deduplicated first (a document's best passage stands for it). Queries of
    ``run`` that have no qrels are ignored; a judged query with no relevant document scores 0.0,
    as trec_eval does.

    Args:
        run: Query id -> document ids, best first.
        qrels: Query id -> {document id -> grade}; must not be empty.
        metrics: Names such as ``ndcg@10``, ``mrr@10``, ``recall@100``.

    Returns:
        Metric name (as given) -> mean value in [0, 1].

    Raises:
        ValueError: A metric name is unknown (the message lists the valid ones), or qrels is empty.

    Example:
        >>> evaluate_run({"q1": ["a", "b"]}, {"q1": {"b": 1}, "q2": {"c": 1}}, ["mrr@10"])
        {'mrr@10': 0.25}
    """
    validate_metrics(metrics)
    if not qrels:
        raise ValueError("qrels must hold at least one query")
    parsed = {name: _parse_metric(name) for name in metrics}
    totals = dict.fromkeys(parsed, 0.0)
    for qid, judged in qrels.items():
        ranked = dedupe_ranking(run.get(qid, ()))
        for name, (function, k) in parsed.items():
            totals[name] += function(ranked, judged, k)
    return {name: total / len(qrels) for name, total in totals.items()}


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """Mean, median and 95th percentile (numpy, linear interpolation) of timings, in milliseconds.

    Raises:
        ValueError: No timings were given.

    Example:
        >>> latency_summary([0.001, 0.002, 0.003])
        {'mean_ms': 2.0, 'p50_ms': 2.0, 'p95_ms': 2.9}
    """
    ms = np.asarray(seconds, dtype=np.float64).ravel() * 1000.0
    if ms.size == 0:
        raise ValueError("latency_summary needs at least one timing")
    return {
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
    }


# ---------------------------------------------------------------------------------------------
# STS correlations


def _pairwise_similarities(a: NDArray[Any], b: NDArray[Any]) -> dict[str, NDArray[Any]]:
    """The four similarities of sentence-transformers' ``pairwise_*`` helpers, in the same dtype."""
    # torch.nn.functional.normalize divides by max(norm, 1e-12); the distances are negated so
    # that, like cosine and dot, higher means more similar.
    eps = a.dtype.type(1e-12)
    unit_a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), eps)
    unit_b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), eps)
    return {
        "cosine": (unit_a * unit_b).sum(axis=1),
        "euclidean": -np.linalg.norm(a - b, axis=1),
        "manhattan": -np.abs(a - b).sum(axis=1),
        "dot": (a * b).sum(axis=1),
    }


def sts_correlations(
    emb1: NDArray[Any], emb2: NDArray[Any], gold: Sequence[float]
) -> dict[str, float]:
    """Pearson and Spearman correlations between gold scores and four embedding similarities.

    These are the eight figures Korean SBERT model cards report, computed as sentence-transformers'
    ``EmbeddingSimilarityEvaluator`` does with ``similarity_fn_names=["cosine", "euclidean",
    "manhattan", "dot"]``: cosine of the L2-normalized embeddings, negated euclidean and manhattan
    distances and the dot product of the embeddings as given, in their own precision (float32 for
    model output; half precision is widened to float32), then ``scipy.stats.pearsonr`` and
    ``spearmanr`` against the gold scores. Pass the model's raw output: the evaluator does not
    normalize before the distance and dot figures. A correlation with a constant side is NaN.
    Pearson agrees with the evaluator to about 1e-8; Spearman can differ by ~1e-5 where pairs tie
    up to float32 rounding (e.g. identical sentences), which numpy and torch round differently.

    Args:
        emb1: Embeddings of the first sentences, shape (n, dim).
        emb2: Embeddings of the second sentences, shape (n, dim).
        gold: The n gold similarity scores.

    Returns:
        ``pearson_cosine``, ``spearman_cosine``, ``pearson_euclidean``, ``spearman_euclidean``,
        ``pearson_manhattan``, ``spearman_manhattan``, ``pearson_dot`` and ``spearman_dot``, each
        in [-1, 1].

    Raises:
        ValueError: The shapes disagree or there are fewer than two pairs.

    Example:
        >>> e1 = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
        >>> e2 = np.array([[1, 0], [1, 0], [1, 0]], dtype=np.float32)
        >>> round(sts_correlations(e1, e2, [5.0, 0.0, 2.5])["spearman_cosine"], 6)
        1.0
    """
    from scipy.stats import pearsonr, spearmanr  # lazy: scipy.stats is slow to import

    a, b = _as_float(emb1), _as_float(emb2)
    labels = np.asarray(gold, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape or labels.shape != (a.shape[0],):
        raise ValueError(
            f"expected two (n, dim) embedding arrays and n gold scores, got shapes "
            f"{np.shape(emb1)}, {np.shape(emb2)} and {labels.shape}"
        )
    if a.shape[0] < 2:
        raise ValueError("correlations need at least two sentence pairs")
    figures: dict[str, float] = {}
    for name, scores in _pairwise_similarities(a, b).items():
        constant = bool(np.ptp(labels) == 0 or np.ptp(scores) == 0)
        figures[f"pearson_{name}"] = math.nan if constant else float(pearsonr(labels, scores)[0])
        figures[f"spearman_{name}"] = math.nan if constant else float(spearmanr(labels, scores)[0])
    return figures


def _as_float(embeddings: NDArray[Any]) -> NDArray[Any]:
    """Floats of at least 32 bits, as sentence-transformers' ``_convert_to_float_tensor``."""
    array = np.asarray(embeddings)
    if not np.issubdtype(array.dtype, np.floating) or array.dtype.itemsize < 4:
        return array.astype(np.float32)
    return array


# ---------------------------------------------------------------------------------------------
# Run files


def write_run(
    run: Mapping[str, Sequence[tuple[str, float]]],
    path: str | os.PathLike[str],
    *,
    fmt: Literal["trec", "jsonl"] = "trec",
    tag: str = "kosearch",
) -> None:
    """Write a run (query id -> (document id, score) pairs, best first) atomically.

    ``trec`` writes ``qid Q0 docid rank score tag`` lines (rank from 1), the format trec_eval and
    pytrec_eval read; ``jsonl`` writes one ``{"query_id", "hits": [{"id", "rank", "score"}]}``
    object per query (UTF-8, not ASCII-escaped). The file is written beside its destination and
    moved into place with ``os.replace``; missing parent folders are created.

    Args:
        run: Query id -> hits in rank order.
        path: The output file.
        fmt: ``trec`` or ``jsonl``.
        tag: The run name in the last TREC column (no whitespace).

    Raises:
        DatasetError: A TREC id contains whitespace, or the file cannot be written.
        ValueError: ``fmt`` or ``tag`` is invalid.

    Example:
        >>> write_run({"q1": [("d3", 0.91), ("d7", 0.55)]}, "run.trec")  # doctest: +SKIP
    """
    if fmt not in ("trec", "jsonl"):
        raise ValueError(f"unknown run format {fmt!r}; valid formats are 'trec' and 'jsonl'")
    if not tag or any(ch.isspace() for ch in tag):
        raise ValueError(f"the run tag must be a non-empty word without whitespace, got {tag!r}")
    lines = _trec_lines(run, tag) if fmt == "trec" else _jsonl_lines(run)
    _atomic_write(Path(path), lines)


def _trec_lines(run: Mapping[str, Sequence[tuple[str, float]]], tag: str) -> Iterator[str]:
    for qid, hits in run.items():
        for rank, (doc_id, score) in enumerate(hits, start=1):
            for label, value in (("query", qid), ("document", doc_id)):
                if not value or any(ch.isspace() for ch in value):
                    raise DatasetError(
                        f"cannot write a TREC run: {label} id {value!r} is empty or contains "
                        "whitespace (write JSONL instead)"
                    )
            yield f"{qid} Q0 {doc_id} {rank} {float(score)!r} {tag}"


def _jsonl_lines(run: Mapping[str, Sequence[tuple[str, float]]]) -> Iterator[str]:
    for qid, hits in run.items():
        rows = [{"id": d, "rank": r, "score": float(s)} for r, (d, s) in enumerate(hits, start=1)]
        yield json.dumps({"query_id": qid, "hits": rows}, ensure_ascii=False)


def _atomic_write(path: Path, lines: Iterable[str]) -> None:
    """Write lines to a temporary sibling, then ``os.replace`` it onto ``path``."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(temporary, "w", encoding="utf-8", newline="\n") as handle:
                for line in lines:
                    handle.write(line + "\n")
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise DatasetError(f"cannot write the run file '{path}' ({exc.strerror or exc})") from exc
