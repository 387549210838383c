"""Throughput of chunking alone (no model encoding) on ko_open_docs.

For each budget: documents/s and passages/s of ``Chunker.chunk`` over the whole corpus, the time
split into Kiwi sentence splitting, tokenizing (offsets of the documents + the exact length of
every passage) and the rest (packing in Python), the characters Kiwi had to read, and the
passage lengths in tokens (prompt and special tokens included). CPU seconds are printed beside
wall seconds because the machine may be shared. ``--full-kiwi`` also times a plain Kiwi split
of every whole document, the cost the windowed splitting avoids; ``--giant`` chunks 300,000
characters of Korean on one line (with and without spaces).

    python bench/chunk.py --budgets 512 128 --workers 1 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "ko_open_docs" / "corpus.jsonl"
TOKENIZER = ROOT.parent / "shared" / "models" / "me5-small-ko" / "tokenizer.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=DATA, help="JSONL with id, title, text")
    parser.add_argument("--tokenizer", type=Path, default=TOKENIZER, help="tokenizer.json")
    parser.add_argument("--prompt", default="passage: ", help="the model's passage prompt")
    parser.add_argument("--max-tokens", type=int, default=512, help="the model's limit")
    parser.add_argument("--budgets", type=int, nargs="+", default=[512, 128])
    parser.add_argument("--overlap", type=int, default=0, help="overlap tokens")
    parser.add_argument("--workers", type=int, default=1, help="Kiwi worker threads")
    parser.add_argument("--threads", type=int, default=1, help="tokenizer threads (0 = all)")
    parser.add_argument("--limit", type=int, default=0, help="first N documents only")
    parser.add_argument("--full-kiwi", action="store_true", help="also split whole documents")
    parser.add_argument("--giant", action="store_true", help="also chunk 300k-char lines")
    return parser.parse_args()


class Clock:
    """Wall and CPU seconds spent inside wrapped calls."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def timed_classes() -> tuple[type, type]:
    """A splitter and a counter that time their batch calls."""
    from kosearch.ingest.sentences import SentenceSplitter
    from kosearch.ingest.tokens import TokenCounter

    class TimedSplitter(SentenceSplitter):
        clock = Clock()

        def split(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
            with self.clock:
                return super().split(texts)

    class TimedCounter(TokenCounter):
        clock = Clock()

        def spans_batch(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
            with self.clock:
                return super().spans_batch(texts)

        def full_length(self, texts: Sequence[str]) -> list[int]:
            with self.clock:
                return super().full_length(texts)

        def full_length_with_spans(
            self, texts: Sequence[str]
        ) -> list[tuple[int, list[tuple[int, int]]]]:
            with self.clock:
                return super().full_length_with_spans(texts)

    return TimedSplitter, TimedCounter


def percentiles(values: list[int]) -> str:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return f"min {ordered[0]}  p50 {pick(0.5)}  p90 {pick(0.9)}  max {ordered[-1]}"


def run_budget(args: argparse.Namespace, docs: list, budget: int) -> None:
    from kosearch.ingest.chunk import Chunker
    from kosearch.settings import ChunkSettings

    splitter_cls, counter_cls = timed_classes()
    splitter = splitter_cls(num_workers=args.workers)
    splitter.split(["Kiwi를 미리 불러 둔다."])  # model load is not chunking time
    splitter_cls.clock = Clock()
    splitter.chars_analyzed = 0
    counter = counter_cls.from_file(
        str(args.tokenizer), max_tokens=args.max_tokens, prompt=args.prompt
    )
    counter_cls.clock = Clock()
    chunker = Chunker(
        counter, ChunkSettings(max_tokens=budget, overlap=args.overlap), splitter=splitter
    )
    with Clock() as total:
        passages = chunker.chunk(docs)
    kiwi, tok = splitter_cls.clock, counter_cls.clock
    splitter_cls.clock, counter_cls.clock = Clock(), Clock()  # stop counting
    chars = sum(len(d.text) for d in docs)
    lengths = counter.full_length([chunker.encode_text(p) for p in passages])
    print(
        f"\nbudget {budget} (overlap {args.overlap}): {len(docs)} docs -> {len(passages)} passages"
    )
    print(
        f"  total      {total.wall:6.2f} s wall  {total.cpu:6.2f} s cpu   "
        f"{len(docs) / total.wall:6.0f} docs/s  {len(passages) / total.wall:6.0f} passages/s (wall)"
        f"  {len(docs) / total.cpu:6.0f} docs/s (cpu)"
    )
    for name, clock in (("kiwi", kiwi), ("tokenizer", tok)):
        print(
            f"  {name:10} {clock.wall:6.2f} s wall  {clock.cpu:6.2f} s cpu   "
            f"{100 * clock.wall / total.wall:4.0f}% of wall"
        )
    rest = total.wall - kiwi.wall - tok.wall
    share = 100 * rest / total.wall
    print(f"  packing    {rest:6.2f} s wall                       {share:4.0f}% of wall")
    print(
        f"  kiwi read  {splitter.chars_analyzed:,} of {chars:,} characters "
        f"({100 * splitter.chars_analyzed / chars:.0f}%)"
    )
    print(f"  tokens/passage  {percentiles(lengths)}  mean {statistics.mean(lengths):.0f}")
    print(f"  stats      {chunker.stats}")


def run_full_kiwi(args: argparse.Namespace, docs: list) -> None:
    from kosearch.ingest.sentences import SentenceSplitter

    splitter = SentenceSplitter(num_workers=args.workers)
    splitter.split(["Kiwi를 미리 불러 둔다."])
    with Clock() as clock:
        sentences = splitter.split([d.text for d in docs])
    print(
        f"\nwhole-document Kiwi split: {clock.wall:.2f} s wall {clock.cpu:.2f} s cpu  "
        f"{len(docs) / clock.wall:.0f} docs/s  {sum(map(len, sentences)):,} sentences"
    )


def run_giant(args: argparse.Namespace) -> None:
    from kosearch.ingest.chunk import Chunker
    from kosearch.ingest.sentences import SentenceSplitter
    from kosearch.ingest.tokens import TokenCounter
    from kosearch.settings import ChunkSettings
    from kosearch.types import Document

    words = ["대한민국", "정부는", "오늘", "새로운", "정책을", "경제", "성장률", "전망", "학교에서"]
    rng = random.Random(0)
    spaced = " ".join(rng.choice(words) for _ in range(100_000))[:300_000]
    counter = TokenCounter.from_file(
        str(args.tokenizer), max_tokens=args.max_tokens, prompt=args.prompt
    )
    for name, text in (
        ("spaces", spaced),
        ("no spaces", spaced.replace(" ", "") + spaced[:60_000]),
    ):
        splitter = SentenceSplitter(num_workers=args.workers)
        splitter.split(["Kiwi를 미리 불러 둔다."])
        chunker = Chunker(counter, ChunkSettings(max_tokens=512), splitter=splitter)
        with Clock() as clock:
            passages = chunker.chunk([Document("giant", text)])
        print(
            f"\ngiant line, {name}: {len(text):,} chars -> {len(passages)} passages in "
            f"{clock.wall:.2f} s wall; kiwi read {splitter.chars_analyzed:,} chars; {chunker.stats}"
        )


def main() -> None:
    args = parse_args()
    if args.threads:
        os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # before tokenizers starts its pool
    sys.path.insert(0, str(ROOT))
    from kosearch.types import Document

    with args.corpus.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    if args.limit:
        rows = rows[: args.limit]
    docs = [Document(str(r["id"]), r["text"], r.get("title") or "") for r in rows]
    print(
        f"corpus {args.corpus.name}: {len(docs)} documents, {sum(len(d.text) for d in docs):,} "
        f"characters; kiwi workers {args.workers}, tokenizer threads {args.threads or 'all'}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    for budget in args.budgets:
        run_budget(args, docs, budget)
    if args.full_kiwi:
        run_full_kiwi(args, docs)
    if args.giant:
        run_giant(args)


if __name__ == "__main__":
    main()
