"""Query spacing and mixed scripts: do respelled queries find what the original finds?

Korean users drop or add spaces and glue Latin to Hangul. This builds a small set of respelled
queries and compares BM25 query analysis as typed (``tokenize``, the analysis before the fix)
with :meth:`~kosearch.lexical.analyzers.MorphemeAnalyzer.tokenize_queries` (the fix)::

    python bench/spacing.py --data /work/shared/data/korquad_v1_retrieval_dev

The set (printed with ``--show``):
- ``korquad-nospace``: 20 KorQuAD dev questions with every space removed;
- ``korquad-split``: 20 KorQuAD dev questions with a space put between the nouns of each
  compound word (``국가보안법위반`` -> ``국가보안법 위반``, where Kiwi finds two nouns in
  one word);
- ``sample``: the questions of data/questions.txt, spaces removed and compounds split;
- ``mixed``: hand-written pairs of mixed-script queries on the sample's topics.

Reported: per group, the share of the original spelling's terms the respelled query looks up
(term coverage, 1.0 = all), and for KorQuAD the lexical nDCG@10 of the respelled questions;
and the lexical nDCG@10 of all KorQuAD dev questions as written, which must not fall.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lexical import _evaluate, _read_jsonl, _read_qrels  # noqa: E402
from snippets import cpu_flags  # noqa: E402

from kosearch.lexical.analyzers import MorphemeAnalyzer  # noqa: E402
from kosearch.lexical.bm25 import LexicalIndex  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOUNS = {"NNG", "NNP"}

MIXED = [
    ("KB국민은행 전세대출 금리", "KB 국민은행 전세 대출 금리"),
    ("ChatGPT로 번역하는 법", "Chat GPT로 번역 하는 법"),
    ("7B 모델을 FP16으로 돌리려면 GPU 메모리가 얼마나 필요해요?",
     "7B모델을 FP16 으로 돌리려면 GPU메모리가 얼마나 필요해요?"),
    ("SSD와 HDD의 차이", "SSD 와 HDD 의 차이"),
    ("와이파이 5GHz와 2.4GHz 차이", "와이파이 5 GHz 와 2.4 GHz차이"),
    ("USB-C 충전기", "USB-C충전기"),
    ("NVIDIA CUDA 딥러닝 프레임워크", "NVIDIA의CUDA 딥러닝프레임워크"),
    ("2단계 인증 OTP 문자 메시지", "2단계인증 OTP문자메시지"),
    ("SGI서울보증 전세보증금 반환보증", "SGI 서울보증 전세 보증금 반환 보증"),
    ("HUG 전세보증보험 가입", "HUG전세보증보험가입"),
    ("K-pop 아이돌 인기", "K-pop아이돌인기"),
    ("IoT 기기 연결", "IoT기기연결"),
]


def nospace(text: str) -> str:
    return re.sub(r"\s+", "", text)


def split_compounds(text: str, kiwi: Any) -> str:
    """A space between two nouns that Kiwi finds inside one word."""
    cuts = []
    tokens = kiwi.tokenize(text)
    for a, b in zip(tokens, tokens[1:]):
        if a.tag in NOUNS and b.tag in NOUNS and a.end == b.start and b.start > 0:
            cuts.append(b.start)
    for cut in reversed(cuts):
        text = text[:cut] + " " + text[cut:]
    return text


def coverage(original: list[str], respelled: list[str]) -> float:
    want = set(original)
    return len(want & set(respelled)) / len(want) if want else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="korquad_v1_retrieval_dev (BEIR layout)")
    parser.add_argument("-n", type=int, default=20, help="KorQuAD questions per group")
    parser.add_argument("--show", action="store_true", help="print every pair and its terms")
    args = parser.parse_args()
    data = Path(args.data)
    docs = list(_read_jsonl(data / "corpus.jsonl"))
    doc_ids = [d["_id"] for d in docs]
    qrels = _read_qrels(data / "qrels" / "test.tsv")
    queries = [q for q in _read_jsonl(data / "queries.jsonl") if q["_id"] in qrels]
    analyzer = MorphemeAnalyzer(num_workers=1)
    kiwi = analyzer._loader.get()  # noqa: SLF001  (bench only)

    rng = random.Random(16)
    picked = rng.sample(queries, 4 * args.n)
    split = [(q, split_compounds(q["text"], kiwi)) for q in picked]
    split = [(q, s) for q, s in split if s != q["text"]][: args.n]
    groups: dict[str, list[tuple[str, str, str | None]]] = {
        "korquad-nospace": [(q["text"], nospace(q["text"]), q["_id"])
                            for q in picked[: args.n]],
        "korquad-split": [(q["text"], s, q["_id"]) for q, s in split],
        "sample": [],
        "mixed": [(a, b, None) for a, b in MIXED],
    }
    for line in (ROOT / "data" / "questions.txt").read_text(encoding="utf-8").splitlines():
        if line.strip():
            groups["sample"].append((line, nospace(line), None))
            respaced = split_compounds(line, kiwi)
            if respaced != line:
                groups["sample"].append((line, respaced, None))

    index = LexicalIndex.build([f"{d.get('title', '')}\n{d['text']}" for d in docs],
                               analyzer=analyzer)
    total = sum(len(g) for g in groups.values())
    print(f"{total} respelled queries; term coverage = share of the original spelling's terms "
          "that the respelled query looks up")
    print("| group | pairs | coverage before | coverage after | all terms before | after |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, pairs in groups.items():
        originals = analyzer.tokenize([a for a, _, _ in pairs])
        before = analyzer.tokenize([b for _, b, _ in pairs])
        after = analyzer.tokenize_queries([b for _, b, _ in pairs])
        cb = [coverage(o, t) for o, t in zip(originals, before)]
        ca = [coverage(o, t) for o, t in zip(originals, after)]
        print(f"| {name} | {len(pairs)} | {statistics.mean(cb):.3f} | {statistics.mean(ca):.3f}"
              f" | {sum(c == 1 for c in cb)} | {sum(c == 1 for c in ca)} |")
        if args.show:
            for (a, b, _), o, t0, t1 in zip(pairs, originals, before, after):
                print(f"    {a} | {b} | {o} | {t0} | {t1}")

    def ndcg(texts: list[str], ids: list[str], fixed: bool) -> float:
        terms = (analyzer.tokenize_queries if fixed else analyzer.tokenize)(texts)
        run = {}
        for qid, t in zip(ids, terms):
            hits = index._search_terms(t, 100)  # noqa: SLF001  (bench only)
            if hits:
                run[qid] = [doc_ids[r] for r, _ in hits]
        return _evaluate({q: qrels[q] for q in ids}, run)["nDCG@10"]

    print("\nlexical (BM25) nDCG@10 on KorQuAD dev, query analysis before / after the fix:")
    print("| queries | n | as typed (before) | tokenize_queries (after) |")
    print("| --- | --- | --- | --- |")
    for name in ("korquad-nospace", "korquad-split"):
        pairs = groups[name]
        ids = [i for _, _, i in pairs]
        orig = ndcg([a for a, _, _ in pairs], ids, False)
        print(f"| {name}: original spelling | {len(pairs)} | {orig:.4f} | "
              f"{ndcg([a for a, _, _ in pairs], ids, True):.4f} |")
        respelled = [b for _, b, _ in pairs]
        print(f"| {name}: respelled | {len(pairs)} | {ndcg(respelled, ids, False):.4f}"
              f" | {ndcg(respelled, ids, True):.4f} |")
    texts, ids = [q["text"] for q in queries], [q["_id"] for q in queries]
    print(f"| all dev questions as written | {len(ids)} | {ndcg(texts, ids, False):.4f} | "
          f"{ndcg(texts, ids, True):.4f} |", flush=True)
    sample = texts[:500]
    t0 = time.perf_counter()
    analyzer.tokenize(sample)
    t1 = time.perf_counter()
    analyzer.tokenize_queries(sample)
    t2 = time.perf_counter()
    print(f"\nquery analysis, 500 dev questions in one batch: {1000 * (t1 - t0) / 500:.2f} ms "
          f"a question as typed, {1000 * (t2 - t1) / 500:.2f} ms with the respellings "
          f"(1 Kiwi thread; CPU flags: {cpu_flags()})")
    print(json.dumps({"seed": 16, "n": args.n}))


if __name__ == "__main__":
    main()
