"""Dump every passage's dense and BM25 score for every query of a BEIR set (small corpora only).

Retrieval runs once with the real model; ``bench/fusion.py`` then fuses the saved scores offline
in every variant, at no model cost:

    python bench/fusion_scores.py BEIR_DIR INDEX_DIR OUT.npz --model MODEL [--sample N]

INDEX_DIR is a kosearch index of BEIR_DIR/corpus.jsonl (``kosearch index ... --model MODEL``).
OUT.npz holds ``dense`` and ``lexical`` (queries x passages, float32), ``doc_of_row``, ``qids``
and the qrels as parallel ``qrel_q``/``qrel_d`` arrays.
"""

from __future__ import annotations

import argparse
import random

import numpy as np

from kosearch.eval.datasets import load_beir
from kosearch.index import Index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("beir")
    parser.add_argument("index")
    parser.add_argument("out")
    parser.add_argument("--model", required=True)
    parser.add_argument("--sample", type=int, help="score only this many queries (seeded)")
    args = parser.parse_args()
    data = load_beir(args.beir)
    qids = sorted(data.qrels)
    if args.sample is not None and args.sample < len(qids):
        qids = sorted(random.Random(0).sample(qids, args.sample))
    index = Index.load(args.index, model=args.model, query_backend="torch")
    store, lexical, passages = index.store, index.lexical, index.passages
    rows = list(range(store.ntotal))
    vectors = store.reconstruct(rows)
    queries = store.prepare(index.encode_queries([data.queries[q] for q in qids]))
    dense = (queries @ vectors.T).astype(np.float32)
    lex = np.stack([given for _, given in
                    lexical.search_scored([data.queries[q] for q in qids], 1, [rows] * len(qids))])
    pairs = [(q, d) for q in qids for d in data.qrels[q] if data.qrels[q][d] > 0]
    np.savez_compressed(
        args.out, dense=dense, lexical=lex.astype(np.float32),
        doc_of_row=np.array(list(passages.doc_ids())), qids=np.array(qids),
        qrel_q=np.array([q for q, _ in pairs]), qrel_d=np.array([d for _, d in pairs]),
    )
    print(f"{args.out}: {len(qids)} queries x {len(rows)} passages")


if __name__ == "__main__":
    main()
