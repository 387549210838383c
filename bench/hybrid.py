"""Added latency of hybrid search over dense search, per query, on an existing index.

Each query is encoded once; then the same vector is searched in dense and in hybrid mode
(hybrid adds Kiwi analysis of the query, BM25 and fusion), alternating, one query at a time.
Prints p50/p99 of each and of the difference.

    python bench/hybrid.py -i IDX --queries ../shared/data/korquad_v1_retrieval_dev/queries.jsonl -n 500
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from kosearch.index import Index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-i", "--index", required=True)
    parser.add_argument("--queries", required=True, help="JSONL with a 'text' field")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    with open(args.queries, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line, _ in zip(f, range(args.n))]
    index = Index.load(args.index)
    index.search(texts[0], k=args.k)  # load the model and Kiwi outside the timings
    timings: dict[str, list[float]] = {"dense": [], "hybrid": []}
    for text in texts:
        vector = index.encode_queries([text])
        for mode in ("dense", "hybrid"):
            start = time.perf_counter()
            index.search_batch([text], args.k, mode=mode, query_vectors=vector)
            timings[mode].append((time.perf_counter() - start) * 1000)
    dense, hybrid = np.array(timings["dense"]), np.array(timings["hybrid"])
    print(f"{len(texts)} queries, k={args.k}, index {args.index} ({len(index)} passages); "
          "query encoding excluded (identical for both)")
    for name, values in (("dense", dense), ("hybrid", hybrid), ("hybrid - dense", hybrid - dense)):
        print(f"{name:<16} p50 {np.percentile(values, 50):7.2f} ms   p99 {np.percentile(values, 99):7.2f} ms"
              f"   mean {values.mean():7.2f} ms")


if __name__ == "__main__":
    main()
