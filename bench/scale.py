"""FAISS index types at scale: build time, size, memory, latency and recall@10 against exact.

Datasets (cached under --work, built once):

  synthetic  N 384-d unit vectors from a two-level Gaussian mixture (64 topics x 64 clusters,
             plus noise), each size a prefix of the largest; queries are held-out draws from the
             same mixture. Clustered like real embeddings; uniform random vectors would make
             every ANN index look bad.
  nsmc       ../shared/data/nsmc_reviews_corpus (200k Korean reviews) through a deterministic
             fake encoder (hashed character 1-3-grams, seeded Gaussian projection to 384-d);
             queries are 10-character prefixes of held-back reviews.

For each dataset and type one subprocess builds the index (train + add with kosearch.storage.ann's
plan) and writes it; a second, fresh one reads it and runs single-query searches, so its peak
RSS (VmHWM, minus that of a process that only imported faiss) is what serving costs. Exact
top-10 comes from an IndexFlat over the same vectors. `auto` is reported as the type it picks.

    python bench/scale.py --sizes 10000,100000 --types flat,ivf-sq8 --queries 100
    python bench/scale.py --nsmc --sizes 0            # the real-text check only
    python bench/scale.py --sweep                      # recall/latency for other nprobe/efSearch
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NSMC = ROOT.parent / "shared" / "data" / "nsmc_reviews_corpus" / "corpus.jsonl"
DIM = 384
K = 10
SWEEP = {"nprobe": (4, 8, 16, 32, 64, 128, 256), "ef_search": (16, 32, 64, 128, 256)}


def hwm_kib() -> int:
    """Peak resident set size of this process (VmHWM), KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


# -- datasets ---------------------------------------------------------------------------------


def synthetic(path: Path, n: int, seed: int, chunk: int = 100_000) -> None:
    """``n`` clustered unit vectors written to ``path`` (.npy), generated chunk by chunk."""
    model = np.random.default_rng(1338)  # the mixture is fixed; ``seed`` draws the points
    topics = model.standard_normal((64, DIM), dtype=np.float32)
    centers = np.repeat(topics, 64, axis=0) + 0.8 * model.standard_normal(
        (64 * 64, DIM), np.float32
    )
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centers[rng.integers(0, len(centers), m)]
        x += 1.3 * rng.standard_normal((m, DIM), dtype=np.float32)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    out.flush()


