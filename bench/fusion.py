"""Fusion variants on several retrieval sets, from saved scores; and the k=10 vs k=100 check.

Step 1 (once per set, the real model): ``bench/fusion_scores.py`` saves every passage's dense
and BM25 score for every query. Step 2 (this script, seconds): fuse them offline in every
variant, score nDCG@10 / recall@10 per document (a document ranks at its best passage), and
print one table; ``--index NAME=DIR`` also runs kosearch itself on that set's index and reports
how many top-10 lists a k=100 search changes, with the default fusion (and the old one,
simulated on the saved scores: its lists were 100 deep at k=10, 400 deep at k=100).

    python bench/fusion.py korquad=korquad.npz kmqa=kmqa.npz easylaw=easylaw.npz \\
        --index kmqa=IDX_DIR --beir kmqa=BEIR_DIR --model MODEL
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from kosearch.retrieval.fusion import Spread, combine
from kosearch.settings import FUSION_DEPTH, Fusion

Array = NDArray[np.float64]
N = FUSION_DEPTH


def load(path: str) -> dict[str, object]:
    z = np.load(path)
    docs = z["doc_of_row"].astype(str)
    names, doc_idx = np.unique(docs, return_inverse=True)
    pos = {d: i for i, d in enumerate(names)}
    qrels = collections.defaultdict(set)
    for q, d in zip(z["qrel_q"].astype(str), z["qrel_d"].astype(str)):
        qrels[q].add(d)
    rel = np.zeros((len(z["qids"]), len(names)), bool)
    for i, q in enumerate(z["qids"].astype(str)):
        for d in qrels[q]:
            if d in pos:
                rel[i, pos[d]] = True
    return {"dense": z["dense"].astype(np.float64), "lexical": z["lexical"].astype(np.float64),
            "doc_idx": doc_idx, "ndocs": len(names), "rel": rel}


def to_docs(scores: Array, doc_idx: NDArray[np.int64], ndocs: int) -> Array:
    """Each document's best passage score."""
    out = np.full((scores.shape[0], ndocs), -np.inf)
    order = np.argsort(doc_idx, kind="stable")
    sorted_docs = doc_idx[order]
    starts = np.flatnonzero(np.r_[True, sorted_docs[1:] != sorted_docs[:-1]])
    out[:, sorted_docs[starts]] = np.maximum.reduceat(scores[:, order], starts, axis=1)
    return out


