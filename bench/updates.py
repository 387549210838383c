"""Incremental updates against a full rebuild: add 1%, change 1%, delete 1% of an N-document index.

Builds a flat index (BM25 on) from the first N NSMC reviews, then times each update as a fresh
operation on its own copy of that index (``shutil.copytree`` and ``Index.load`` untimed):

  add 1%                  ``index.add(FILE)`` with 1% new documents (the reviews after the first
                          N; variants of indexed reviews under new ids when the corpus has no more);
  change 1% (changed)     ``index.upsert(FILE)`` with only the 1% changed documents (same ids,
                          text with a sentence appended);
  change 1% (full corpus) ``index.upsert(FILE)`` with all N documents, 1% of them changed: what
                          ``kosearch index CORPUS -o EXISTING`` does (every document is read and
                          hashed, only the changed ones are encoded);
  delete 1%               ``index.delete(ids)``;
  full rebuild            ``Index.build`` of the final corpus (N - 1% deleted + 1% changed + 1%
                          added = N documents) into a new directory: the baseline.

Every run uses the same stand-in encoder (``BenchEncoder``): the real model's tokenizer, token
limit and prompts, so chunking is exactly that of a real run, but the forward pass replaced by
hashing, which is nearly free. So the measured seconds are kosearch's own work (reading, hashing,
chunking, Kiwi/BM25, FAISS, Parquet, atomic swap). The figure a user cares about adds the model:
the same run measures the real model's passages/s on 500 reviews, and the "projected" columns are
``measured - stand-in encoding time + passages encoded / real passages/s`` (model loading, a
constant of a few seconds for an update or a rebuild alike, is left out).

    .venv/bin/python bench/updates.py --docs 20000              # a few minutes on 2 busy cores
    .venv/bin/python bench/updates.py --docs 200000 --json      # the issue's 200k figure
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from kosearch.index import Index

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "nsmc_reviews_corpus" / "corpus.jsonl"
MODEL = ROOT.parent / "shared" / "models" / "me5-small-ko"
CHANGE_SUFFIX = " 다시 보니 생각이 조금 달라졌다."
VARIANT_SUFFIX = " (재관람 후기)"
_BITS = 64  # digest bits projected onto the vector


class BenchEncoder:
    """A stand-in for a sentence-transformers model: the real tokenizer, a hashing "forward pass".

    Vectors are a fixed random projection of 64 bits of each text's blake2b digest, L2-normalized:
    deterministic per text (an update and a rebuild store the same vector), no torch, and about a
    microsecond per passage. ``seconds`` and ``passages`` count the time spent in
    :meth:`encode_passages`, so a benchmark can subtract it and add the real model's instead.
    The tokenizer, ``max_tokens`` and prompts come from ``model`` when it exists locally, so that
    chunking is what a real run would do; otherwise a whitespace word-level tokenizer is used.
    """

    def __init__(self, dim: int = 384, model: Path = MODEL, max_tokens: int = 512) -> None:
        self.name = f"bench-hash-{dim}"
        self.dim = dim
        self.max_tokens = max_tokens
        self.query_prompt = "query: "
        self.passage_prompt = "passage: "
        self.fingerprint = hashlib.sha256(self.name.encode()).hexdigest()[:16]
        self._model = model
        self._tokenizer: Any = None
        self._projection = (
            np.random.default_rng(1338).standard_normal((_BITS, dim)).astype(np.float32)
        )
        self.seconds = 0.0
        self.passages = 0

    def _encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        digests = b"".join(
            hashlib.blake2b(t.encode("utf-8"), digest_size=_BITS // 8).digest() for t in texts
        )
        bits = np.unpackbits(np.frombuffer(digests, np.uint8)).reshape(len(texts), _BITS)
        out = (bits.astype(np.float32) * 2 - 1) @ self._projection
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    def encode_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        return self._encode([self.query_prompt + t for t in texts])

    def encode_passages(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> NDArray[np.float32]:
        start = time.perf_counter()
        out = self._encode([self.passage_prompt + t for t in texts])
        self.seconds += time.perf_counter() - start
        self.passages += len(texts)
        if on_batch is not None:
            on_batch(len(texts))
        return out

    @property
    def backend_tokenizer(self) -> Any:
        """The model's ``tokenizers.Tokenizer`` (a whitespace word-level one without the model)."""
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            path = self._model / "tokenizer.json"
            if path.is_file():
                self._tokenizer = Tokenizer.from_file(str(path))
            else:
                from tokenizers.models import WordLevel
                from tokenizers.pre_tokenizers import WhitespaceSplit

                self._tokenizer = Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
                self._tokenizer.pre_tokenizer = WhitespaceSplit()
        return self._tokenizer


