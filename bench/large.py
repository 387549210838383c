"""Serving a multi-million-passage index in bounded memory: build, sizes, RSS and latency.

Synthetic indexes of N passages (default 1M and 5M), each a complete kosearch index directory
(``manifest.json``, ``vectors.faiss``, ``passages.parquet`` + ``passages.arrow``, ``lexical/``)
that ``Index.load`` opens like any other:

- vectors: a **stand-in encoder**, clustered random unit vectors (64 topics x 64 clusters plus
  noise) of dimension ``--dim`` (default 64, not the model's 384: HNSW over millions of 384-d
  vectors takes hours on 2 shared cores); queries are held-out draws from the same mixture;
- passages: short Korean texts, the 200k NSMC reviews (``../shared/data/nsmc_reviews_corpus``)
  cycled, one passage per document (ids ``d0000000``...), with metadata ``year`` (int),
  ``category`` (string) and ``score`` (float), written by kosearch's own ``PassageWriter``;
- BM25: the reviews analyzed once by kosearch's Kiwi analyzer, the term lists cycled to N rows
  and scored by kosearch's ``LexicalIndex`` (the same files a build writes).

Steps run in fresh processes: ``vectors`` (the .npy), ``faiss`` (one index type), ``passages``
(table + BM25), then ``serve``: a fresh process loads the index with ``Index.load`` and runs
``--queries`` dense single-query searches through ``Index.search_batch`` with the query vectors
given (hits carry their passage text, title, metadata: the rows are fetched), then BM25
(lexical) searches and filtered dense searches. It reports RSS (anonymous and file-backed, from
/proc/self/status) after load and after the queries, the Arrow memory pool, and p50/p99.

    nice -n 10 python bench/large.py --sizes 1000000 --work /tmp/kosearch-large
    nice -n 10 python bench/large.py --sizes 1000000,5000000 --types hnsw,ivf-sq8 --json out.json
    python bench/large.py --sizes 20000 --queries 100        # a quick check (a minute)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NSMC = ROOT.parent / "shared" / "data" / "nsmc_reviews_corpus" / "corpus.jsonl"
K = 10
MB = 1e6
FAISS_HIT = type("FaissHit", (), {"text": "-"})()  # stands for a hit in timed()


def proc_status() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile and VmHWM of this process, in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024
    return out


def mixture(n: int, dim: int, seed: int, out: Path, chunk: int = 200_000) -> None:
    """``n`` clustered unit vectors (a two-level Gaussian mixture) written to ``out`` (.npy)."""
    model = np.random.default_rng(1338)
    topics = model.standard_normal((64, dim), dtype=np.float32)
    centers = np.repeat(topics, 64, axis=0) + 0.8 * model.standard_normal((64 * 64, dim),
                                                                           np.float32)
    rng = np.random.default_rng(seed)
    tmp = out.with_suffix(".tmp.npy")
    array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centers[rng.integers(0, len(centers), m)]
        x += 1.3 * rng.standard_normal((m, dim), dtype=np.float32)
        array[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    array.flush()
    del array
    os.replace(tmp, out)


def reviews() -> list[str]:
    """The NSMC review texts (the first ``KOSEARCH_BENCH_REVIEWS`` of them, if set)."""
    limit = int(os.environ.get("KOSEARCH_BENCH_REVIEWS", "0")) or None
    return [json.loads(line)["text"] for line in NSMC.open(encoding="utf-8")][:limit]


# -- steps (each in a fresh process) ----------------------------------------------------------


def step_faiss(args: argparse.Namespace) -> dict[str, Any]:
    """Build one FAISS index over the first ``n`` vectors with kosearch's plan."""
    import faiss

    from kosearch.storage.ann import build_store, plan_index

    faiss.omp_set_num_threads(args.threads)
    xb = np.load(args.data, mmap_mode="r")[: args.n]
    plan = plan_index(args.type, args.n, xb.shape[1])
    t0 = time.perf_counter()
    store = build_store(xb, "cosine", plan, seed=0)
    build_s = time.perf_counter() - t0
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    size = store.save(tmp)
    info = {**plan.to_dict(), "ntotal": store.ntotal, "bytes": size, "trained_on": args.n,
            "embeddings": False}
    (tmp / "faiss.json").write_text(json.dumps({"faiss": info, "build_s": build_s}))
    os.replace(tmp, out)
    return {"build_s": build_s, "bytes": size, "hwm": proc_status()["VmHWM"]}