def hash_encode(texts: list[str], buckets: int = 1 << 16) -> np.ndarray:
    """Fake encoder: hashed character 1-3-gram counts (sqrt) projected to 384-d, unit length."""
    import scipy.sparse as sp

    projection = np.random.default_rng(7).standard_normal((buckets, DIM), dtype=np.float32)
    out = np.empty((len(texts), DIM), np.float32)
    for start in range(0, len(texts), 20_000):
        indptr, indices = [0], []
        for text in texts[start : start + 20_000]:
            grams = [text[i : i + w] for w in (1, 2, 3) for i in range(len(text) - w + 1)]
            indices += [zlib.crc32(g.encode()) % buckets for g in grams]
            indptr.append(len(indices))
        counts = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr),
            shape=(len(indptr) - 1, buckets),
        )
        counts.sum_duplicates()
        counts.data = np.sqrt(counts.data)
        block = np.asarray(counts @ projection, dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def model_encode(model_dir: str, texts: list[str], prompt_name: str) -> np.ndarray:
    """A real sentence-transformers model from a local directory (no download), unit length."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_dir, device="cpu", local_files_only=True)
    prompt = model.prompts.get(prompt_name, "")
    vectors = model.encode(texts, prompt=prompt, batch_size=128, normalize_embeddings=True)
    return np.asarray(vectors, dtype=np.float32)


def nsmc(work: Path, nq: int, docs: int, model: str | None) -> tuple[str, Path, Path]:
    """The first ``docs`` nsmc reviews (minus ``nq`` held back) and 10-character prefixes of the
    held-back ones as queries, through the hash encoder or the model at ``model``."""
    name = f"nsmc-{Path(model).name}" if model else "nsmc"
    data, queries = work / f"{name}-{docs}.npy", work / f"{name}-{docs}-q{nq}.npy"
    if not data.exists() or not queries.exists():
        texts = [json.loads(line)["text"] for line in NSMC.open(encoding="utf-8")][:docs]
        held = set(np.random.default_rng(3).choice(len(texts), nq, replace=False).tolist())
        corpus = [t for i, t in enumerate(texts) if i not in held]
        prefixes = [texts[i][:10] for i in sorted(held)]
        if model:
            np.save(queries, model_encode(model, prefixes, "query"))
            np.save(data, model_encode(model, corpus, "passage"))
        else:
            np.save(queries, hash_encode(prefixes))
            np.save(data, hash_encode(corpus))
    return name, data, queries


def exact_truth(data: Path, queries: Path, n: int, out: Path) -> None:
    """Exact top-K rows of each query among the first ``n`` vectors (inner product)."""
    import faiss

    xb = np.load(data, mmap_mode="r")
    index = faiss.IndexFlatIP(DIM)
    for start in range(0, n, 100_000):
        index.add(np.ascontiguousarray(xb[start : min(start + 100_000, n)]))
    _, rows = index.search(np.load(queries), K)
    np.save(out, rows)


# -- subprocess steps -------------------------------------------------------------------------


def step_build(args: argparse.Namespace) -> dict[str, Any]:
    """Plan, train, add and write one index; return the timings."""
    import faiss

    from kosearch.storage.ann import build_store, plan_index

    faiss.omp_set_num_threads(args.threads)
    xb = np.load(args.data, mmap_mode="r")[: args.n]
    plan = plan_index(args.type, args.n, DIM)
    t0 = time.perf_counter()
    store = build_store(xb, "cosine", plan, seed=0)
    build_s = time.perf_counter() - t0
    size = store.save(Path(args.out))
    return {"plan": plan.to_dict(), "build_s": build_s, "bytes": size, "build_hwm_kib": hwm_kib()}


def step_query(args: argparse.Namespace) -> dict[str, Any]:
    """Read one index (``--mmap`` to map it) and time single-query searches."""
    import faiss

    from kosearch.storage.ann import knn_recall
    from kosearch.storage.vectors import VectorStore

    faiss.omp_set_num_threads(args.query_threads)
    queries = np.load(args.qfile)
    truth = np.load(args.truth)
    t0 = time.perf_counter()
    store = VectorStore.load(Path(args.out), "cosine", mmap=args.mmap)
    load_s = time.perf_counter() - t0
    result: dict[str, Any] = {"load_s": load_s, "mapped": store.mapped}
    settings = [store.search_params()]
    if args.sweep:
        settings += [{name: v} for name in settings[0] for v in SWEEP[name]]
    rows_out = []
    for setting in settings:
        store.set_search_params(**setting)
        store.search(queries[:5], K)  # warm up
        times, found = [], []
        for q in queries:
            t = time.perf_counter()
            _, rows = store.search(q[None, :], K)
            times.append(time.perf_counter() - t)
            found.append(rows[0])
        ms = np.array(times) * 1000
        rows_out.append(
            {
                **setting,
                "p50_ms": float(np.percentile(ms, 50)),
                "p99_ms": float(np.percentile(ms, 99)),
                "recall": knn_recall(np.array(found), truth),
            }
        )
    result["settings"] = rows_out
    result["query_hwm_kib"] = hwm_kib()
    return result


def step_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """Peak RSS of a process that imports what the query step imports, and nothing else."""
    import faiss  # noqa: F401

    from kosearch.storage.vectors import VectorStore  # noqa: F401

    return {"hwm_kib": hwm_kib()}


def child(step: str, **options: object) -> dict[str, Any]:
    """Run one step in a fresh interpreter and return its JSON."""
    argv = [sys.executable, __file__, "--step", step]
    for key, value in options.items():
        if value is True:
            argv.append(f"--{key.replace('_', '-')}")
        elif value is not False and value is not None:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"step {step} {options} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- driver -----------------------------------------------------------------------------------


def run_dataset(
    name: str,
    data: Path,
    queries: Path,
    n: int,
    args: argparse.Namespace,
    base_kib: int,
    work: Path,
) -> list[dict[str, Any]]:
    """Every requested type on the first ``n`` vectors of ``data``; one result row per setting."""
    from kosearch.storage.ann import plan_index

    truth = work / f"truth-{name}-{data.stem}-{n}-q{args.queries}.npy"
    if not truth.exists():
        exact_truth(data, queries, n, truth)
    results = []
    auto = plan_index("auto", n, DIM)
    print(f"\n## {name} n={n:,}: auto -> {auto.kind} ({auto.factory})", flush=True)
    for kind in args.types.split(","):
        if kind == "hnsw" and n > args.hnsw_max:
            print(f"(hnsw skipped above --hnsw-max {args.hnsw_max:,}: minutes to build here)")
            continue
        with tempfile.TemporaryDirectory(dir=work) as out:
            common = {
                "data": data,
                "n": n,
                "type": kind,
                "out": out,
                "threads": args.threads,
                "query_threads": args.query_threads,
            }
            built = child("build", **common)
            modes = [False, True] if args.mmap else [False]
            for mmap in modes:
                queried = child(
                    "query",
                    **common,
                    qfile=queries,
                    truth=truth,
                    mmap=mmap,
                    sweep=args.sweep and not mmap,
                )
                for setting in queried["settings"]:
                    row = {
                        "dataset": name,
                        "n": n,
                        "type": kind,
                        "mmap": queried["mapped"],
                        "factory": built["plan"]["factory"],
                        "build_s": built["build_s"],
                        "mb": built["bytes"] / 1e6,
                        "build_rss_mb": (built["build_hwm_kib"] - base_kib) / 1024,
                        "query_rss_mb": (queried["query_hwm_kib"] - base_kib) / 1024,
                        "load_s": queried["load_s"],
                        **setting,
                    }
                    results.append(row)
                    print(format_row(row), flush=True)
    return results


def format_row(row: dict[str, Any]) -> str:
    knob = "".join(f" {k}={row[k]}" for k in ("nprobe", "ef_search") if k in row)
    return (
        f"{row['dataset']:9} {row['n']:>9,} {row['type']:8} {row['factory']:14}{knob:12} "
        f"{'mmap' if row['mmap'] else 'ram ':4} build {row['build_s']:7.1f}s "
        f"file {row['mb']:8.1f}MB build-rss {row['build_rss_mb']:7.0f}MB "
        f"serve-rss {row['query_rss_mb']:7.0f}MB p50 {row['p50_ms']:6.2f}ms "
        f"p99 {row['p99_ms']:6.2f}ms recall@10 {row['recall']:.3f}"
    )


def markdown(results: list[dict[str, Any]]) -> str:
    """The rows at each index's default knobs (read into memory) as a Markdown table."""
    lines = [
        "| data | n | type | factory | knob | build s | file MB | serve RSS MB "
        "| p50 ms | p99 ms | recall@10 |",
        "|---|--:|---|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    seen = set()
    for row in results:
        key = (row["dataset"], row["n"], row["type"])
        if row["mmap"] or key in seen:
            continue
        seen.add(key)
        knob = ", ".join(f"{k} {row[k]}" for k in ("nprobe", "ef_search") if k in row) or "-"
        lines.append(
            f"| {row['dataset']} | {row['n']:,} | {row['type']} | {row['factory']} | {knob} "
            f"| {row['build_s']:.1f} | {row['mb']:.1f} | {row['query_rss_mb']:.0f} "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['recall']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        default="10000,50000,100000,200000,500000,1000000",
        help="synthetic collection sizes (comma-separated; 0 for none)",
    )
    parser.add_argument("--types", default="flat,hnsw,ivf-flat,ivf-sq8,ivf-pq")
    parser.add_argument("--queries", type=int, default=200, help="single-query searches per run")
    parser.add_argument("--threads", type=int, default=2, help="FAISS threads for building")
    parser.add_argument(
        "--query-threads",
        type=int,
        default=1,
        help="FAISS threads for the single-query searches (OpenMP start-up and "
        "spinning make 2 threads slower than 1 for one query on this machine)",
    )
    parser.add_argument(
        "--hnsw-max", type=int, default=200_000, help="skip hnsw above this size (slow to build)"
    )
    parser.add_argument("--nsmc", action="store_true", help="also run the nsmc real-text check")
    parser.add_argument("--nsmc-docs", type=int, default=200_000, help="nsmc reviews to use")
    parser.add_argument(
        "--model",
        default=None,
        help="encode nsmc with this local sentence-transformers model "
        "directory instead of the hash encoder (e.g. ../shared/models/me5-small-ko)",
    )
    parser.add_argument("--mmap", action="store_true", help="also query each index memory-mapped")
    parser.add_argument("--sweep", action="store_true", help="also try other nprobe/efSearch")
    parser.add_argument("--work", default=None, help="cache folder (default: a temp folder)")
    parser.add_argument("--json", default=None, help="write all result rows to this file")
    # internal: one step in a subprocess
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)
    for name in ("data", "n", "type", "out", "truth", "qfile"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        args.n = int(args.n) if args.n else 0
        step = {"build": step_build, "query": step_query, "baseline": step_baseline}[args.step]
        print(json.dumps(step(args)))
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="kosearch-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if int(s) > 0]
    base_kib = int(child("baseline")["hwm_kib"])
    print(
        f"threads={args.threads} query-threads={args.query_threads} queries={args.queries} "
        f"baseline-rss={base_kib / 1024:.0f}MB cpus={os.cpu_count()}",
        flush=True,
    )
    results = []
    if sizes:
        data, queries = (
            work / f"synthetic-{max(sizes)}.npy",
            work / f"synthetic-q{args.queries}.npy",
        )
        if not data.exists():
            synthetic(data, max(sizes), seed=1)
        if not queries.exists():
            synthetic(queries, args.queries, seed=2)
        for n in sizes:
            results += run_dataset("synthetic", data, queries, n, args, base_kib, work)
    if args.nsmc:
        name, data, queries = nsmc(work, args.queries, args.nsmc_docs, args.model)
        n = int(np.load(data, mmap_mode="r").shape[0])
        results += run_dataset(name, data, queries, n, args, base_kib, work)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print("\n" + markdown(results))


if __name__ == "__main__":
    main()
