"""Benchmark kosearch's lexical (BM25) search: quality per analyzer, and speed at scale.

Quality (KorQuAD 1.0 dev retrieval, BEIR layout; passages indexed as ``title + "\\n" + text``)::

    .venv/bin/python bench/lexical.py quality --data /work/shared/data/korquad_v1_retrieval_dev

Performance (NSMC reviews: tokenization throughput per Kiwi thread count, build time, query
latency over review texts used as queries, index size on disk)::

    .venv/bin/python bench/lexical.py perf \\
        --corpus /work/shared/data/nsmc_reviews_corpus/corpus.jsonl --limit 200000 --workers 1,2

Metrics come from pytrec_eval (``ndcg_cut.10``, ``recall.10``, ``recall.100``, and ``recip_rank``
over the top 10 for MRR@10). Runs are given rank-derived scores so trec_eval's own tie-breaking
cannot reorder kosearch's ranking.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from kosearch.lexical.analyzers import (
    KIWI_TAGS,
    Analyzer,
    CharBigramAnalyzer,
    MorphemeAnalyzer,
    WhitespaceAnalyzer,
)
from kosearch.lexical.bm25 import LexicalIndex

NOUNS = frozenset("NNG NNP NNB NR NP".split())
STEMS = NOUNS | {"VV", "VA"}
CONTENT = STEMS | {"XR", "SL", "SH", "SN"}
# Everything but particles (J*), endings (E*), symbols (S*, except SL/SH/SN) and Kiwi's
# detached codas/saisiot (Z_*): adds adverbs, determiners, copula, auxiliaries and affixes.
NON_FUNCTIONAL = frozenset(
    t for t in KIWI_TAGS if not t.startswith(("J", "E", "S", "Z_"))
) | {"SL", "SH", "SN"}

TAG_SETS: dict[str, frozenset[str]] = {
    "nouns": NOUNS,
    "nouns+stems": STEMS,
    "content": CONTENT,
    "content-NNB": CONTENT - {"NNB"},
    "all-nonfunctional": NON_FUNCTIONAL,
}


def _analyzer(name: str) -> Analyzer:
    if name == "whitespace":
        return WhitespaceAnalyzer()
    if name == "char_bigram":
        return CharBigramAnalyzer()
    return MorphemeAnalyzer(TAG_SETS[name.removeprefix("kiwi:")])


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8") as f:
        next(f)
        for line in f:
            qid, did, score = line.rstrip("\n").split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
    return qrels


def _evaluate(
    qrels: dict[str, dict[str, int]], run: dict[str, list[str]]
) -> dict[str, float]:
    import pytrec_eval

    def as_run(depth: int) -> dict[str, dict[str, float]]:
        return {
            q: {d: float(depth - i) for i, d in enumerate(docs[:depth])} for q, docs in run.items()
        }

    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10", "recall.100"})
    top10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    per_q = full.evaluate(as_run(100))
    mrr = top10.evaluate(as_run(10))
    # Queries with no hit at all are absent from the run; they count as zero.
    n = len(qrels)
    return {
        "nDCG@10": sum(v["ndcg_cut_10"] for v in per_q.values()) / n,
        "R@10": sum(v["recall_10"] for v in per_q.values()) / n,
        "MRR@10": sum(v["recip_rank"] for v in mrr.values()) / n,
        "R@100": sum(v["recall_100"] for v in per_q.values()) / n,
    }


def quality(args: argparse.Namespace) -> None:
    data = Path(args.data)
    docs = list(_read_jsonl(data / "corpus.jsonl"))
    doc_ids = [d["_id"] for d in docs]
    texts = [f"{d.get('title', '')}\n{d['text']}" for d in docs]
    queries = list(_read_jsonl(data / "queries.jsonl"))
    qrels = _read_qrels(data / "qrels" / "test.tsv")
    queries = [q for q in queries if q["_id"] in qrels]
    print(f"{len(texts)} passages, {len(queries)} queries", file=sys.stderr)
    print("| analyzer | nDCG@10 | R@10 | MRR@10 | R@100 | vocab | build s | query ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.analyzers.split(","):
        t0 = time.perf_counter()
        index = LexicalIndex.build(texts, analyzer=_analyzer(name), k1=args.k1, b=args.b)
        t1 = time.perf_counter()
        results = index.search([q["text"] for q in queries], k=100)
        t2 = time.perf_counter()
        run = {q["_id"]: [doc_ids[r] for r, _ in hits] for q, hits in zip(queries, results) if hits}
        m = _evaluate(qrels, run)
        vocab = len(index._vocab)  # noqa: SLF001  (bench only)
        print(
            f"| {name} | {m['nDCG@10']:.4f} | {m['R@10']:.4f} | {m['MRR@10']:.4f}"
            f" | {m['R@100']:.4f}"
            f" | {vocab} | {t1 - t0:.1f} | {1000 * (t2 - t1) / len(queries):.2f} |",
            flush=True,
        )


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class _Replay:
    """Hands back pre-computed batches during build, then analyzes queries for real."""

    def __init__(self, batches: list[list[list[str]]], real: MorphemeAnalyzer) -> None:
        self._batches = iter(batches)
        self._real = real

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        batch = next(self._batches, None)
        return batch if batch is not None else self._real.tokenize(texts)

    def config(self) -> dict[str, Any]:
        return self._real.config()


def _time_tokenize(texts: list[str], analyzer: MorphemeAnalyzer, batch: int) -> tuple[float, list]:
    analyzer.tokenize(["워밍업"])  # Kiwi loads its model on first use
    t0 = time.perf_counter()
    out = [analyzer.tokenize(texts[i : i + batch]) for i in range(0, len(texts), batch)]
    return time.perf_counter() - t0, out


def perf(args: argparse.Namespace) -> None:
    texts = [r["text"] for r in islice(_read_jsonl(Path(args.corpus)), args.limit)]
    print(f"{len(texts)} documents, {sum(map(len, texts)) / len(texts):.1f} chars avg")
    sample = texts[: args.tokenize_sample]
    for workers in (int(w) for w in args.workers.split(",")):
        dt, _ = _time_tokenize(sample, MorphemeAnalyzer(num_workers=workers), args.batch_size)
        rate = len(sample) / dt
        print(f"tokenize num_workers={workers}: {rate:,.0f} docs/s ({len(sample)} docs)")
    real = MorphemeAnalyzer()
    dt, batches = _time_tokenize(texts, real, args.batch_size)
    print(f"tokenize all {len(texts)} docs, num_workers=None (all cores): {dt:.1f} s, "
          f"{len(texts) / dt:,.0f} docs/s")
    t0 = time.perf_counter()
    index = LexicalIndex.build(texts, analyzer=_Replay(batches, real), batch_size=args.batch_size)
    print(f"BM25 build from tokens (vocab ids + bm25s matrix): {time.perf_counter() - t0:.1f} s")
    del batches
    rng = np.random.default_rng(0)
    queries = [texts[i] for i in rng.choice(len(texts), args.queries, replace=False)]
    times = []
    for q in queries:
        t = time.perf_counter()
        index.search([q], k=10)
        times.append(1000 * (time.perf_counter() - t))
    times.sort()
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
    print(f"query latency, {len(times)} review texts as queries (k=10, Kiwi included): "
          f"p50 {statistics.median(times):.2f} ms, p99 {p99:.2f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        index.save(Path(tmp))
        save_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        LexicalIndex.load(Path(tmp))
        load_s = time.perf_counter() - t0
        size = _dir_size(Path(tmp))
    vocab = len(index._vocab)  # noqa: SLF001  (bench only)
    print(f"on disk: {size / 2**20:.1f} MiB (save {save_s:.2f} s, load {load_s:.2f} s), "
          f"vocab {vocab:,} terms, postings {index._data.size:,}")  # noqa: SLF001
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quality", help="nDCG@10 / R@10 / MRR@10 per analyzer on a BEIR folder")
    q.add_argument("--data", default="/work/shared/data/korquad_v1_retrieval_dev")
    q.add_argument(
        "--analyzers",
        default=",".join([*(f"kiwi:{n}" for n in TAG_SETS), "whitespace", "char_bigram"]),
        help=f"comma-separated: kiwi:<{'|'.join(TAG_SETS)}>, whitespace, char_bigram",
    )
    q.add_argument("--k1", type=float, default=1.2)
    q.add_argument("--b", type=float, default=0.75)
    p = sub.add_parser("perf", help="throughput, build time, latency and size on a JSONL corpus")
    p.add_argument("--corpus", default="/work/shared/data/nsmc_reviews_corpus/corpus.jsonl")
    p.add_argument("--limit", type=int, default=200_000, help="documents to index")
    p.add_argument("--tokenize-sample", type=int, default=20_000, help="docs per thread count")
    p.add_argument("--workers", default="1,2", help="Kiwi thread counts to time")
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    quality(args) if args.command == "quality" else perf(args)


if __name__ == "__main__":
    main()