def per_query(doc_scores: Array, rel: NDArray[np.bool_], k: int = 10) -> tuple[Array, Array]:
    """nDCG@k and recall@k of every query (ties by document order)."""
    top = np.argsort(-doc_scores, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(rel, top, axis=1)
    disc = 1 / np.log2(np.arange(2, k + 2))
    n_rel = rel.sum(1)
    ideal = np.array([disc[: min(n, k)].sum() for n in n_rel])
    return (hits * disc).sum(1) / np.maximum(ideal, 1e-12), hits.sum(1) / np.maximum(n_rel, 1)


def _rows_best_first(scores: Array, depth: int, positive: bool) -> NDArray[np.int64]:
    rows = np.flatnonzero(scores > 0) if positive else np.arange(len(scores))
    return rows[np.lexsort((rows, -scores[rows]))][:depth]


def old_default(dense: Array, lexical: Array, depth: int = 100) -> Array:
    """kosearch 0.1's hybrid: each list cut at ``depth``, min-max over the list, 0 if absent."""
    out = np.full(dense.shape, -np.inf)
    for i in range(len(dense)):
        total, seen = np.zeros(dense.shape[1]), np.zeros(dense.shape[1], bool)
        for scores, positive in ((dense[i], False), (lexical[i], True)):
            rows = _rows_best_first(scores, depth, positive)
            if len(rows) == 0:
                continue
            lo, hi = scores[rows].min(), scores[rows].max()
            total[rows] += 0.5 * (1.0 if hi == lo else (scores[rows] - lo) / (hi - lo))
            seen[rows] = True
        out[i, seen] = total[seen]
    return out


def rrf(dense: Array, lexical: Array, k: int = 60, depth: int = N) -> Array:
    out = np.zeros(dense.shape)
    for i in range(len(dense)):
        for scores, positive in ((dense[i], False), (lexical[i], True)):
            rows = _rows_best_first(scores, depth, positive)
            out[i, rows] += 0.5 / (k + 1 + np.arange(len(rows)))
    return out


def fused(dense: Array, lexical: Array, fusion: Fusion) -> Array:
    """kosearch's fusion (:func:`kosearch.retrieval.fusion.combine`) over every passage."""
    out = np.empty(dense.shape)
    for i in range(len(dense)):
        spreads = (Spread.of(np.sort(dense[i])[::-1], fusion.depth),
                   Spread.of(np.sort(lexical[i])[::-1], fusion.depth))
        out[i] = combine(dense[i], lexical[i], spreads, fusion.normalize,  # type: ignore[arg-type]
                         fusion.dense_weight)
    return out


def variants() -> dict[str, Callable[[Array, Array], Array]]:
    out: dict[str, Callable[[Array, Array], Array]] = {
        "dense": lambda d, _: d,
        "lexical": lambda _, lex: lex,
        "hybrid old default (0.1: min-max over the lists, w 0.5)": old_default,
        "RRF k=60": rrf,
    }
    for how in ("minmax", "zscore", "dbsf"):
        for w in (0.3, 0.5, 0.7, None):
            name = f"{how}, w {'adaptive' if w is None else w}"
            fusion = Fusion(normalize=how, dense_weight=w)
            out[name] = lambda d, lex, f=fusion: fused(d, lex, f)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sets", nargs="+", help="NAME=SCORES.npz from bench/fusion_scores.py")
    parser.add_argument("--index", action="append", default=[], help="NAME=INDEX_DIR")
    parser.add_argument("--beir", action="append", default=[], help="NAME=BEIR_DIR")
    parser.add_argument("--model", help="the index's model (for --index)")
    parser.add_argument("--queries", type=int, default=300, help="queries in the k check")
    parser.add_argument("--weaken", action="append", default=[], metavar="NAME=SIGMA",
                        help="also score set NAME with seeded Gaussian noise (std SIGMA times "
                             "the std of each query's best dense scores) added to its dense "
                             "scores: a stand-in for a collection the model reads badly")
    args = parser.parse_args()
    sets = dict(s.split("=", 1) for s in args.sets)
    weaken = {name: float(sigma) for name, sigma in (w.split("=", 1) for w in args.weaken)}
    table: dict[str, dict[str, tuple[Array, Array]]] = collections.defaultdict(dict)
    for name, path in [*sets.items(), *((f"{n}+noise", sets[n]) for n in weaken)]:
        data = load(path)
        if name.endswith("+noise"):
            data["dense"] = noisy(data["dense"], weaken[name.removesuffix("+noise")])  # type: ignore[arg-type]
        for label, fuse in variants().items():
            scores = fuse(data["dense"], data["lexical"])  # type: ignore[arg-type]
            docs = to_docs(scores, data["doc_idx"], data["ndocs"])  # type: ignore[arg-type]
            table[label][name] = per_query(docs, data["rel"])  # type: ignore[arg-type]
        # fusion at the document level: each retriever's best passage per document, then fused
        dense_docs, lexical_docs = (to_docs(data[r], data["doc_idx"], data["ndocs"])  # type: ignore[arg-type]
                                    for r in ("dense", "lexical"))
        for how in ("zscore", "dbsf"):
            label = f"{how}, w 0.5, fused per document (not per passage)"
            table[label][name] = per_query(fused(dense_docs, lexical_docs, Fusion(normalize=how)),
                                           data["rel"])  # type: ignore[arg-type]
    print_table(table, [*sets, *(f"{n}+noise" for n in weaken)])
    for name, path in sets.items():
        data = load(path)
        old10, old100 = (to_docs(old_default(data["dense"], data["lexical"], depth),  # type: ignore[arg-type]
                                 data["doc_idx"], data["ndocs"])  # type: ignore[arg-type]
                         for depth in (100, 400))
        changed = sum(_top(a) != _top(b) for a, b in zip(old10, old100))
        print(f"{name}: hybrid old default, top-10 changed by k=100 (simulated): "
              f"{changed}/{len(old10)} queries")
    beirs = dict(s.split("=", 1) for s in args.beir)
    for spec in args.index:
        name, directory = spec.split("=", 1)
        k_check(name, directory, beirs[name], args.model, args.queries)


def noisy(dense: Array, sigma: float, seed: int = 0) -> Array:
    """``dense`` plus Gaussian noise scaled per query by the spread of its best scores."""
    scale = np.sort(dense, axis=1)[:, -N:].std(axis=1, keepdims=True)
    return dense + sigma * scale * np.random.default_rng(seed).standard_normal(dense.shape)


def _top(doc_scores: Array, k: int = 10) -> list[int]:
    return np.argsort(-doc_scores, kind="stable")[:k].tolist()


def print_table(table: dict[str, dict[str, tuple[Array, Array]]], names: list[str]) -> None:
    print("| variant | " + " | ".join(f"{n} nDCG@10 | {n} R@10" for n in names) + " |")
    print("| --- |" + " --- |" * (2 * len(names)))
    for label, row in table.items():
        cells = [f"{row[n][0].mean():.3f} | {row[n][1].mean():.3f}" for n in names]
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    print("nDCG@10 minus the better single retriever (paired, +- 1.96 standard errors):")
    for label, row in table.items():
        cells = []
        for n in names:
            best = max(("dense", "lexical"), key=lambda r: table[r][n][0].mean())
            diff = row[n][0] - table[best][n][0]
            cells.append(f"{n} {diff.mean():+.3f}+-{1.96 * diff.std() / np.sqrt(len(diff)):.3f}")
        print(f"  {label}: " + ", ".join(cells))


def k_check(name: str, directory: str, beir: str, model: str | None, limit: int) -> None:
    """kosearch's own top-10 at k=10 against the first 10 of k=100, default fusion."""
    from kosearch.eval.datasets import load_beir
    from kosearch.index import Index

    data = load_beir(beir)
    texts = [data.queries[q] for q in sorted(data.qrels)][:limit]
    index = Index.load(directory, model=model, query_backend="torch")
    vectors = index.encode_queries(texts)
    ten, hundred = (index.search_batch(texts, k, query_vectors=vectors) for k in (10, 100))
    changed = sum([h.id for h in a] != [h.id for h in b[:10]] for a, b in zip(ten, hundred))
    print(f"{name}: kosearch default hybrid, top-10 changed by k=100: "
          f"{changed}/{len(texts)} queries")


if __name__ == "__main__":
    main()
