"""Filtered dense search: recall@10 against brute force over the allowed rows, whether every query
gets k hits, and single-query latency against the unfiltered search, for flat and hnsw indexes.

Data: ../shared/data/nsmc_reviews_corpus (200k Korean reviews; --docs to subsample) through
bench/scale.py's stand-in encoder (hashed character 1-3-grams, seeded Gaussian projection to
384-d, unit length; no model). Queries are 10-character prefixes of held-back reviews. Synthetic
metadata, seeded: ``category`` (20 values, uniform), ``year`` (2000-2019, uniform) and ``tags``
(each of t0..t9 with probability 0.2). Filters of selectivity 50%, 5%, 0.5% and 0.05%:

    50%    {"year": {"$gte": 2010}}
    5%     {"category": "c07"}
    0.5%   {"category": "c07", "year": {"$in": [2003, 2011]}}
    0.05%  {"category": "c07", "year": 2003, "tags": {"$contains": "t3"}}

The store part is measured: the passage table with typed columns, kosearch.retrieval.filters
to evaluate the filter (its time is shown once per filter: a search_batch or the Searcher's cache
reuse it) and kosearch.storage.selection to search; one FAISS thread, one query at a time.
``--sweep`` times HNSW's two filtered strategies (exact scan of the allowed vectors vs. the graph
walk with a selector) over allowed-row counts, which is how HNSW_EXACT_MAX was chosen.

    python bench/filter.py                      # 200k, flat and hnsw, 200 queries
    python bench/filter.py --docs 50000 --sweep
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

FILTERS = {
    "50%": {"year": {"$gte": 2010}},
    "5%": {"category": "c07"},
    "0.5%": {"category": "c07", "year": {"$in": [2003, 2011]}},
    "0.05%": {"category": "c07", "year": 2003, "tags": {"$contains": "t3"}},
}
K = 10


def metadata(n: int, seed: int = 11) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    cats, years, tags = rng.integers(0, 20, n), rng.integers(2000, 2020, n), rng.random((n, 10))
    return [{"category": f"c{c:02d}", "year": int(y), "tags": [f"t{j}" for j in range(10)
                                                               if t[j] < 0.2]}
            for c, y, t in zip(cats.tolist(), years.tolist(), tags)]


def truth(xb: np.ndarray, xq: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    allowed = np.flatnonzero(mask)
    scores = xq @ xb[allowed].T
    return [allowed[np.lexsort((allowed, -s))[:K]] for s in scores]


def timed(fn, queries: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    rows, times = [], []
    for q in queries:
        start = time.perf_counter()
        _, r = fn(q[None, :])
        times.append(time.perf_counter() - start)
        rows.append(r[0])
    return rows, np.array(times) * 1000


def run(kind: str, xb: np.ndarray, xq: np.ndarray, table, fields,
        ef_search: int | None = None) -> list[dict[str, object]]:
    from kosearch.retrieval.filters import evaluate
    from kosearch.storage.ann import build_store, plan_index
    from kosearch.storage.selection import Subset, search_subset

    start = time.perf_counter()
    store = build_store(xb, "cosine", plan_index(kind, len(xb), xb.shape[1]))
    print(f"# {kind}: built in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if kind == "hnsw" and ef_search:
        store.set_search_params(ef_search=ef_search)  # as `kosearch query --ef-search` does
    unfiltered, base = timed(lambda q: store.search(q, K), xq)
    everything = truth(xb, xq, np.ones(len(xb), bool))
    recall0 = np.mean([len(set(r.tolist()) & set(e.tolist())) / K
                       for r, e in zip(unfiltered, everything)])
    out = [{"index": kind, "filter": "none", "allowed": len(xb), "eval_ms": 0.0,
            "recall": recall0, "all_k": None, "p50": np.median(base), "p99": np.quantile(base, .99),
            "p50_x": 1.0}]
    for name, spec in FILTERS.items():
        start = time.perf_counter()
        subset = Subset.of(evaluate(spec, table, fields))
        eval_ms = (time.perf_counter() - start) * 1000
        rows, ms = timed(lambda q, s=subset: search_subset(store, q, K, s), xq)
        exact = truth(xb, xq, subset.mask)
        want = min(K, subset.count)
        recall = np.mean([len(set(r.tolist()) & set(e.tolist())) / want
                          for r, e in zip(rows, exact)]) if want else 1.0
        all_k = np.mean([len(r) == want and bool(subset.mask[r].all()) for r in rows])
        out.append({"index": kind, "filter": name, "allowed": subset.count, "eval_ms": eval_ms,
                    "recall": recall, "all_k": all_k, "p50": np.median(ms),
                    "p99": np.quantile(ms, .99), "p50_x": np.median(ms) / np.median(base)})
    return out


def sweep(xb: np.ndarray, xq: np.ndarray) -> None:
    """HNSW: exact scan of the allowed vectors vs. graph walk with a selector, by allowed count."""
    from kosearch.storage import selection
    from kosearch.storage.ann import build_store, plan_index

    store = build_store(xb, "cosine", plan_index("hnsw", len(xb), xb.shape[1]))
    rng = np.random.default_rng(5)
    print("\n| allowed | exact scan p50 ms | graph walk p50 ms | graph walk recall@10 |")
    print("|---:|---:|---:|---:|")
    for count in (1000, 5000, 10_000, 20_000, 50_000, 100_000):
        if count >= len(xb):
            break
        mask = np.zeros(len(xb), bool)
        mask[rng.choice(len(xb), count, replace=False)] = True
        subset = selection.Subset.of(mask)
        exact = truth(xb, xq, mask)
        figures = []
        for limit in (len(xb), 0):  # everything exact / never exact (graph walk + fallback)
            selection.HNSW_EXACT_MAX = limit
            rows, ms = timed(lambda q, s=subset: selection.search_subset(store, q, K, s), xq)
            recall = np.mean([len(set(r.tolist()) & set(e.tolist())) / K
                              for r, e in zip(rows, exact)])
            figures.append((np.median(ms), recall))
        print(f"| {count} | {figures[0][0]:.2f} | {figures[1][0]:.2f} | {figures[1][1]:.3f} |")


def main() -> None:
    import faiss
    from scale import NSMC, hash_encode

    from kosearch.storage.passages import PassageTable
    from kosearch.types import Passage

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=200_000, help="reviews used (subsample)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--types", default="flat,hnsw")
    parser.add_argument("--sweep", action="store_true", help="also time HNSW's two strategies")
    parser.add_argument("--ef-search", type=int, default=None,
                        help="HNSW efSearch for every search (default: the index's, 256)")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)

    texts = [json.loads(line)["text"] for line in NSMC.open(encoding="utf-8")][: args.docs]
    held = set(np.random.default_rng(3).choice(len(texts), args.queries, replace=False).tolist())
    corpus = [t for i, t in enumerate(texts) if i not in held]
    start = time.perf_counter()
    xb, xq = hash_encode(corpus), hash_encode([texts[i][:10] for i in sorted(held)])
    print(f"# encoded {len(corpus)} reviews in {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    metas = metadata(len(corpus))
    passages = [Passage(f"r{i}", 0, "", 0, 0) for i in range(len(corpus))]
    table = PassageTable.from_passages(passages, metas)
    filterable, fields = table.filterable(), table.fields()

    rows = [row for kind in args.types.split(",")
            for row in run(kind, xb, xq, filterable, fields, args.ef_search)]
    print(f"\n{len(corpus)} nsmc reviews, {args.queries} queries, k={K}, 1 FAISS thread\n")
    print("| index | filter | allowed | filter eval ms | recall@10 | all k | p50 ms | p99 ms | "
          "p50 vs unfiltered |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        recall = "-" if r["recall"] is None else f"{r['recall']:.3f}"
        all_k = "-" if r["all_k"] is None else f"{r['all_k']:.3f}"
        print(f"| {r['index']} | {r['filter']} | {r['allowed']} | {r['eval_ms']:.1f} | {recall} | "
              f"{all_k} | {r['p50']:.2f} | {r['p99']:.2f} | {r['p50_x']:.2f}x |")
    if args.sweep:
        sweep(xb, xq)


if __name__ == "__main__":
    main()
