"""Peak memory of ``Index.build`` at two corpus sizes: does it grow by the vectors, not the texts?

Each build runs in a fresh Python process (flat index, one passage per NSMC review) that reports
its own peak RSS (``VmHWM``) and, per build phase, the RSS at the start, the peak within it and
the RSS at its end (the kernel's high-water mark is reset at each phase start through
``/proc/self/clear_refs``; the overall peak is the highest of them). A baseline process imports
the same modules and builds a 100-document index. The table then sets the growth of the peak
between the two sizes against what the added passages should cost: their float32 vectors, the
BM25 arrays (score matrix plus the per-row term ids kept for updates), and, for comparison,
their text bytes and the in-memory passage table.

The encoder is a stand-in (``BenchEncoder`` from bench/updates.py: the real model's tokenizer for
chunking, a hashing "forward pass", dim 384) so that a run takes minutes; a real model adds a
constant, its weights and torch (about 0.5-1 GB for me5-small-ko on CPU), at every size alike.

    .venv/bin/python bench/memory.py                       # 10k and 100k reviews, BM25 on
    .venv/bin/python bench/memory.py --sizes 10000,50000 --no-lexical --json
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "nsmc_reviews_corpus" / "corpus.jsonl"
DIM = 384
MIB = 2**20


class Meter:
    """Peak RSS per phase of this process, from /proc/self/status, resetting the peak per phase."""

    def __init__(self) -> None:
        self.phases: list[dict[str, Any]] = []
        self._peak = 0
        self._depth = 0
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.resettable = True
        except OSError:
            self.resettable = False

    @staticmethod
    def status() -> tuple[int, int]:
        """(VmRSS, VmHWM) in bytes."""
        fields = dict(
            line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
        )
        return (int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024)

    def peak(self) -> int:
        """The highest RSS so far, across every reset."""
        self._peak = max(self._peak, self.status()[1])
        return self._peak

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self._depth:  # a nested call (e.g. a retried load): counted in the outer phase
            yield
            return
        self.peak()
        if self.resettable:
            Path("/proc/self/clear_refs").write_text("5")
        start = self.status()[0]
        self._depth += 1
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._depth -= 1
            end, high = self.status()
            self._peak = max(self._peak, high)
            self.phases.append(
                {
                    "phase": name,
                    "start": start,
                    "peak": high if self.resettable else None,
                    "end": end,
                    "seconds": time.perf_counter() - t0,
                }
            )

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        """Replace ``owner.attribute`` (a function or method) by one timed as phase ``name``."""
        original = getattr(owner, attribute)
        descriptor = owner.__dict__.get(attribute) if isinstance(owner, type) else None
        func = descriptor.__func__ if isinstance(descriptor, classmethod) else original

        @functools.wraps(func)
        def measured(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return func(*args, **kwargs)

        setattr(
            owner,
            attribute,
            classmethod(measured) if isinstance(descriptor, classmethod) else measured,
        )


def child(corpus: str, out: str, lexical: bool) -> None:
    """Build one index and print a JSON line of memory figures (runs in a fresh process)."""
    meter = Meter()
    with meter.phase("imports"):
        import faiss  # noqa: F401
        import kiwipiepy  # noqa: F401
        import pyarrow.parquet  # noqa: F401
        import tokenizers  # noqa: F401

        from kosearch.build import run as indexer
        from kosearch.build import write as assemble
        from kosearch.index import Index

        if lexical:
            import bm25s  # noqa: F401

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from updates import BenchEncoder  # one stand-in encoder for every bench (bench/updates.py)
    for owner, attribute, name in (
        (indexer, "_spool_passages", "read + hash + chunk -> spool"),
        (indexer, "_encode_spool", "encode -> vectors.f32"),
        (assemble, "write_passages", "write passages.parquet"),
        (assemble, "write_vectors", "faiss add + write"),
        (assemble, "write_lexical", "BM25 analyze + score + write"),
        (indexer.Run, "_manifest", "manifest"),
        (Index, "load", "Index.load (the returned index)"),
    ):
        meter.wrap(owner, attribute, name)
    encoder = BenchEncoder(dim=DIM)
    index = Index.build(corpus, out, encoder=encoder, index_type="flat", lexical=lexical)
    memory = index.info()["memory"]
    terms = getattr(index.lexical, "_terms", None)  # bench only: the per-row term ids
    rss, _ = Meter.status()
    print(
        json.dumps(
            {
                "peak": meter.peak(),
                "rss_end": rss,
                "passages": len(index),
                "phases": meter.phases,
                "resettable": meter.resettable,
                "vectors_bytes": memory["vectors"],
                "table_bytes": memory["passages"],
                "bm25_matrix_bytes": memory["lexical"],
                "bm25_terms_bytes": int(terms.ids.nbytes + terms.indptr.nbytes)
                if terms is not None
                else 0,
                "vocab": len(getattr(index.lexical, "_vocab", {})),
            }
        )
    )


def write_corpus(source: Path, n: int, path: Path) -> int:
    """The first ``n`` lines of ``source`` into ``path``; returns the UTF-8 bytes of their texts."""
    text_bytes = 0
    with source.open(encoding="utf-8") as f, path.open("w", encoding="utf-8") as out:
        for line in islice(f, n):
            text_bytes += len(json.loads(line)["text"].encode("utf-8"))
            out.write(line)
    return text_bytes


def measure(
    source: Path, n: int, tmp: Path, lexical: bool, log: Callable[[str], None]
) -> dict[str, Any]:
    corpus = tmp / f"corpus-{n}.jsonl"
    text_bytes = write_corpus(source, n, corpus)
    flag = "--with-lexical" if lexical else "--no-lexical"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(corpus),
        str(tmp / f"idx-{n}"),
        flag,
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the build of {n} documents failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(documents=n, text_bytes=text_bytes, wall_s=time.perf_counter() - start)
    log(f"  {n:,} documents: peak {result['peak'] / MIB:,.0f} MiB, {result['wall_s']:.0f} s")
    return result


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:,.1f}"


def print_report(runs: list[dict[str, Any]], lexical: bool) -> None:
    base, small, large = runs
    print(
        f"Index.build peak RSS, NSMC reviews (one passage each), flat index, BM25 "
        f"{'on' if lexical else 'off'}, stand-in encoder dim {DIM} (a real model adds its weights "
        "and torch, the same at every size)"
    )
    print(f"{'documents':>10} {'passages':>9} {'peak MiB':>9} {'RSS at end':>11} {'build s':>8}")
    for r in runs:
        print(
            f"{r['documents']:>10,} {r['passages']:>9,} {_mib(r['peak']):>9} "
            f"{_mib(r['rss_end']):>11} {r['wall_s']:>8.0f}"
        )
    added = large["passages"] - small["passages"]
    growth = large["peak"] - small["peak"]
    vectors = added * DIM * 4
    bm25 = (
        large["bm25_matrix_bytes"]
        + large["bm25_terms_bytes"]
        - small["bm25_matrix_bytes"]
        - small["bm25_terms_bytes"]
    )
    rows = [
        (f"peak growth {small['documents']:,} -> {large['documents']:,}", growth),
        (f"  vectors added ({added:,} x {DIM} x 4 B)", vectors),
        ("  BM25 arrays added (score matrix + per-row term ids)", bm25),
        ("  vectors + BM25", vectors + bm25),
        ("  growth - (vectors + BM25)", growth - vectors - bm25),
        ("for comparison: text bytes added (UTF-8)", large["text_bytes"] - small["text_bytes"]),
        (
            "for comparison: passage table added (Arrow, in memory)",
            large["table_bytes"] - small["table_bytes"],
        ),
        ("baseline peak (imports + 100-document build)", base["peak"]),
    ]
    print()
    for label, value in rows:
        print(f"{label:<58} {_mib(value):>9} MiB")
    print(f"growth / (vectors + BM25) = {growth / (vectors + bm25):.2f}")
    print()
    print(
        f"per phase, MiB: start / peak / end at each size, and the rise within the phase "
        f"(peak - start) from {small['documents']:,} to {large['documents']:,}"
    )
    print(f"{'phase':<34} {small['documents']:>22,} {large['documents']:>22,} {'rise growth':>12}")
    for ps, pl in zip(small["phases"], large["phases"]):
        both = ps["peak"] is not None and pl["peak"] is not None
        rise = (pl["peak"] - pl["start"]) - (ps["peak"] - ps["start"]) if both else None
        print(
            f"{ps['phase']:<34} "
            f"{_mib(ps['start']):>6} /{_mib(ps['peak']):>6} /{_mib(ps['end']):>6}  "
            f"{_mib(pl['start']):>6} /{_mib(pl['peak']):>6} /{_mib(pl['end']):>6}  "
            f"{_mib(rise):>11}"
        )
    for r in (small, large):
        top = max(
            (p for p in r["phases"] if p["peak"] is not None), key=lambda p: p["peak"], default=None
        )
        if top is not None:
            print(f"{r['documents']:,} documents: the peak is reached in '{top['phase']}'")
    print(
        "A rise between one phase's end and the next one's start happened outside the phases "
        "(e.g. while the next call's arguments were computed). RSS includes the touched pages of "
        "memory-mapped files (a loaded index maps vectors.faiss and the BM25 term ids)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000", help="two document counts, small,large")
    parser.add_argument("--baseline", type=int, default=100, help="documents in the baseline build")
    parser.add_argument("--corpus", default=str(DATA), help="JSONL with id and text fields")
    lex = parser.add_mutually_exclusive_group()
    lex.add_argument(
        "--with-lexical",
        dest="lexical",
        action="store_true",
        default=True,
        help="build the BM25 part too (default)",
    )
    lex.add_argument("--no-lexical", dest="lexical", action="store_false", help="vectors only")
    parser.add_argument("--tmp", default=None, help="scratch directory (default: system temp)")
    parser.add_argument("--json", action="store_true", help="print one JSON object, not a table")
    parser.add_argument("--child", nargs=2, metavar=("CORPUS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, lexical=args.lexical)
        return
    small, large = (int(s) for s in args.sizes.split(","))

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="kosearch-mem-", dir=args.tmp) as tmp:
        runs = [
            measure(Path(args.corpus), n, Path(tmp), args.lexical, log)
            for n in (args.baseline, small, large)
        ]
    if args.json:
        print(json.dumps({"lexical": args.lexical, "dim": DIM, "runs": runs}))
    else:
        print_report(runs, args.lexical)


if __name__ == "__main__":
    main()