def step_passages(args: argparse.Namespace) -> dict[str, Any]:
    """The passage table and BM25 part of ``n`` synthetic passages, into ``out``."""
    from kosearch.lexical.analyzers import MorphemeAnalyzer
    from kosearch.lexical.bm25 import LexicalIndex
    from kosearch.lexical.format import DocTerms
    from kosearch.storage.passages import PassageTable
    from kosearch.types import Passage

    texts = reviews()
    n, out = args.n, Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    categories = ["뉴스", "리뷰", "블로그", "논문", "법령", "위키"]
    t0 = time.perf_counter()
    with PassageTable.writer(tmp) as writer:
        for start in range(0, n, 50_000):
            rows = range(start, min(n, start + 50_000))
            passages = [Passage(f"d{i:08d}", 0, texts[i % len(texts)], 0,
                                len(texts[i % len(texts)]), f"제목 {i % 997}") for i in rows]
            metas = [{"year": 2000 + i % 25, "category": categories[i % 6],
                      "score": (i % 100) / 10} for i in rows]
            writer.append(passages, metas)
    passages_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    done = sorted(out.parent.glob("passages-*[0-9]/lexical"))
    if done:  # the reviews were analyzed for a smaller size: reuse their term lists
        earlier = LexicalIndex.load(done[0])
        analyzer, vocab = earlier.analyzer, earlier._vocab
        base = earlier._terms.lists(range(len(texts)), len(earlier))
    else:
        analyzer = MorphemeAnalyzer()
        vocab = {}
        base = [[vocab.setdefault(t, len(vocab)) for t in terms]
                for terms in analyzer.tokenize(texts)]
    analyze_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    docs = [base[i % len(base)] for i in range(n)]
    lexical = LexicalIndex._scored(analyzer, vocab, docs, k1=1.2, b=0.75)
    lexical._terms = DocTerms.from_lists(docs)
    del docs
    lexical.save(tmp / "lexical")
    bm25_s = time.perf_counter() - t0
    (tmp / "lexical.json").write_text(json.dumps(lexical.config()))
    os.replace(tmp, out)
    return {"passages_s": passages_s, "analyze_200k_s": analyze_s, "bm25_s": bm25_s,
            "hwm": proc_status()["VmHWM"]}


def assemble(index: Path, faiss_dir: Path, passages_dir: Path, n: int, dim: int) -> None:
    """An index directory of hard links to the built parts, with its manifest."""
    import pyarrow.parquet as pq

    from kosearch.storage.manifest import Manifest, ModelInfo, now_iso, write_manifest
    from kosearch.storage.metadata import schema_of

    index.mkdir(parents=True, exist_ok=True)
    for source in [faiss_dir / "vectors.faiss", *sorted(passages_dir.glob("passages.*"))]:
        target = index / source.name
        target.unlink(missing_ok=True)
        os.link(source, target)
    lexical = index / "lexical"
    lexical.mkdir(exist_ok=True)
    for source in (passages_dir / "lexical").iterdir():
        (lexical / source.name).unlink(missing_ok=True)
        os.link(source, lexical / source.name)
    faiss_info = json.loads((faiss_dir / "faiss.json").read_text())["faiss"]
    stamp = now_iso()
    manifest = Manifest(
        model=ModelInfo(name="stand-in-random", dim=dim, fingerprint="stand-in", max_tokens=128),
        metric="cosine", faiss=faiss_info,
        counts={"documents": n, "passages": n, "skipped_empty": 0},
        chunking={"max_tokens": None, "overlap": 0, "enabled": False, "budget": 128},
        lexical=json.loads((passages_dir / "lexical.json").read_text()),
        fields={"id": "id", "text": "text", "title": "title"},
        created=stamp, updated=stamp, kosearch_version="bench",
        metadata=schema_of(pq.read_schema(passages_dir / "passages.parquet")),
    )
    write_manifest(index, manifest)


