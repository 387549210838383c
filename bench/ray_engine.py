"""The Ray engine against a local build: same corpus, same model, same machine, one run.

Builds the first N documents of a corpus twice, in this order: a local build
(``Index.build(...)``, one process, torch on every core) and a Ray build on a local cluster
(``ray.init(num_cpus=C)`` started before the clock, as a cluster that is already up;
``Index.build(..., engine="ray", workers=W)``). Both are timed end to end (model loading
included) and by phase, by wrapping the run's methods: reading + chunking, encoding, writing the
index directory (passages, FAISS, BM25). The Ray build's encoding phase also reads, parses,
chunks and analyzes for BM25 (on the workers); its write phase is the driver's alone.

``--rounds`` (default 3) repeats both builds, alternating which goes first, and reports medians
(each Ray build gets a fresh local cluster, started and stopped outside its clock, so the local
builds never run beside an idle Ray).

Reported: passages/s of both, the engine's overhead (``ray seconds / local seconds - 1``), and a
**projection** (not a measurement) of cluster throughput: each worker's measured rate times the
number of workers, with the driver's serial parts (scan, final write) added as measured here
(Amdahl); it assumes the workers of the cluster are as fast as this machine's and that the
network and the object store keep up.

    .venv/bin/python bench/ray_engine.py --docs 2000 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpuinfo import cpu_line  # noqa: E402

DATA = Path(os.environ.get("KOSEARCH_TEST_DATA", "/work/shared/data"))
MODEL = os.environ.get("KOSEARCH_TEST_MODEL", "/work/shared/models/me5-small-ko")


def _timed(cls: Any, name: str, phases: dict[str, float], label: str) -> None:
    """Wrap ``cls.name`` so that its seconds add up in ``phases[label]``."""
    original = getattr(cls, name)

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - start

    setattr(cls, name, wrapper)


def _first_docs(source: Path, n: int, out: Path) -> Path:
    with source.open(encoding="utf-8") as f, out.open("w", encoding="utf-8") as w:
        for i, line in enumerate(f):
            if i >= n:
                break
            w.write(line)
    return out


def _run(build: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    index = build()
    return index, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path,
                        default=DATA / "nsmc_reviews_corpus" / "corpus.jsonl")
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2,
                        help="CPUs of the local Ray cluster")
    parser.add_argument("--project", type=int, nargs="*", default=[8, 32, 128],
                        help="worker counts to project cluster throughput for")
    parser.add_argument("--docs-per-call", type=int, default=None,
                        help="documents per actor call (default: RayOptions' own)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="local and Ray builds, alternating which goes first; medians")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import ray

    from kosearch.build import lifecycle, ray_run, run
    from kosearch.index import Index

    if args.docs_per_call is not None:
        original_options = lifecycle.engine_options

        def engine_options(*a: Any, **k: Any) -> Any:
            options = original_options(*a, **k)
            return None if options is None else dataclasses.replace(
                options, docs_per_call=args.docs_per_call)

        lifecycle.engine_options = engine_options

    local_phases: dict[str, float] = {}
    ray_phases: dict[str, float] = {}
    original_spool = run._spool_passages

    def spool(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return original_spool(*a, **k)
        finally:
            local_phases["read+chunk"] = time.perf_counter() - start

    run._spool_passages = spool
    original_encode = run._encode_spool

    def encode(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return original_encode(*a, **k)
        finally:
            local_phases["encode"] = time.perf_counter() - start

    run._encode_spool = encode
    _timed(run.Run, "_assemble", local_phases, "write")
    _timed(ray_run.RayRun, "_scan", ray_phases, "scan")
    _timed(ray_run.RayRun, "_encode", ray_phases, "read+chunk+encode+bm25")
    _timed(ray_run.RayRun, "_merge", ray_phases, "write")
    _timed(ray_run.RayRun, "_assemble", ray_phases, "write")

    def ray_build(corpus: Path, out: Path, options: dict[str, Any]) -> tuple[Any, float, float]:
        """A Ray build on a fresh local cluster, started and stopped outside the clock."""
        start = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
        cluster_s = time.perf_counter() - start
        try:
            index, seconds = _run(lambda: Index.build(corpus, out, engine="ray",
                                                      workers=args.workers, **options))
        finally:
            ray.shutdown()
        return index, seconds, cluster_s

    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kosearch-ray-bench-") as tmp:
        root = Path(tmp)
        corpus = _first_docs(args.corpus, args.docs, root / "corpus.jsonl")
        options = {"model": args.model, "index_type": "flat"}
        for round_no in range(args.rounds):
            # the order alternates, so that a load that rises or falls hits both alike
            order = ("local", "ray") if round_no % 2 == 0 else ("ray", "local")
            row: dict[str, Any] = {"order": "/".join(order)}
            for which in order:
                target = root / f"{which}-{round_no}"
                if which == "local":
                    local_phases.clear()
                    local, seconds = _run(lambda t=target: Index.build(corpus, t, **options))
                    row["local"] = (seconds, dict(local_phases))
                else:
                    ray_phases.clear()
                    remote, seconds, cluster_s = ray_build(corpus, target, options)
                    row["ray"] = (seconds, dict(ray_phases), cluster_s)
            n = len(local)
            row["same_index"] = len(remote) == n and bool(np.allclose(
                remote.store.reconstruct(range(n)), local.store.reconstruct(range(n)),
                atol=1e-4))
            row["load"] = os.getloadavg()[0]
            print(f"round {round_no + 1} ({row['order']}, load {row['load']:.1f}): local "
                  f"{row['local'][0]:.1f} s, ray {row['ray'][0]:.1f} s, overhead "
                  f"{row['ray'][0] / row['local'][0] - 1:+.1%}", file=sys.stderr, flush=True)
            rounds.append(row)
            for which in ("local", "ray"):
                shutil.rmtree(root / f"{which}-{round_no}")

    local_s = statistics.median(r["local"][0] for r in rounds)
    ray_s = statistics.median(r["ray"][0] for r in rounds)
    mid = sorted(rounds, key=lambda r: r["ray"][0])[(len(rounds) - 1) // 2]
    local_phases, ray_phases, cluster_s = mid["local"][1], mid["ray"][1], mid["ray"][2]
    encode_s = ray_phases.get("read+chunk+encode+bm25", 0.0)
    serial_s = ray_s - encode_s  # driver: model load for identity, scan, final write
    per_worker = n / encode_s / args.workers if encode_s else 0.0
    projection = {
        str(w): round(n / (serial_s + n / (per_worker * w)), 1) if per_worker else None
        for w in args.project
    }
    result = {
        "cpu": cpu_line(), "corpus": str(args.corpus), "documents": args.docs, "passages": n,
        "model": args.model, "workers": args.workers, "ray_cpus": args.cpus,
        "docs_per_call": args.docs_per_call,
        "rounds": args.rounds, "same_index": all(r["same_index"] for r in rounds),
        "local": {"seconds": round(local_s, 1), "passages_per_s": round(n / local_s, 1),
                  "phases_s": {k: round(v, 1) for k, v in local_phases.items()}},
        "ray": {"seconds": round(ray_s, 1), "passages_per_s": round(n / ray_s, 1),
                "cluster_start_s": round(cluster_s, 1),
                "phases_s": {k: round(v, 1) for k, v in ray_phases.items()},
                "per_worker_passages_per_s": round(per_worker, 1)},
        "overhead": round(ray_s / local_s - 1, 3),
        "overhead_per_round": [round(r["ray"][0] / r["local"][0] - 1, 3) for r in rounds],
        "projection_passages_per_s_by_workers": projection,
        "projection_note": "a projection, not a measurement: measured per-worker rate x workers, "
                           "plus this run's driver-side serial seconds",
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
