"""Chunking vs --no-chunk on questions about content deep inside long Korean documents.

Takes the N longest documents of ../shared/data/ko_open_docs, and for each one a sentence from
its last quarter (split with Kiwi) as the query: content that a model reading only the first
512 tokens never sees. Builds two dense indexes with the same model — chunked (default) and
--no-chunk — and reports recall@1/@5 and MRR@10 (dense mode, so BM25 cannot rescue the
truncated index). Also reports how much of the chunked build went to chunking itself.

    python bench/longdoc.py --model ../shared/models/me5-small-ko -n 60
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from kosearch.encoding.encoder import SentenceTransformerEncoder
from kosearch.index import Index
from kosearch.ingest.chunk import Chunker
from kosearch.ingest.sentences import SentenceSplitter
from kosearch.ingest.tokens import TokenCounter
from kosearch.settings import ChunkSettings
from kosearch.types import Document

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ko_open_docs" / "corpus.jsonl"


def longest(n: int) -> list[Document]:
    docs = []
    with DATA.open(encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            docs.append(Document(r["id"], r["text"], r.get("title", "")))
    docs.sort(key=lambda d: (-len(d.text), d.id))
    return docs[:n]


def deep_queries(docs: list[Document]) -> dict[str, str]:
    splitter = SentenceSplitter()
    queries = {}
    for doc, spans in zip(docs, splitter.split([d.text for d in docs])):
        tail = [(s, e) for s, e in spans if s > 0.75 * len(doc.text) and 30 <= e - s <= 200]
        if tail:
            s, e = tail[len(tail) // 2]
            queries[doc.id] = doc.text[s:e]
    return queries


def score(index: Index, queries: dict[str, str]) -> dict[str, float]:
    ids = list(queries)
    results = index.search_batch([queries[i] for i in ids], k=10, mode="dense")
    ranks = []
    for doc_id, hits in zip(ids, results):
        found = [h.id for h in hits]
        ranks.append(found.index(doc_id) + 1 if doc_id in found else None)
    n = len(ranks)
    return {
        "recall@1": sum(r == 1 for r in ranks) / n,
        "recall@5": sum(r is not None and r <= 5 for r in ranks) / n,
        "mrr@10": sum(1 / r for r in ranks if r) / n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("-n", type=int, default=60, help="number of long documents")
    args = parser.parse_args()
    docs = longest(args.n)
    queries = deep_queries(docs)
    encoder = SentenceTransformerEncoder(args.model, device="cpu")
    counter = TokenCounter(encoder.backend_tokenizer, max_tokens=encoder.max_tokens,
                           prompt=encoder.passage_prompt)
    chunker = Chunker(counter, ChunkSettings())
    start = time.perf_counter()
    chunker.chunk(docs)
    chunk_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        chunked = Index.build(docs, Path(tmp) / "c", encoder=encoder, lexical=False)
        build_s = time.perf_counter() - start
        whole = Index.build(docs, Path(tmp) / "w", encoder=encoder, lexical=False,
                            chunking=ChunkSettings(enabled=False))
        lengths = [len(d.text) for d in docs]
        print(f"{len(docs)} longest ko_open_docs documents ({min(lengths)}-{max(lengths)} chars), "
              f"{len(queries)} queries = a sentence from each document's last quarter, dense mode")
        print(f"{'index':<22}{'passages':>9}{'recall@1':>10}{'recall@5':>10}{'mrr@10':>9}")
        for name, index in (("chunked (default)", chunked), ("--no-chunk", whole)):
            s = score(index, queries)
            print(f"{name:<22}{len(index):>9}{s['recall@1']:10.3f}{s['recall@5']:10.3f}{s['mrr@10']:9.3f}")
        print(f"--no-chunk: {whole.manifest.counts['documents']} documents; the build reported how many "
              "exceed the model limit")
    print(f"chunking alone {chunk_s:.2f} s (Kiwi start-up included) of a {build_s:.1f} s chunked build "
          f"= {100 * chunk_s / build_s:.1f}%")


if __name__ == "__main__":
    main()
