"""One-shot ``kosearch query`` wall time per mode: a whole fresh process, start to last byte.

Each sample is a fresh process running ``kosearch query "..." -i INDEX --mode M`` for the modes
lexical, hybrid and dense (plus ``python -c pass``). For every sample the bench records the
wall time to the *last byte of output* (what a user waits for; the issue's measure), the wall
time to the process's exit (interpreter teardown included) and its CPU seconds (children, such
as the query-analysis child, included). One warm-up run of every command comes first (it also
makes the ONNX export); then ``--rounds`` rounds, the commands interleaved (reversed every other
round) so that load from other jobs hits them alike; medians are reported.

A query's analysis child lingers for the next one (``KOSEARCH_ANALYZER_LINGER``; the bench
sets 60 s and a private ``XDG_RUNTIME_DIR``, so the helpers it starts are its own and leave a
minute after it), so the rounds after the warm-up measure queries that find a helper with Kiwi
and the query encoder loaded. ``--linger-too`` adds every query run with
``KOSEARCH_ANALYZER_LINGER=0`` (a fresh child each time, nothing lingering), interleaved.

``--baseline DIR`` adds the same commands run with another kosearch checkout first on
``PYTHONPATH`` (e.g. ``/work/main``), interleaved with this one, for a before/after in one run.
The CPU's model name and flags (avx2, avx512f, avx512_bf16, amx) and the load average are
printed with the figures.

Usage (from the repo root):
  python bench/oneshot.py                       # builds a 3,000-passage NSMC index if needed
  python bench/oneshot.py --baseline /work/main --rounds 5
  python bench/oneshot.py --index my-index --query "..." --json out.json
  python bench/oneshot.py --no-highlights-too      # what highlights add, per mode
  python bench/oneshot.py --linger-too             # with and without the lingering helper
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpuinfo import cpu_info, cpu_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nsmc_reviews_corpus" / "corpus.jsonl"
MODEL = ROOT.parent / "shared" / "models" / "me5-small-ko"
QUERY = "가족과 함께 보기 좋은 감동적인 영화"
MODES = ("lexical", "hybrid", "dense")


def build_index(target: Path, corpus: Path, n: int, env: dict[str, str]) -> None:
    sample = target.with_suffix(".jsonl")
    with open(corpus, encoding="utf-8") as src:
        sample.write_text("".join(line for _, line in zip(range(n), src)), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "kosearch", "-q", "index", str(sample), "-o",
                    str(target), "--model", str(MODEL)], check=True, env=env)


def timed(command: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, float]:
    """Seconds to the last byte of stdout, seconds to exit, CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # From a neutral directory: ``python -m`` puts the working directory first on sys.path,
    # which would shadow the checkout that PYTHONPATH picks (the repo root's kosearch/).
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, cwd=cwd)
    assert process.stdout is not None
    last = None
    while process.stdout.read1(65536):
        last = time.perf_counter()
    if process.wait() != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}")
    done = time.perf_counter()
    last = done if last is None else last  # no output (python -c pass): its exit
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return last - start, done - start, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("bench-out/oneshot-index-3k"))
    parser.add_argument("--corpus", type=Path, default=DATA, help="when building the index")
    parser.add_argument("--passages", type=int, default=3000, help="when building the index")
    parser.add_argument("--query", default=QUERY)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another kosearch checkout to compare with, in the same run")
    parser.add_argument("--no-highlights-too", action="store_true",
                        help="also time each mode with --no-highlights (this checkout)")
    parser.add_argument("--linger-too", action="store_true",
                        help="also run every query with KOSEARCH_ANALYZER_LINGER=0")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()
    args.index = args.index.resolve()
    trees = {"": ROOT}
    if args.baseline is not None:
        trees = {"before: ": args.baseline.resolve(), "after: ": ROOT}
    runtime = tempfile.mkdtemp(prefix="ks-rt-", dir="/tmp")  # short: socket paths are limited
    envs = {label: {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree),
                    "XDG_RUNTIME_DIR": runtime, "KOSEARCH_ANALYZER_LINGER": "60"}
            for label, tree in trees.items()}
    if not (args.index / "manifest.json").is_file():
        args.index.parent.mkdir(parents=True, exist_ok=True)
        build_index(args.index, args.corpus, args.passages, envs[list(trees)[-1]])
    query = [sys.executable, "-m", "kosearch", "query", args.query, "-i", str(args.index),
             "-k", "5"]
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], envs[list(trees)[-1]])}
    for mode in MODES:
        for label in trees:
            commands[f"{label}query --mode {mode}"] = ([*query, "--mode", mode], envs[label])
        if args.no_highlights_too:
            commands[f"{list(trees)[-1]}query --mode {mode} --no-highlights"] = (
                [*query, "--mode", mode, "--no-highlights"], envs[list(trees)[-1]])
        if args.linger_too:
            commands[f"{list(trees)[-1]}query --mode {mode}, no linger"] = (
                [*query, "--mode", mode],
                {**envs[list(trees)[-1]], "KOSEARCH_ANALYZER_LINGER": "0"})
    print(cpu_line())
    print(f"index {args.index}, {args.rounds} rounds after one warm-up; "
          f"load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    neutral = tempfile.mkdtemp(prefix="kosearch-oneshot-")  # an empty working directory
    for label, tree in trees.items():  # each label must run its own checkout's kosearch
        where = subprocess.run([sys.executable, "-c", "import kosearch; print(kosearch.__file__)"],
                               env=envs[label], cwd=neutral, capture_output=True, text=True,
                               check=True).stdout.strip()
        if not Path(where).resolve().is_relative_to(tree):
            raise SystemExit(f"{label or 'this'} checkout: kosearch comes from {where}, "
                             f"not {tree}")
    for command, env in commands.values():  # warm-up: page cache, ONNX export
        timed(command, env, neutral)
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in commands}
    for round_no in range(args.rounds):
        names = list(commands) if round_no % 2 == 0 else list(commands)[::-1]
        for name in names:
            samples[name].append(timed(*commands[name], neutral))
        print(f"round {round_no + 1} (load avg {os.getloadavg()[0]:.1f}): " + ", ".join(
            f"{n} {samples[n][-1][0]:.2f}" for n in commands), flush=True)
    print(f"\n{'command':<44} {'last byte s':>11} {'min':>6} {'exit s':>7} {'CPU s':>6}"
          f"   (medians of {args.rounds}; load avg {os.getloadavg()[0]:.1f} at the end)")
    rows = {}
    for name, values in samples.items():
        first, exit_, cpu = (statistics.median(v[i] for v in values) for i in range(3))
        rows[name] = {"last_byte_s": round(first, 3), "exit_s": round(exit_, 3),
                      "cpu_s": round(cpu, 3),
                      "samples": [[round(x, 3) for x in v] for v in values]}
        print(f"{name:<44} {first:11.2f} {min(v[0] for v in values):6.2f} {exit_:7.2f} "
              f"{cpu:6.2f}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(
            {"cpu": cpu_info(), "loadavg_end": os.getloadavg()[0], "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