def read_records(path: Path, n: int) -> list[dict[str, Any]]:
    """The first ``n`` records of a JSONL file."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in islice(f, n)]


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def _every(records: Sequence[dict[str, Any]], share: float, offset: int) -> list[int]:
    """Positions of ``share`` of the records, spread evenly, starting at ``offset``."""
    step = round(1 / share)
    return list(range(offset % step, len(records), step))


def workload(
    records: list[dict[str, Any]], spare: list[dict[str, Any]], share: float
) -> dict[str, Any]:
    """The added, changed and deleted documents, and the corpora before and after them."""
    changed_at = _every(records, share, 37)
    deleted_at = set(_every(records, share, 71))
    changed = [{**records[i], "text": records[i]["text"] + CHANGE_SUFFIX} for i in changed_at]
    count = len(changed_at)
    if len(spare) >= count:
        added, source = spare[:count], "held-out reviews"
    else:  # the whole corpus is indexed: add variants of indexed reviews under new ids
        picks = _every(records, share, 53)[:count]
        added = [
            {
                **records[i],
                "id": f"{records[i]['id']}-v2",
                "text": records[i]["text"] + VARIANT_SUFFIX,
            }
            for i in picks
        ]
        source = "variants of indexed reviews (new ids)"
    by_pos = dict(zip(changed_at, changed))
    after_change = [by_pos.get(i, r) for i, r in enumerate(records)]
    final = [r for i, r in enumerate(after_change) if i not in deleted_at] + added
    return {
        "added": added,
        "changed": changed,
        "after_change": after_change,
        "final": final,
        "deleted_ids": [records[i]["id"] for i in sorted(deleted_at)],
        "added_source": source,
    }


def real_rate(model: Path, texts: list[str], batch_size: int) -> dict[str, float]:
    """Passages per second of the real model on ``texts`` (after a warm-up), and its load time."""
    from kosearch.encoding.encoder import SentenceTransformerEncoder

    start = time.perf_counter()
    encoder = SentenceTransformerEncoder(str(model), device="cpu", batch_size=batch_size)
    load_s = time.perf_counter() - start
    encoder.encode_passages(texts[:batch_size])
    start = time.perf_counter()
    encoder.encode_passages(texts)
    seconds = time.perf_counter() - start
    return {
        "passages": len(texts),
        "seconds": seconds,
        "rate": len(texts) / seconds,
        "load_s": load_s,
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed_update(
    name: str, base: Path, scratch: Path, encoder: BenchEncoder, action: Callable[[Index], Any]
) -> dict[str, Any]:
    """Run ``action`` on a fresh copy of the index at ``base``; time only the action."""
    copy = scratch / f"idx-{name}"
    shutil.copytree(base, copy)
    index = Index.load(copy, encoder=encoder)
    encoder.seconds, encoder.passages = 0.0, 0
    start = time.perf_counter()
    report = action(index)
    seconds = time.perf_counter() - start
    result = _result(name, seconds, encoder, report, len(index))
    del index
    shutil.rmtree(copy)
    return result


def _result(
    name: str, seconds: float, encoder: BenchEncoder, report: Any, size: int
) -> dict[str, Any]:
    _log(f"  {name}: {seconds:.1f} s, {report.summary()}, {report.encoded} encoded")
    return {
        "operation": name,
        "seconds": seconds,
        "stand_in_encode_s": encoder.seconds,
        "encoded": report.encoded,
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "deleted": report.deleted,
        "passages_after": size,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    share = args.share / 100
    records = read_records(Path(args.corpus), args.docs)
    spare = read_records(Path(args.corpus), args.docs + round(args.docs * share))[len(records) :]
    work = workload(records, spare, share)
    encoder = BenchEncoder(model=Path(args.model))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kosearch-bench-", dir=args.tmp) as tmp:
        scratch = Path(tmp)
        files = {
            name: write_jsonl(scratch / f"{name}.jsonl", work[name] if name in work else records)
            for name in ("base", "added", "changed", "after_change", "final")
        }
        _log(f"building the base index of {len(records)} documents")
        start = time.perf_counter()
        Index.build(
            files["base"],
            scratch / "base",
            encoder=encoder,
            index_type="flat",
            lexical=not args.no_lexical,
        )
        build_s = time.perf_counter() - start
        _log(f"  base build: {build_s:.1f} s")
        base = scratch / "base"
        updates = [
            ("add", lambda ix: ix.add(files["added"])),
            ("change (changed docs)", lambda ix: ix.upsert(files["changed"])),
            ("change (full corpus)", lambda ix: ix.upsert(files["after_change"])),
            ("delete", lambda ix: ix.delete(work["deleted_ids"])),
        ]
        for name, action in updates:
            results.append(timed_update(name, base, scratch, encoder, action))
        encoder.seconds, encoder.passages = 0.0, 0
        start = time.perf_counter()
        rebuilt = Index.build(
            files["final"],
            scratch / "rebuild",
            encoder=encoder,
            index_type="flat",
            lexical=not args.no_lexical,
        )
        results.append(
            _result(
                "full rebuild",
                time.perf_counter() - start,
                encoder,
                rebuilt.last_report,
                len(rebuilt),
            )
        )
    texts = [r["text"] for r in records[: args.model_passages]]
    model = real_rate(Path(args.model), texts, args.batch_size) if args.model_passages else None
    return {
        "documents": len(records),
        "share_percent": args.share,
        "per_operation": len(work["changed"]),
        "added_source": work["added_source"],
        "lexical": not args.no_lexical,
        "base_build_s": build_s,
        "model": str(args.model),
        "real_model": model,
        "results": _project(results, model),
    }


def _project(results: list[dict[str, Any]], model: dict[str, float] | None) -> list[dict[str, Any]]:
    """Add the projected real-model seconds and the ratios to the rebuild."""
    rebuild = results[-1]
    for r in results:
        r["vs_rebuild"] = r["seconds"] / rebuild["seconds"]
        if model is not None:
            r["projected_s"] = r["seconds"] - r["stand_in_encode_s"] + r["encoded"] / model["rate"]
    if model is not None:
        for r in results:
            r["projected_vs_rebuild"] = r["projected_s"] / rebuild["projected_s"]
    return results


def print_table(out: dict[str, Any]) -> None:
    model = out["real_model"]
    lexical = "BM25 on" if out["lexical"] else "BM25 off"
    print(
        f"{out['documents']:,} NSMC reviews, flat index, {lexical}; "
        f"{out['per_operation']:,} documents ({out['share_percent']:g}%) per operation, "
        f"each on a fresh copy of the index; added documents: {out['added_source']}"
    )
    print(f"base build {out['base_build_s']:.1f} s (stand-in encoder)")
    head = f"{'operation':<24} {'encoded':>8} {'measured s':>11} {'vs rebuild':>11}"
    if model is not None:
        head += f" {'projected s':>12} {'vs rebuild':>11}"
    print(head)
    for r in out["results"]:
        line = (
            f"{r['operation']:<24} {r['encoded']:>8,} {r['seconds']:>11.1f} "
            f"{r['vs_rebuild']:>10.3f}x"
        )
        if model is not None:
            line += f" {r['projected_s']:>12.1f} {r['projected_vs_rebuild']:>10.3f}x"
        print(line)
    print(
        "measured: with the stand-in encoder (real tokenizer and chunking, hashing instead of "
        "the forward pass)"
    )
    if model is not None:
        print(
            f"projected: measured - stand-in encoding + encoded / {model['rate']:.1f} passages/s "
            f"(me5-small-ko on CPU, {model['passages']} NSMC reviews in {model['seconds']:.1f} s, "
            f"this run); model load ({model['load_s']:.1f} s) not included"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=200_000, help="documents in the base index")
    parser.add_argument("--share", type=float, default=1.0, help="percent added/changed/deleted")
    parser.add_argument("--corpus", default=str(DATA), help="JSONL with id and text fields")
    parser.add_argument(
        "--model",
        default=str(MODEL),
        help="local model: its tokenizer for chunking, and its passages/s",
    )
    parser.add_argument(
        "--model-passages",
        type=int,
        default=500,
        help="passages timed with the real model (0: no projection)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="real model batch size")
    parser.add_argument("--no-lexical", action="store_true", help="build without BM25")
    parser.add_argument("--tmp", default=None, help="scratch directory (default: system temp)")
    parser.add_argument("--json", action="store_true", help="print one JSON object, not a table")
    args = parser.parse_args()
    out = run(args)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        print_table(out)


if __name__ == "__main__":
    main()
