"""One-shot ``kosearch query`` wall time (a whole process), before and after instant queries.

Each sample is a fresh process: ``kosearch query`` with ``--query-backend torch`` (the old path:
import sentence-transformers, load the model) and with ``--query-backend auto`` (onnxruntime on
the cached ONNX export), in dense and hybrid mode, next to ``python -c "import
sentence_transformers"`` (the floor of the old path) and ``python -c pass``. The commands are
interleaved round by round and the medians reported.

Usage (from the repo root):
  python bench/oneshot.py --rounds 7            # builds a 300-passage KorQuAD index if needed
  python bench/oneshot.py --index my-index --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "korquad_v1_retrieval_dev"
MODEL = ROOT.parent / "shared" / "models" / "me5-small-ko"
QUERY = "정도전은 어떤 개혁에 착수했나?"


def build_index(target: Path, n: int, env: dict[str, str]) -> None:
    corpus = target.with_suffix(".jsonl")
    with open(DATA / "corpus.jsonl", encoding="utf-8") as src:
        corpus.write_text("".join(line for _, line in zip(range(n), src)), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "kosearch", "-q", "index", str(corpus), "-o",
                    str(target), "--model", str(MODEL)], check=True, env=env)


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("bench-out/oneshot-index"))
    parser.add_argument("--passages", type=int, default=300, help="when building the index")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    if not (args.index / "manifest.json").is_file():
        args.index.parent.mkdir(parents=True, exist_ok=True)
        build_index(args.index, args.passages, env)
    query = [sys.executable, "-m", "kosearch", "query", QUERY, "-i", str(args.index), "-k", "5"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "import sentence_transformers": [sys.executable, "-c", "import sentence_transformers"],
        "query dense, torch (before)": [*query, "--mode", "dense", "--query-backend", "torch"],
        "query dense, onnx (after)": [*query, "--mode", "dense"],
        "query hybrid, torch (before)": [*query, "--query-backend", "torch"],
        "query hybrid, onnx (after)": [*query],
        "query lexical (no model)": [*query, "--mode", "lexical"],
    }
    subprocess.run(commands["query dense, onnx (after)"], check=True, env=env)  # export, warm
    samples: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for round_no in range(args.rounds):
        names = list(commands) if round_no % 2 == 0 else list(commands)[::-1]
        for name in names:
            wall, used = timed(commands[name], env)
            samples[name].append(wall)
            cpu[name].append(used)
        print(f"round {round_no + 1} (load avg {os.getloadavg()[0]:.1f}): " + ", ".join(
            f"{n.split(' (')[0]} {samples[n][-1]:.2f}" for n in commands), flush=True)
    print(f"\n{'command':<32} {'median s':>9} {'min s':>7} {'CPU s':>7}"
          f"   (load avg {os.getloadavg()[0]:.1f})")
    rows = {}
    for name, values in samples.items():
        rows[name] = {"median_s": round(statistics.median(values), 3),
                      "min_s": round(min(values), 3), "samples": [round(v, 3) for v in values],
                      "median_cpu_s": round(statistics.median(cpu[name]), 3)}
        print(f"{name:<32} {statistics.median(values):9.2f} {min(values):7.2f} "
              f"{statistics.median(cpu[name]):7.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
