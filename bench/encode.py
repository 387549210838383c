"""Overhead of ``kosearch index`` over plain sentence-transformers + FAISS, in one run.

Takes the same N Korean passages (paragraphs of ../shared/data/ko_open_docs short enough that no
chunking happens), then times, each as a whole fresh process and alternating A/B:

  plain     python: import sentence_transformers, load the model, read the JSONL, encode with
            the passage prompt, add to a faiss IndexFlatIP, write it (what a user would script);
  kosearch  `kosearch index FILE -o DIR --model M` (chunking, Parquet, BM25 and manifest included);
  kosearch --no-lexical  the same without the BM25 part.

It also times `SentenceTransformer.encode` alone inside the plain process, to show where the
time goes. Prints passages/s for each and the ratio against plain.

    python bench/encode.py --model ../shared/models/me5-small-ko -n 1000 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpuinfo import cpu_line  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "ko_open_docs" / "corpus.jsonl"

PLAIN = r"""
import json, sys, time
t0 = time.perf_counter()
from sentence_transformers import SentenceTransformer
import faiss, numpy as np
model = SentenceTransformer(sys.argv[1], device="cpu")
texts = [json.loads(line)["text"] for line in open(sys.argv[2], encoding="utf-8")]
prompt = model.prompts.get("passage", "")
t1 = time.perf_counter()
emb = model.encode(texts, prompt=prompt, batch_size=32, normalize_embeddings=True)
t2 = time.perf_counter()
index = faiss.IndexFlatIP(emb.shape[1]); index.add(np.asarray(emb, dtype="float32"))
faiss.write_index(index, sys.argv[3])
print(json.dumps({"encode_s": t2 - t1, "setup_s": t1 - t0}))
"""


def passages(n: int, max_chars: int) -> list[str]:
    out: list[str] = []
    with DATA.open(encoding="utf-8") as f:
        for line in f:
            for para in json.loads(line)["text"].split("\n"):
                para = para.strip()
                if 80 <= len(para) <= max_chars:
                    out.append(para)
                    if len(out) == n:
                        return out
    return out


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return wall, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="local sentence-transformers model directory")
    parser.add_argument("-n", type=int, default=1000, help="number of passages")
    parser.add_argument("--repeat", type=int, default=2, help="runs per variant (alternating)")
    parser.add_argument("--max-chars", type=int, default=400, help="longest paragraph taken")
    args = parser.parse_args()

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    texts = passages(args.n, args.max_chars)
    kosearch = [sys.executable, "-m", "kosearch", "-q", "index"]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "passages.jsonl"
        with corpus.open("w", encoding="utf-8") as f:
            for i, text in enumerate(texts):
                f.write(json.dumps({"id": f"p{i}", "text": text}, ensure_ascii=False) + "\n")
        variants = {
            "plain ST + faiss": [sys.executable, "-c", PLAIN, args.model, str(corpus), f"{tmp}/plain.faiss"],
            "kosearch index": [*kosearch, str(corpus), "-o", f"{tmp}/ks", "--model", args.model],
            "kosearch index --no-lexical": [
                *kosearch, str(corpus), "-o", f"{tmp}/ks2", "--model", args.model, "--no-lexical"],
        }
        walls: dict[str, list[float]] = {name: [] for name in variants}
        encode_only: list[float] = []
        for _ in range(args.repeat):
            for name, cmd in variants.items():
                if "-o" in cmd:  # a fresh build every run: a second run into the same index
                    # is an update that finds nothing to encode (measured as such until 2026-12-07)
                    shutil.rmtree(cmd[cmd.index("-o") + 1], ignore_errors=True)
                wall, out = timed(cmd, env)
                print(f"  {name}: {wall:.1f} s", flush=True)
                walls[name].append(wall)
                if name.startswith("plain"):
                    encode_only.append(json.loads(out.strip().splitlines()[-1])["encode_s"])
        chunked = json.loads((Path(tmp) / "ks" / "manifest.json").read_text())["counts"]["passages"]

    n = len(texts)
    base = statistics.median(walls["plain ST + faiss"])
    print(cpu_line(), f"load average {os.getloadavg()[0]:.1f}")
    print(f"{n} passages (ko_open_docs paragraphs, 80-{args.max_chars} chars), model {args.model}, "
          f"{args.repeat} runs each, medians; kosearch made {chunked} passages (no chunking needed)")
    print(f"{'variant':<30} {'wall s':>8} {'passages/s':>11} {'vs plain':>9}")
    for name, values in walls.items():
        wall = statistics.median(values)
        print(f"{name:<30} {wall:8.2f} {n / wall:11.1f} {wall / base:8.3f}x")
    enc = statistics.median(encode_only)
    print(f"{'(ST.encode alone, in process)':<30} {enc:8.2f} {n / enc:11.1f}")


if __name__ == "__main__":
    main()
