"""Build a BEIR set from KMQA (Korean health Q&A from the hidoc.co.kr forum, doctors' answers).

Question -> answer retrieval, a forum/FAQ domain unlike Wikipedia: each query is the short
annotated question of a forum post, its one relevant passage is the doctor's answer to that post
(the user's own post is *not* in the corpus, so the question has to find its answer, not itself).

    python bench/datasets/build_kmqa.py SNAPSHOT OUT [--answers 1500 --queries 500 --seed 13]

SNAPSHOT is a fetched snapshot of github.com/yuntaeyang/Korean-Mental-health-Question-Answering
(commit 0aaa5558... or later); the script reads ``KQMA_DATA/KMQA dataset_final.xlsx``. The data
carries no licence of its own (the answers are hidoc.co.kr content): use the folder for
measurement only and never commit it; this script is what the project keeps.
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

from _beir import git_file, write_beir, xlsx_rows

SOURCE = "KQMA_DATA/KMQA dataset_final.xlsx"


def clean(text: str) -> str:
    """Markup (``<o:p>``, ``<a1>``, comments) removed, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", text)).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("snapshot", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--answers", type=int, default=1500, help="answers in the corpus")
    parser.add_argument("--queries", type=int, default=500, help="questions kept")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rows = xlsx_rows(git_file(args.snapshot, SOURCE))
    answer_id: dict[str, str] = {}  # answer text -> corpus id (identical answers merged)
    pairs: list[tuple[str, str]] = []  # (question, answer text)
    for row in rows:
        answer, question = clean(row["raw_answer"]), clean(row["annotated_question"])
        if row.get("is_impossible", "0") != "0" or len(answer) < 20 or len(question) < 5:
            continue
        answer_id.setdefault(answer, f"kmqa-{len(answer_id):05d}")
        pairs.append((question, answer))
    rng = random.Random(args.seed)
    answers = sorted(answer_id, key=answer_id.__getitem__)
    rng.shuffle(answers)
    kept = set(answers[: args.answers])
    candidates = sorted({(q, a) for q, a in pairs if a in kept})
    rng.shuffle(candidates)
    chosen, seen_q = [], set()
    for question, answer in candidates:
        if question not in seen_q:
            seen_q.add(question)
            chosen.append((question, answer))
        if len(chosen) == args.queries:
            break
    corpus = [{"_id": answer_id[a], "title": "", "text": a}
              for a in sorted(kept, key=answer_id.__getitem__)]
    queries = [{"_id": f"kmqa-q{i:04d}", "text": q} for i, (q, _) in enumerate(chosen)]
    qrels = [(f"kmqa-q{i:04d}", answer_id[a]) for i, (_, a) in enumerate(chosen)]
    write_beir(args.out, corpus, queries, qrels)
    print(f"{args.out}: {len(corpus)} answers, {len(queries)} questions")


if __name__ == "__main__":
    main()