def step_serve(args: argparse.Namespace) -> dict[str, Any]:
    """Load the index in this fresh process; time searches; report memory."""
    import faiss
    import pyarrow as pa

    from kosearch import Index

    faiss.omp_set_num_threads(1)
    queries = np.load(args.qfile)
    texts = reviews()
    rng = np.random.default_rng(5)
    qtexts = [texts[i][:12] for i in rng.choice(len(texts), len(queries), replace=False)]
    before = proc_status()
    pool0 = pa.total_allocated_bytes()
    t0 = time.perf_counter()
    index = Index.load(args.index)
    load_s = time.perf_counter() - t0
    loaded = proc_status()
    out: dict[str, Any] = {"load_s": load_s, "import": before, "loaded": loaded,
                           "pool_after_load": pa.total_allocated_bytes() - pool0}

    def timed(fn: Any, items: Any) -> dict[str, float]:
        ms, cpu, empty = [], [], 0
        for item in items:
            t, c = time.perf_counter(), time.process_time()
            hits = fn(item)
            ms.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
            assert not hits or hits[0].text, "rows are fetched"
            empty += not hits
        arr = np.array(ms)
        return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
                "mean_ms": float(arr.mean()), "cpu_p50_ms": float(np.median(cpu)),
                "no_hits": empty}

    # Highlights off: they load Kiwi (~330 MB, a fixed cost measured by bench/snippets.py)
    # and analyze the hits, which is not what this bench measures.
    dense = lambda q: index.search_batch(["q"], K, mode="dense",  # noqa: E731
                                         query_vectors=q[None, :], highlights=False)[0]
    dense(queries[0])
    out["dense"] = timed(dense, queries)
    # the same searches in FAISS alone (no grouping, no rows): kosearch's part is the difference
    out["faiss_only"] = timed(lambda q: [FAISS_HIT] if index.store.search(q[None, :], 4 * K)
                              else [], queries)
    out["after_dense"] = proc_status()
    lexical = lambda q: index.search(q, K, mode="lexical", highlights=False)  # noqa: E731
    lexical(qtexts[0])
    out["lexical"] = timed(lexical, qtexts[: args.lexical_queries])
    spec = {"year": {"$gte": 2020}, "category": "뉴스"}
    filtered = lambda q: index.search_batch(["q"], K, mode="dense",  # noqa: E731
                                            query_vectors=q[None, :], filter=spec,
                                            highlights=False)[0]
    t = time.perf_counter()
    filtered(queries[0])
    out["filter_first_ms"] = (time.perf_counter() - t) * 1000
    out["filtered"] = timed(filtered, queries[: args.lexical_queries])
    out["after_all"] = proc_status()
    out["pool_after_all"] = pa.total_allocated_bytes() - pool0
    out["rows10"] = fetch_rows(index, Path(args.index), rng)
    return out


