"""Fine-tuning gain on held-out questions: KorQuAD retrieval (dense and hybrid nDCG@10) and
KorSTS (cosine Spearman), before and after ``kosearch.finetune``, with training time and steps/s.

Both runs hold out a seeded share of the data (``--eval-split``, 0.2 = the issue's 80/20 split of
the queries), train on the rest and measure the held-out part with the base model and with the
fine-tuned one (the same code as ``kosearch eval retrieval`` / ``eval sts``). The fine-tuned
models are written under ``--out`` (a temporary folder by default) and the results printed as a
table and as one JSON line.

    python bench/finetune.py --model ../shared/models/me5-small-ko \\
        --retrieval ../shared/data/korquad_v1_retrieval_dev --sts ../shared/data/korsts_dev \\
        --max-steps 60 --sts-max-steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from kosearch import finetune

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpuinfo import cpu_line  # noqa: E402


def _run(name: str, data: str, out: Path, args: argparse.Namespace, max_steps: int | None,
         hard_negatives: int) -> dict:
    start = time.perf_counter()
    result = finetune(
        data, out / name, model=args.model, loss=args.loss if name == "retrieval" else None,
        mine_with=args.mine_with, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, max_steps=max_steps, scale=args.scale, hard_negatives=hard_negatives,
        eval_split=args.eval_split, seed=args.seed, device=args.device, overwrite=True,
        progress=not args.quiet,
    )
    wall = time.perf_counter() - start
    return {"name": name, "wall_s": round(wall, 1), **result.to_json()}


def _subset(source: Path, target: Path, queries: int | None, articles: int | None, docs: int,
            seed: int) -> Path:
    """A smaller BEIR folder for a busy CPU: ``queries`` seeded questions, or every question of
    ``articles`` seeded articles (documents sharing a title); their relevant documents, every
    other passage of those articles, and seeded other documents up to ``docs`` (the corpus
    order is kept)."""
    rng = random.Random(seed)
    qrels = [line.split("\t") for line in
             (source / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:] if line]
    corpus = [json.loads(x) for x in (source / "corpus.jsonl").read_text(encoding="utf-8")
              .splitlines() if x]
    title = {d["_id"]: d["title"] for d in corpus}
    if articles:
        picked = set(rng.sample(sorted({title[d] for _, d, _ in qrels}), articles))
        chosen = {q for q, d, _ in qrels if title[d] in picked}
    else:
        chosen = set(rng.sample(sorted({q for q, _, _ in qrels}), queries or 0))
    keep_rows = [row for row in qrels if row[0] in chosen]
    relevant = {d for _, d, _ in keep_rows}
    articles_kept = {title[d] for d in relevant} if articles else set()
    relevant |= {d for d, t in title.items() if t in articles_kept}
    others = [d["_id"] for d in corpus if d["_id"] not in relevant]
    keep = relevant | set(rng.sample(others, max(0, min(len(others), docs - len(relevant)))))
    (target / "qrels").mkdir(parents=True)
    with open(target / "corpus.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in corpus if d["_id"] in keep)
    with open(target / "queries.jsonl", "w", encoding="utf-8") as f:
        for line in (source / "queries.jsonl").read_text(encoding="utf-8").splitlines():
            if line and str(json.loads(line)["_id"]) in chosen:
                f.write(line + "\n")
    (target / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in keep_rows),
        encoding="utf-8")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the base model directory or id")
    parser.add_argument("--retrieval", help="a BEIR folder (KorQuAD)")
    parser.add_argument("--sts", help="STS pairs (KorSTS)")
    parser.add_argument("--out", help="where the models go (default: a temporary folder)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: 32 questions, 16 STS pairs (kosearch finetune's)")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--max-steps", type=int, default=None, help="retrieval run")
    parser.add_argument("--scale", type=lambda v: None if v == "auto" else float(v),
                        default=None, help="MNRL scale: auto (fitted, the default) or a number")
    parser.add_argument("--sts-max-steps", type=int, default=None)
    parser.add_argument("--hard-negatives", type=int, default=0)
    parser.add_argument("--loss", default=None, help="retrieval run: mnrl or cached-mnrl")
    parser.add_argument("--mine-with", default="lexical")
    parser.add_argument("--eval-split", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default=None)
    parser.add_argument("--sample-queries", type=int, default=None,
                        help="train and measure on this many seeded questions only")
    parser.add_argument("--sample-articles", type=int, default=None,
                        help="train and measure on every question of this many seeded articles")
    parser.add_argument("--subset-seed", type=int, default=0, help="seeds the sample")
    parser.add_argument("--sample-docs", type=int, default=None,
                        help="with --sample-queries: corpus size (their documents + others)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="kosearch-bench-") as scratch:
        out = Path(args.out) if args.out else Path(scratch)
        runs = []
        if args.retrieval:
            data = Path(args.retrieval)
            if args.sample_queries or args.sample_articles:
                data = _subset(data, Path(scratch) / "subset", args.sample_queries,
                               args.sample_articles, args.sample_docs or 10**9,
                               args.subset_seed)
            runs.append(_run("retrieval", str(data), out, args, args.max_steps,
                             args.hard_negatives))
        if args.sts:
            runs.append(_run("sts", args.sts, out, args, args.sts_max_steps, 0))
    print(f"model {args.model}; {cpu_line()}; {os.cpu_count()} CPUs; "
          f"batch {args.batch_size or 'default'}, lr {args.lr}, seed {args.seed}")
    for run in runs:
        train = run["train"]
        scale = run["settings"].get("scale")
        fitted = " (fitted)" if run["settings"].get("scale_fitted") else ""
        print(f"\n{run['name']}: {run['counts']}; scale {scale}{fitted}; "
              f"{train['steps']} steps in "
              f"{train['seconds']:.0f} s ({train['steps_per_second']:.3f} steps/s); "
              f"whole run {run['wall_s']:.0f} s")
        print(f"{'setting':<10}{'metric':<17}{'before':>9}{'after':>9}{'change':>9}")
        for setting, metrics in run["before"].items():
            for metric, before in metrics.items():
                after = run["after"][setting][metric]
                print(f"{setting:<10}{metric:<17}{before:9.4f}{after:9.4f}"
                      f"{after - before:+9.4f}")
    print(json.dumps([{k: v for k, v in run.items() if k != "output"} for run in runs],
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
