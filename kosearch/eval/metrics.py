"""Ranking metrics, STS correlations and run files: pure functions for ``kosearch eval``.

The ranking metrics follow trec_eval (``ndcg_cut``, ``recip_rank``, ``recall``) and the STS figures
follow sentence-transformers' ``EmbeddingSimilarityEvaluator``, so numbers can be compared with
published ones. Dataset loaders live in :mod:`kosearch.eval.datasets`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from kosearch.errors import DatasetError
from kosearch.eval.datasets import BeirDataset, StsPairs, load_beir, load_sts
from kosearch.storage.atomic import atomic_write_lines

__all__ = [
    "DEFAULT_METRICS", "BeirDataset", "StsPairs", "dedupe_ranking", "evaluate_run",
    "latency_summary", "load_beir", "load_sts", "mrr_at_k", "ndcg_at_k", "per_query",
    "recall_at_k", "sts_correlations", "validate_metrics", "write_run",
]

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@10", "recall@100")
_METRIC_HELP = "ndcg@K, mrr@K and recall@K with K a positive integer, e.g. 'ndcg@10'"

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
    _write_run_file(Path(path), lines)


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


def _write_run_file(path: Path, lines: Iterable[str]) -> None:
    """Write the run file atomically; a disk error becomes a DatasetError naming it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_lines(path, lines)
    except OSError as exc:
        raise DatasetError(f"cannot write the run file '{path}' ({exc.strerror or exc})") from exc
