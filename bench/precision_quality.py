"""Dense retrieval quality per indexing precision, with fp32 queries (what `kosearch query` does).

For each precision, the KorQuAD corpus is indexed in memory with the passages encoded in that
precision; the 2,844 queries are encoded once, in fp32 and in one batch, and searched in dense
mode. Prints nDCG@10, MRR@10 and recall@100 per precision, for the quality guard of
`--precision` (README, Speed). `kosearch eval retrieval` computes the same metrics but encodes
the queries one by one to time them, which is much slower.

Usage (from the repo root):
  python bench/precision_quality.py fp32 bf16 int8
  python bench/precision_quality.py --model PATH --data DIR fp32 int8
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from kosearch.encoding.encoder import SentenceTransformerEncoder
from kosearch.eval.datasets import load_beir
from kosearch.eval.metrics import mrr_at_k, ndcg_at_k, recall_at_k
from kosearch.index import Index

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("precisions", nargs="+", help="fp32, bf16, int8 (fp16 needs CUDA)")
    parser.add_argument("--model", default=str(SHARED / "models" / "me5-small-ko"))
    parser.add_argument("--data", default=str(SHARED / "data" / "korquad_v1_retrieval_dev"))
    args = parser.parse_args()
    data = load_beir(args.data)
    qids = sorted(data.queries)
    texts = [data.queries[q] for q in qids]
    start = time.perf_counter()
    fp32 = SentenceTransformerEncoder(args.model, device="cpu", precision="fp32")
    vectors = fp32.encode_queries(texts)
    print(f"{len(texts)} queries encoded in fp32 ({time.perf_counter() - start:.0f} s)")
    for precision in args.precisions:
        start = time.perf_counter()
        encoder = fp32 if precision == "fp32" else SentenceTransformerEncoder(
            args.model, device="cpu", precision=precision)
        index = Index.build(str(data.corpus_path), encoder=encoder, lexical=False)
        hits = index.search_batch(texts, 100, mode="dense", query_vectors=vectors)
        ranked = [[hit.id for hit in row] for row in hits]
        pairs = list(zip(qids, ranked))
        ndcg = np.mean([ndcg_at_k(r, data.qrels[q], 10) for q, r in pairs])
        mrr = np.mean([mrr_at_k(r, data.qrels[q], 10) for q, r in pairs])
        recall = np.mean([recall_at_k(r, data.qrels[q], 100) for q, r in pairs])
        print(f"{precision:>5} passages + fp32 queries: nDCG@10 {ndcg:.4f}  MRR@10 {mrr:.4f}  "
              f"R@100 {recall:.4f}  ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
