"""Snippets and highlights: which sentence answers the question, and what highlighting costs.

``choice``: on KorQuAD 1.0 dev retrieval, for every question take its relevant passage and
pick one snippet with each method; count how often the snippet holds the answer span (KorQuAD's
``answer_start``; the answers are not in the BEIR files, so give the pinned source file
``KorQuAD_v1.0_dev.json`` from github.com/korquad/korquad.github.io, sha256 25ffeb51...; only
the questions of the dev split's ``queries.jsonl`` are read from it)::

    python bench/snippets.py choice --data /work/shared/data/korquad_v1_retrieval_dev \\
        --answers KorQuAD_v1.0_dev.json --model /work/shared/models/me5-small-ko

Methods: ``first`` (the passage's first sentence), ``count`` (most distinct query morphemes),
``idf`` (morphemes weighted by BM25 idf: the default with BM25), ``dense`` (highest cosine
between the query and the sentence under the model), ``idf+dense`` (idf score scaled to [0, 1]
per passage plus the cosine).

``cost``: ms per query of the highlight step for ``-k`` hits, against the whole search, on an
index built from the dev corpus with the real model (each query searched without and with
highlights, alternating; a fresh highlighter per round so no analysis comes from the cache)::

    python bench/snippets.py cost --data /work/shared/data/korquad_v1_retrieval_dev \\
        --model /work/shared/models/me5-small-ko -n 200 [--docs 300]

(``--docs N`` indexes only the first N passages, for a quicker run on a busy machine.)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from kosearch.lexical.analyzers import MorphemeAnalyzer
from kosearch.lexical.bm25 import LexicalIndex
from kosearch.retrieval import highlight


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return " ".join(sorted(set(re.findall(r"\b(avx512_bf16|avx512f|avx2)\b", text)))) or "none"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _qrels(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8") as f:
        next(f)
        return {q: d for q, d, _ in (line.rstrip("\n").split("\t") for line in f)}


def _answers(path: Path, wanted: set[str]) -> dict[str, list[tuple[int, int]]]:
    """Question id -> answer spans in its paragraph, for the ``wanted`` questions only."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    out = {}
    for article in data:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                if qa["id"] in wanted:
                    out[qa["id"]] = [(a["answer_start"], a["answer_start"] + len(a["text"]))
                                     for a in qa["answers"]]
    return out


def choice(args: argparse.Namespace) -> None:
    data = Path(args.data)
    corpus = {d["_id"]: d for d in _jsonl(data / "corpus.jsonl")}
    queries = _jsonl(data / "queries.jsonl")
    qrels = _qrels(data / "qrels" / "test.tsv")
    answers = _answers(Path(args.answers), {q["_id"] for q in queries})
    queries = [q for q in queries if q["_id"] in answers][: args.n or None]
    ids = list(corpus)
    analyzer = MorphemeAnalyzer(num_workers=1)
    t0 = time.perf_counter()
    bm25 = LexicalIndex.build([corpus[i]["text"] for i in ids], analyzer=analyzer)
    print(f"BM25 over {len(ids)} passages in {time.perf_counter() - t0:.1f} s")
    needed = sorted({qrels[q["_id"]] for q in queries})
    located = dict(zip(needed, analyzer.locate([corpus[d]["text"] for d in needed])))
    sentences = {d: highlight.sentence_spans(corpus[d]["text"], located[d].sentence_starts)
                 for d in needed}
    qterms = analyzer.tokenize([q["text"] for q in queries])
    cosines = _dense_cosines(args.model, queries, qrels, corpus, sentences) if args.model else None
    methods = ["first", "count", "idf"] + (["dense", "idf+dense"] if cosines else [])
    hits = {m: 0 for m in methods}
    lengths: dict[str, list[int]] = {m: [] for m in methods}
    for n, (query, terms) in enumerate(zip(queries, qterms)):
        doc = qrels[query["_id"]]
        sents, loc = sentences[doc], located[doc]
        unique = list(dict.fromkeys(terms))
        ones = highlight.sentence_scores(loc, sents, dict.fromkeys(unique, 1.0))
        idf = highlight.sentence_scores(loc, sents, dict(zip(unique, bm25.idf(unique))))
        scores = {"first": [0.0] * len(sents), "count": ones, "idf": idf}
        if cosines:
            top = max(idf) or 1.0
            scores["dense"] = cosines[n]
            scores["idf+dense"] = [i / top + c for i, c in zip(idf, cosines[n])]
        for m in methods:
            lo, hi = highlight.snippet_bounds(sents, scores[m])
            lengths[m].append(hi - lo)
            hits[m] += any(lo <= a and b <= hi for a, b in answers[query["_id"]])
    shipped, read = 0, 0
    highlighter = highlight.Highlighter(analyzer)
    for query in queries:  # what kosearch ships: Kiwi reads the best rough sentences only
        text = corpus[qrels[query["_id"]]]["text"]
        found = highlighter.highlight(query["text"], [text], bm25.idf)[0]
        shipped += any(found.start <= a and b <= found.end for a, b in answers[query["_id"]])
        weight = dict.fromkeys(analyzer.tokenize_queries([query["text"]])[0], 1.0)
        read += sum(hi - lo for lo, hi in highlight.rough_candidates(text, weight))
    total = sum(len(corpus[qrels[q["_id"]]]["text"]) for q in queries)
    print(f"shipped (idf, Kiwi on the best {highlight.ROUGH_CANDIDATES} rough sentences): answer "
          f"in snippet {shipped / len(queries):.3f}; Kiwi reads {read / total:.0%} of the text")
    print(f"{len(queries)} questions (KorQuAD dev), relevant passage; answer span inside the "
          f"snippet (min {highlight.MIN_CHARS} chars):")
    print("| method | answer in snippet | mean snippet chars |")
    print("| --- | --- | --- |")
    for m in methods:
        print(f"| {m} | {hits[m] / len(queries):.3f} | {statistics.mean(lengths[m]):.0f} |")
    mean_len = statistics.mean(len(corpus[qrels[q['_id']]]["text"]) for q in queries)
    print(f"(mean passage: {mean_len:.0f} chars, "
          f"{statistics.mean(len(sentences[qrels[q['_id']]]) for q in queries):.1f} sentences)")


