"""Running evaluations over kosearch: STS correlations of a model, retrieval quality of an index.

The metrics themselves are pure functions in :mod:`kosearch.eval.metrics`; this module drives an
encoder or an :class:`~kosearch.index.Index` over a dataset and times it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kosearch.errors import ConfigError
from kosearch.eval.datasets import BeirDataset, StsPairs
from kosearch.eval.metrics import evaluate_run, latency_summary, sts_correlations
from kosearch.storage.layout import MANIFEST_FILE
from kosearch.types import Mode

if TYPE_CHECKING:
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.index import Index

log = logging.getLogger(__name__)

RERANK_SUFFIX = "+rerank"
STS_ORDER = (
    "pearson_cosine", "spearman_cosine", "pearson_euclidean", "spearman_euclidean",
    "pearson_manhattan", "spearman_manhattan", "pearson_dot", "spearman_dot",
)


def evaluate_sts(
    encoder: SentenceTransformerEncoder, pairs: StsPairs, *, progress: bool = False
) -> dict[str, float]:
    """The eight model-card figures (Pearson/Spearman × cosine/euclidean/manhattan/dot).

    Both sentences get the model's symmetric (STS) prompt: none for SBERT models, ``query: ``
    for the e5 family (see :attr:`SentenceTransformerEncoder.sts_prompt`).
    """
    import numpy as np
    from tqdm.auto import tqdm

    texts = [*pairs.sentences1, *pairs.sentences2]
    step = 256
    with tqdm(total=len(texts), desc="encoding sentences", unit=" sentences", file=sys.stderr,
              disable=not progress, dynamic_ncols=True) as bar:
        parts = []
        for start in range(0, len(texts), step):
            parts.append(encoder.encode_symmetric(texts[start : start + step]))
            bar.update(len(parts[-1]))
    embeddings = np.vstack(parts)
    emb1, emb2 = embeddings[: len(pairs)], embeddings[len(pairs) :]
    figures = sts_correlations(emb1, emb2, pairs.scores)
    return {name: figures[name] for name in STS_ORDER}


@dataclass(frozen=True, slots=True)
class RetrievalResult:
    """Quality and latency of one search setting over a dataset."""

    label: str
    metrics: dict[str, float]
    latency: dict[str, float]
    run: dict[str, list[tuple[str, float]]] = field(repr=False)


def parse_modes(spec: str, has_reranker: bool) -> list[str]:
    """``"dense,hybrid+rerank"`` -> validated labels; ``+rerank`` needs a reranker."""
    labels = [part.strip() for part in spec.split(",") if part.strip()]
    if not labels:
        raise ConfigError("--compare needs at least one mode, e.g. dense,lexical,hybrid")
    for label in labels:
        base = label.removesuffix(RERANK_SUFFIX)
        if base not in {m.value for m in Mode}:
            raise ConfigError(
                f"unknown mode {label!r} in --compare; use dense, lexical or hybrid, "
                f"optionally with {RERANK_SUFFIX}"
            )
        if label.endswith(RERANK_SUFFIX) and not has_reranker:
            raise ConfigError(f"{label!r} needs a cross-encoder: add --rerank MODEL")
    return labels


def evaluate_retrieval(
    index: Index,
    dataset: BeirDataset,
    labels: Sequence[str],
    *,
    cutoff: int = 10,
    depth: int = 100,
    rerank: Any = None,
    rerank_top: int = 30,
    progress: bool = False,
) -> list[RetrievalResult]:
    """Search every judged query one at a time in each setting; score and time it.

    Queries are encoded once, one by one (so each query's latency includes its own encoding),
    and the vectors are reused by every setting. Several passages of one document count once:
    searches return one hit per document.
    """
    qids = sorted(dataset.qrels)
    texts = [dataset.queries[q] for q in qids]
    needs_dense = any(not label.startswith(Mode.LEXICAL.value) for label in labels)
    vectors, encode_s = _encode_one_by_one(index, texts, progress) if needs_dense else (None, None)
    metrics = (f"ndcg@{cutoff}", f"mrr@{cutoff}", f"recall@{cutoff}", f"recall@{depth}")
    results = []
    for label in labels:
        mode = label.removesuffix(RERANK_SUFFIX)
        reranker = rerank if label.endswith(RERANK_SUFFIX) else None
        run: dict[str, list[tuple[str, float]]] = {}
        seconds: list[float] = []
        for i, (qid, text) in enumerate(zip(qids, texts)):
            start = time.perf_counter()
            hits = index.search_batch(
                [text], depth, mode=mode, rerank=reranker, rerank_top=rerank_top,
                query_vectors=None if vectors is None or mode == "lexical" else vectors[i : i + 1],
            )[0]
            elapsed = time.perf_counter() - start
            seconds.append(elapsed + (encode_s[i] if encode_s and mode != "lexical" else 0.0))
            run[qid] = [(hit.id, hit.score) for hit in hits]
        ranked = {qid: [doc for doc, _ in hits] for qid, hits in run.items()}
        results.append(RetrievalResult(
            label, evaluate_run(ranked, dataset.qrels, metrics), latency_summary(seconds), run
        ))
    return results


def _encode_one_by_one(index: Index, texts: list[str], progress: bool) -> tuple[Any, list[float]]:
    import numpy as np
    from tqdm.auto import tqdm

    index.encoder  # noqa: B018 - load the model before timing
    rows, seconds = [], []
    for text in tqdm(texts, desc="encoding queries", unit=" queries", file=sys.stderr,
                     disable=not progress, dynamic_ncols=True):
        start = time.perf_counter()
        rows.append(index.encode_queries([text]))
        seconds.append(time.perf_counter() - start)
    return np.vstack(rows), seconds


def cache_key(corpus: Path, model_fingerprint: str, model_name: str, lexical: bool) -> str:
    """A short key naming an evaluation index: corpus bytes, model weights, settings."""
    digest = hashlib.sha256()
    with open(corpus, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    settings = {"model": model_fingerprint, "name": Path(model_name).name, "lexical": lexical}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def default_cache_dir() -> Path:
    """``$KOSEARCH_CACHE``, else ``$XDG_CACHE_HOME/kosearch``, else ``~/.cache/kosearch``."""
    from kosearch.encoding.onnx_runtime import cache_home

    return cache_home()


def cached_index(
    dataset: BeirDataset, encoder: Any, cache_dir: Path, *, progress: bool = False
) -> Index:
    """An index of the dataset's corpus, built once per corpus and model, then reused."""
    from kosearch.errors import KosearchError
    from kosearch.index import Index

    precision = getattr(encoder, "precision", "fp32")
    fingerprint = encoder.fingerprint + ("" if precision == "fp32" else f"/{precision}")
    key = cache_key(dataset.corpus_path, fingerprint, encoder.name, True)
    path = cache_dir / "eval" / key
    if (path / MANIFEST_FILE).is_file():
        try:
            index = Index.load(path, encoder=encoder)
            log.info("using the cached evaluation index %s", path)
            return index
        except KosearchError as e:
            log.warning("rebuilding the cached evaluation index %s (%s)", path, e)
    log.info("building an evaluation index in %s (reused next time)", path)
    return Index.build(dataset.corpus_path, path, encoder=encoder, progress=progress)


def run_path(path: Path, label: str, several: bool) -> Path:
    """Where one setting's run goes: ``run.trec`` -> ``run.hybrid.trec`` when comparing."""
    if not several:
        return path
    safe = label.replace("+", "-")
    return path.with_name(f"{path.stem}.{safe}{path.suffix}")
