"""Build a BEIR set from easylaw.go.kr (찾기쉬운 생활법령정보) guides collected by KW-SWTG.

Regulation guides for citizens (welfare, dementia care, pensions, employment of the elderly):
each query is a question from the project's ``QA.csv`` whose relevant passage is the guide
paragraph it was written from; the other passages are paragraphs of related guides (same
topics, so the distractors are on-topic), minus any that repeat a relevant paragraph.

    python bench/datasets/build_easylaw.py SNAPSHOT OUT [--passages 1500 --seed 13]

SNAPSHOT is a fetched snapshot of github.com/KW-SWTG/Chatbot_Dataset; the script reads
``modelTrain_Test/QA.csv`` and ``Crawler/file/*.txt``. The texts are the Ministry of Government
Legislation's public guides (easylaw.go.kr); the repository states no licence: use the folder for
measurement only and never commit it; this script is what the project keeps.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import re
from pathlib import Path

from _beir import git_file, git_ls, write_beir

QA = "modelTrain_Test/QA.csv"
GUIDES = "Crawler/file"
# guides on the QA topics first (hard, on-topic distractors), then others at random
TOPICAL = ("노인", "고령", "치매", "연금", "장애", "복지", "기초생활", "건강", "요양", "긴급")


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _key(text: str) -> str:
    return re.sub(r"\W", "", text)[:60]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("snapshot", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--passages", type=int, default=1500, help="corpus size")
    parser.add_argument("--min-chars", type=int, default=150, help="shortest guide paragraph")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rows = list(csv.DictReader(io.StringIO(git_file(args.snapshot, QA).decode("utf-8-sig"))))
    para_id: dict[str, str] = {}
    queries, qrels = [], []
    for row in rows:
        paragraph, question = clean(row["paragraph"]), clean(row["Q"])
        if not paragraph or not question:
            continue
        pid = para_id.setdefault(paragraph, f"easylaw-qa-{len(para_id):03d}")
        qid = f"easylaw-q{len(queries):03d}"
        queries.append({"_id": qid, "text": question})
        qrels.append((qid, pid))
    relevant = {_key(p) for p in para_id}
    relevant_text = "".join(re.sub(r"\W", "", p) for p in para_id)
    names = sorted(git_ls(args.snapshot, GUIDES))
    rng = random.Random(args.seed)
    rng.shuffle(names)
    names.sort(key=lambda n: not any(t in n for t in TOPICAL))  # stable: topical first
    corpus = [{"_id": pid, "title": "", "text": p} for p, pid in para_id.items()]
    for name in names:
        title = name.removesuffix(".txt")
        lines = git_file(args.snapshot, f"{GUIDES}/{name}").decode("utf-8", "replace").splitlines()
        for n, line in enumerate(lines):
            text = clean(line)
            key = _key(text)
            if len(text) < args.min_chars or key in relevant or key in relevant_text:
                continue
            corpus.append({"_id": f"easylaw-{title}-{n}", "title": title, "text": text})
            if len(corpus) >= args.passages:
                break
        if len(corpus) >= args.passages:
            break
    write_beir(args.out, corpus, queries, qrels)
    print(f"{args.out}: {len(corpus)} passages, {len(queries)} questions")


if __name__ == "__main__":
    main()