def _dense_cosines(model: str, queries: list[dict[str, Any]], qrels: dict[str, str],
                   corpus: dict[str, Any], sentences: dict[str, list[tuple[int, int]]],
                   ) -> list[list[float]]:
    from kosearch.encoding.factory import load_encoder

    encoder = load_encoder(model)
    docs = sorted(sentences)
    texts = [corpus[d]["text"][a:b] for d in docs for a, b in sentences[d]]
    t0 = time.perf_counter()
    vecs = encoder.encode_passages(texts)
    print(f"encoded {len(texts)} sentences in {time.perf_counter() - t0:.1f} s")
    where, i = {}, 0
    for d in docs:
        where[d] = vecs[i : i + len(sentences[d])]
        i += len(sentences[d])
    qv = encoder.encode_queries([q["text"] for q in queries])
    return [list(np.asarray(where[qrels[q["_id"]]]) @ qv[n]) for n, q in enumerate(queries)]


def cost(args: argparse.Namespace) -> None:
    import tempfile

    from kosearch.index import Index
    from kosearch.types import Document

    data = Path(args.data)
    texts = [q["text"] for q in _jsonl(data / "queries.jsonl")][: args.n]
    corpus = _jsonl(data / "corpus.jsonl")[: args.docs or None]
    with tempfile.TemporaryDirectory() as tmp:
        docs = [Document(d["_id"], d["text"], d.get("title", "")) for d in corpus]
        index = Index.build(docs, Path(tmp) / "idx", model=args.model)
        print(f"built an index of {len(docs)} passages", flush=True)
        index.search(texts[0], k=args.k)  # load the model and Kiwi
        vectors = index.encode_queries(texts)
        plain, full, step = [], [], []
        for i, text in enumerate(texts):
            index._highlighter = None  # a fresh cache: every passage is analyzed
            v = vectors[i : i + 1]
            t0 = time.perf_counter()
            index.search_batch([text], args.k, query_vectors=v, highlights=False)
            t1 = time.perf_counter()
            index.search_batch([text], args.k, query_vectors=v, highlights=True)
            t2 = time.perf_counter()
            plain.append((t1 - t0) * 1000)
            full.append((t2 - t1) * 1000)
            step.append((t2 - t1 - (t1 - t0)) * 1000)
        t0 = time.perf_counter()
        for text in texts:
            index.search(text, k=args.k, highlights=False)
        whole = (time.perf_counter() - t0) / len(texts) * 1000
    print(f"CPU flags: {cpu_flags()}; {len(texts)} KorQuAD dev queries, k={args.k}, hybrid, "
          f"{len(corpus)} passages")
    print(f"search, query pre-encoded: median {statistics.median(plain):.1f} ms without "
          f"highlights, {statistics.median(full):.1f} ms with")
    print(f"highlight step: median {statistics.median(step):.1f} ms, "
          f"mean {statistics.mean(step):.1f} ms per query")
    print(f"whole search incl. query encoding, without highlights: mean {whole:.1f} ms; "
          f"highlights add {statistics.mean(step) / whole:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("choice", help="which sentence choice holds the answer")
    p.add_argument("--data", required=True)
    p.add_argument("--answers", required=True, help="KorQuAD_v1.0_dev.json (source file)")
    p.add_argument("--model", default=None, help="also measure dense sentence choice")
    p.add_argument("-n", type=int, default=0, help="at most this many questions (0: all)")
    p.set_defaults(run=choice)
    p = sub.add_parser("cost", help="ms per query of the highlight step")
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("-n", type=int, default=200)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--docs", type=int, default=0, help="index only the first N passages")
    p.set_defaults(run=cost)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