def fetch_rows(index: Any, path: Path, rng: Any, tries: int = 50) -> dict[str, float]:
    """p50 ms of fetching 10 random rows: from the mapped table, and from the Parquet (the
    row groups holding them, as a reader without the mirror must)."""
    import pyarrow.parquet as pq

    n = len(index.passages)
    parquet = pq.ParquetFile(path / "passages.parquet")
    group_rows = parquet.metadata.row_group(0).num_rows
    mapped, from_parquet = [], []
    for _ in range(tries):
        rows = sorted(rng.integers(0, n, 10).tolist())
        t = time.perf_counter()
        index.passages.rows(rows)
        mapped.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        groups = sorted({r // group_rows for r in rows})
        table = parquet.read_row_groups(groups, columns=["doc_id", "text", "title", "meta"])
        table.take([groups.index(r // group_rows) * group_rows + r % group_rows for r in rows])
        from_parquet.append((time.perf_counter() - t) * 1000)
    return {"mapped_p50_ms": float(np.median(mapped)),
            "parquet_p50_ms": float(np.median(from_parquet))}


def child(step: str, **options: Any) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--step", step]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"step {step} {options} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sizes_of(directory: Path) -> dict[str, float]:
    files = {"vectors.faiss": "faiss", "passages.parquet": "parquet",
             "passages.arrow": "arrow"}
    out = {label: (directory / name).stat().st_size / MB for name, label in files.items()
           if (directory / name).exists()}
    out["bm25"] = sum(f.stat().st_size for f in (directory / "lexical").iterdir()) / MB
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    """The result rows as a Markdown table (MB are 10^6 bytes; RSS = anonymous + file-backed)."""
    lines = [
        "| n | type | FAISS build s | faiss MB | parquet MB | arrow MB | BM25 MB "
        "| RSS after load MB (anon+file) | RSS after 1,000 queries MB (anon+file) "
        "| RSS after BM25 + filtered queries MB "
        "| dense p50/p99 ms (CPU p50; FAISS alone p50) | filtered p50/p99 ms | BM25 p50/p99 ms "
        "| 10 rows mapped/Parquet ms |",
        "|--:|---|--:|--:|--:|--:|--:|---|---|---|---|---|---|---|",
    ]

    def rss(status: dict[str, int]) -> str:
        return (f"{status['VmRSS'] / MB:.0f} ({status['RssAnon'] / MB:.0f}+"
                f"{status['RssFile'] / MB:.0f})")

    for r in rows:
        mb = r["mb"]
        lines.append(
            f"| {r['n']:,} | {r['type']} | {r['faiss_build_s']:.0f} | {mb['faiss']:.0f} "
            f"| {mb['parquet']:.0f} | {mb['arrow']:.0f} | {mb['bm25']:.0f} | {rss(r['loaded'])} "
            f"| {rss(r['after_dense'])} | {rss(r['after_all'])} "
            f"| {r['dense']['p50_ms']:.1f} / {r['dense']['p99_ms']:.0f} "
            f"({r['dense'].get('cpu_p50_ms', float('nan')):.1f} CPU; FAISS alone "
            f"{r.get('faiss_only', {}).get('p50_ms', float('nan')):.1f}) "
            f"| {r['filtered']['p50_ms']:.1f} / {r['filtered']['p99_ms']:.0f} "
            f"| {r['lexical']['p50_ms']:.1f} / {r['lexical']['p99_ms']:.0f} "
            f"| {r['rows10']['mapped_p50_ms']:.1f} / {r['rows10']['parquet_p50_ms']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000,5000000")
    parser.add_argument("--types", default="ivf-sq8,hnsw")
    parser.add_argument("--dim", type=int, default=64, help="stand-in vector dimension")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--lexical-queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="FAISS build threads")
    parser.add_argument("--only", default="faiss,passages,serve",
                        help="which phases to run (the others reuse the cache in --work)")
    parser.add_argument("--work", default="/tmp/kosearch-large")
    parser.add_argument("--json", default=None, help="append result rows to this file")
    parser.add_argument("--report", default=None, help="print the rows of this --json file "
                        "as a Markdown table and exit")
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)
    for name in ("data", "n", "type", "out", "index", "qfile"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.report:
        rows = [json.loads(line) for line in Path(args.report).read_text().splitlines() if line]
        print(markdown(rows))
        return
    if args.step:
        args.n = int(args.n) if args.n else 0
        step = {"faiss": step_faiss, "passages": step_passages, "serve": step_serve}[args.step]
        print(json.dumps(step(args)))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    types = args.types.split(",")
    phases = args.only.split(",")
    data = work / f"vectors-{max(sizes)}-d{args.dim}.npy"
    qfile = work / f"queries-{args.queries}-d{args.dim}.npy"
    if "faiss" in phases and not data.exists():
        mixture(max(sizes), args.dim, 1, data)
    if not qfile.exists():
        mixture(args.queries, args.dim, 2, qfile)
    for n in sizes:
        passages_dir = work / f"passages-{n}"
        if "passages" in phases and not passages_dir.exists():
            built = child("passages", n=n, out=passages_dir)
            (passages_dir / "build.json").write_text(json.dumps(built))
            print(f"passages n={n:,}: {built}", flush=True)
        for kind in types:
            faiss_dir = work / f"faiss-{kind}-{n}-d{args.dim}"
            if "faiss" in phases and not faiss_dir.exists():
                built = child("faiss", data=data, n=n, type=kind, out=faiss_dir,
                              threads=args.threads)
                print(f"faiss {kind} n={n:,}: {built}", flush=True)
            if "serve" not in phases:
                continue
            index = work / f"index-{kind}-{n}"
            assemble(index, faiss_dir, passages_dir, n, args.dim)
            served = child("serve", index=index, qfile=qfile, queries=args.queries,
                           lexical_queries=args.lexical_queries)
            row = {"n": n, "type": kind, "dim": args.dim,
                   "faiss_build_s": json.loads((faiss_dir / "faiss.json").read_text())["build_s"],
                   "build": json.loads((passages_dir / "build.json").read_text()),
                   "mb": sizes_of(index), **served}
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
