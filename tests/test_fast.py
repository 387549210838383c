"""The fast path: precision options, multi-process encoding, and ONNX instant queries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from kosearch.cli import cli
from kosearch.encoding import precision as precision_module
from kosearch.encoding.onnx_runtime import (
    DATA_FILE,
    MODEL_FILE,
    OnnxCacheError,
    OnnxQueryEncoder,
    export_dir,
    read_export,
)
from kosearch.encoding.precision import resolve_precision
from kosearch.encoding.workers import auto_processes, worker_devices
from kosearch.errors import ConfigError
from kosearch.storage.layout import MANIFEST_FILE
from kosearch.storage.manifest import read_manifest

TEXTS = [
    "오늘 서울은 맑다.",
    "  민수는 도서관에서 책을 빌렸다고 말했다.  ",
    "커피 " * 200,  # longer than every model's token limit: truncated the same way
    "Hello WORLD, 부산 근처에 새로운 자전거 가게가 생겼다.",
]
DOCS = [
    {"id": "seoul", "title": "서울", "text": "서울은 대한민국의 수도이다. 한강이 서울을 가로질러 흐른다."},
    {"id": "kimchi", "title": "김치", "text": "김치는 배추와 고춧가루로 담그는 발효 음식이다."},
    {"id": "hangul", "title": "한글", "text": "한글은 세종대왕이 창제한 문자이다. 훈민정음이라고도 한다."},
    {"id": "gpu", "title": "GPU", "text": "GPU는 딥러닝 학습을 빠르게 해 주는 장치이다."},
]


DOCS_TEXTS = [doc["text"] for doc in DOCS]


def onnx_graph(path: Path) -> Any:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ------------------------------------------------------------------ choosing a precision


@pytest.mark.parametrize(("requested", "device", "bf16", "expected"), [
    ("auto", "cuda", False, "fp16"),
    ("auto", "cuda:1", True, "fp16"),
    ("auto", "cpu", True, "bf16"),
    ("auto", "cpu", False, "fp32"),
    ("auto", "mps", True, "fp32"),
    (None, "cpu", True, "fp32"),
    ("BF16", "cpu", True, "bf16"),
    ("int8", "cpu", True, "int8"),
    ("fp16", "cuda", True, "fp16"),
])
def test_resolve_precision(monkeypatch: pytest.MonkeyPatch, requested: str | None, device: str,
                           bf16: bool, expected: str) -> None:
    monkeypatch.setattr(precision_module, "cpu_supports_bf16", lambda: bf16)
    assert resolve_precision(requested, device) == expected


@pytest.mark.parametrize(("requested", "device", "message"), [
    ("fp64", "cpu", "unknown precision"),
    ("fp16", "cpu", "needs a CUDA device"),
    ("int8", "cuda", "CPU only"),
])
def test_resolve_precision_refuses(requested: str, device: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_precision(requested, device)


def test_auto_processes_pays_only_for_large_corpora_on_big_machines() -> None:
    assert auto_processes("cpu", 100_000, cpus=2) == 1  # the measured 2-core machine
    assert auto_processes("cpu", 100, cpus=64) == 1
    assert auto_processes("cpu", 100_000, cpus=16) == 4
    assert auto_processes("cuda", 100_000, gpus=4) == 4
    assert auto_processes("cuda:1", 100_000, gpus=4) == 1
    assert worker_devices("cuda", 3, gpus=2) == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_devices("cpu", 2, gpus=0) == ["cpu", "cpu"]


# ------------------------------------------------------------------ precisions on a real encoder


@pytest.mark.st
def test_precisions_keep_the_fingerprint_and_the_vectors(tiny_bert_dir: Path) -> None:
    from kosearch.encoding.encoder import SentenceTransformerEncoder

    fp32 = SentenceTransformerEncoder(str(tiny_bert_dir), device="cpu")
    reference = fp32.encode_passages(TEXTS)
    for name in ("bf16", "int8"):
        encoder = SentenceTransformerEncoder(str(tiny_bert_dir), device="cpu", precision=name)
        assert encoder.precision == name
        assert encoder.fingerprint == fp32.fingerprint  # the same index accepts every precision
        vectors = encoder.encode_passages(TEXTS)
        assert vectors.dtype == np.float32 and vectors.shape == reference.shape
        assert not np.array_equal(vectors, reference)  # the precision really applies
        assert cosines(vectors, reference).min() > 0.99
    quantized = SentenceTransformerEncoder(str(tiny_bert_dir), device="cpu", precision="int8")
    assert quantized._int8 is not None  # passages run in onnxruntime's int8 model
    assert "int8" in quantized._int8.directory.name
    assert not any("quantized" in type(m).__module__ for m in quantized.model.modules())
    queries = quantized.encode_queries(TEXTS)  # queries stay torch fp32
    np.testing.assert_allclose(queries, fp32.encode_queries(TEXTS), atol=1e-6)


@pytest.mark.st
def test_two_worker_processes_give_the_same_vectors(tiny_bert_dir: Path) -> None:
    from kosearch.encoding.encoder import SentenceTransformerEncoder

    texts = [f"{t} {i}" for i in range(20) for t in TEXTS[:2]]
    single = SentenceTransformerEncoder(str(tiny_bert_dir), device="cpu", batch_size=4,
                                        processes=1)
    pooled = SentenceTransformerEncoder(str(tiny_bert_dir), device="cpu", batch_size=4,
                                        processes=2)
    seen: list[int] = []
    try:
        got = pooled.encode_passages(texts, on_batch=seen.append)
        assert pooled._pool is not None and pooled._pool.size == 2
    finally:
        pooled.close()
    np.testing.assert_allclose(got, single.encode_passages(texts), atol=1e-5)
    assert sum(seen) == len(texts)


@pytest.mark.st
def test_manifest_records_the_precision(tmp_path: Path, tiny_xlmr_dir: Path) -> None:
    from kosearch.index import Index
    from kosearch.types import Document

    docs = [Document(id=d["id"], text=d["text"]) for d in DOCS]
    index = Index.build(docs, tmp_path / "idx", model=str(tiny_xlmr_dir), precision="bf16",
                        lexical=False)
    assert index.manifest.model.precision == "bf16"
    assert read_manifest(tmp_path / "idx").model.precision == "bf16"
    # An index written before the field existed still loads, as fp32.
    data = json.loads((tmp_path / "idx" / MANIFEST_FILE).read_text(encoding="utf-8"))
    del data["model"]["precision"]
    (tmp_path / "idx" / MANIFEST_FILE).write_text(json.dumps(data), encoding="utf-8")
    assert read_manifest(tmp_path / "idx").model.precision == "fp32"
    assert asdict(Index.load(tmp_path / "idx").manifest.model)["precision"] == "fp32"


# ------------------------------------------------------------------ the ONNX query encoder


@pytest.mark.st
@pytest.mark.parametrize("fixture", ["tiny_bert_dir", "tiny_xlmr_dir"])
def test_onnx_queries_match_torch(request: pytest.FixtureRequest, tmp_path: Path,
                                  fixture: str) -> None:
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.encoding.onnx_export import ensure_export

    encoder = SentenceTransformerEncoder(str(request.getfixturevalue(fixture)), device="cpu")
    attention = encoder.model[0].auto_model.config._attn_implementation
    directory = ensure_export(encoder, root=tmp_path)
    assert directory == export_dir(encoder.fingerprint, encoder.max_tokens, tmp_path)
    # traced as eager attention (SDPA's tracing leaves NaN checks), and torch's own restored
    ops = {node.op_type for node in onnx_graph(directory / MODEL_FILE).node}
    assert "Softmax" in ops and "IsNaN" not in ops
    assert encoder.model[0].auto_model.config._attn_implementation == attention
    onnx = OnnxQueryEncoder(directory, name=encoder.name, query_prompt=encoder.query_prompt,
                            passage_prompt=encoder.passage_prompt)
    assert (onnx.dim, onnx.max_tokens, onnx.fingerprint) == (
        encoder.dim, encoder.max_tokens, encoder.fingerprint)
    assert cosines(onnx.encode_queries(TEXTS), encoder.encode_queries(TEXTS)).min() >= 0.9999
    assert cosines(onnx.encode_passages(TEXTS), encoder.encode_passages(TEXTS)).min() >= 0.9999
    assert onnx.encode_queries([]).shape == (0, encoder.dim)
    assert not list(tmp_path.glob(".*tmp-*"))  # no temporary directory left behind


@pytest.mark.st
def test_an_export_replaces_the_older_formats_of_its_model(tmp_path: Path,
                                                           tiny_bert_dir: Path) -> None:
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.encoding.onnx_export import ensure_export

    encoder = SentenceTransformerEncoder(str(tiny_bert_dir), device="cpu")
    target = export_dir(encoder.fingerprint, encoder.max_tokens, tmp_path)
    older = target.with_name(target.name.rsplit("-v", 1)[0] + "-v1")
    other = tmp_path / f"0000000000000000-{encoder.max_tokens}-v1"  # another model's
    for directory in (older, other):
        directory.mkdir(parents=True)
        (directory / MODEL_FILE).write_bytes(b"an export in the old format")
    assert ensure_export(encoder, root=tmp_path) == target
    assert not older.exists() and (other / MODEL_FILE).is_file()
    assert (target / DATA_FILE).stat().st_size > (target / MODEL_FILE).stat().st_size


@pytest.mark.st
def test_a_broken_export_is_reported_then_rebuilt(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.encoding.onnx_export import ensure_export

    encoder = SentenceTransformerEncoder(str(tiny_bert_dir), device="cpu")
    directory = ensure_export(encoder, root=tmp_path)
    model = directory / MODEL_FILE
    size = model.stat().st_size
    model.write_bytes(model.read_bytes()[: size // 2])  # a truncated copy
    with pytest.raises(OnnxCacheError, match="incomplete"):
        read_export(directory)
    model.write_bytes(b"\0" * size)  # the right size, but garbage
    with pytest.raises(OnnxCacheError, match="cannot be loaded"):
        OnnxQueryEncoder(directory, name="x")
    (directory / "export.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(OnnxCacheError, match="unreadable"):
        read_export(directory)
    assert ensure_export(encoder, root=tmp_path) == directory  # rebuilt in place
    OnnxQueryEncoder(directory, name="x")


# ------------------------------------------------------------------ the command line


@pytest.fixture()
def cli_index(tmp_path: Path, tiny_xlmr_dir: Path) -> Path:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS),
                      encoding="utf-8")
    out = tmp_path / "idx"
    result = CliRunner().invoke(cli, ["index", str(corpus), "-o", str(out), "--model",
                                      str(tiny_xlmr_dir), "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert "(bf16)" in result.stderr and "instant queries" in result.stderr
    return out


@pytest.mark.st
def test_query_imports_no_torch_and_ranks_like_torch(cli_index: Path) -> None:
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('TORCH', 'torch' in sys.modules, "
        "'sentence_transformers' in sys.modules, file=sys.stderr))\n"
        "from kosearch.cli import main\n"
        "sys.argv = ['kosearch', *sys.argv[1:]]\n"
        "main()\n"
    )

    def query(backend: str) -> tuple[list[list[str]], str]:
        args = ["query", "서울의 강", "-i", str(cli_index), "--json", "--passages",
                "--mode", "dense", "--query-backend", backend]
        out = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                             text=True, env=os.environ.copy(), timeout=120)
        assert out.returncode == 0, out.stderr
        hits = json.loads(out.stdout)["hits"]
        return [[h["id"], round(h["score"], 4)] for h in hits], out.stderr

    fast, stderr = query("auto")
    assert "TORCH False False" in stderr, stderr
    slow, stderr = query("torch")
    assert "TORCH True True" in stderr
    assert fast == slow


@pytest.mark.st
def test_query_without_onnxruntime_falls_back_with_a_notice(
    cli_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kosearch.encoding.onnx_runtime

    monkeypatch.setattr(kosearch.encoding.onnx_runtime, "onnxruntime_available", lambda: False)
    result = CliRunner().invoke(cli, ["query", "서울", "-i", str(cli_index), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["hits"]
    notices = [line for line in result.stderr.splitlines() if "onnxruntime" in line]
    assert len(notices) == 1 and "pip install onnxruntime onnx" in notices[0]


@pytest.mark.st
def test_first_query_exports_when_the_cache_is_missing(
    cli_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KOSEARCH_CACHE", str(tmp_path / "empty-cache"))
    from kosearch.index import Index

    index = Index.load(cli_index, query_backend="auto")
    assert isinstance(index.encoder, OnnxQueryEncoder)
    info = index.manifest.model
    read_export(export_dir(info.fingerprint, info.max_tokens))
    assert index.search("서울", k=2)


# ------------------------------------------------------------------ the real model


@pytest.mark.realmodel
def test_real_model_onnx_and_bf16_agree_with_fp32(real_model_dir: Path, tmp_path: Path) -> None:
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.encoding.onnx_export import ensure_export

    encoder = SentenceTransformerEncoder(str(real_model_dir), device="cpu")
    onnx = OnnxQueryEncoder(ensure_export(encoder, root=tmp_path), name=encoder.name,
                            query_prompt=encoder.query_prompt)
    queries = ["한글은 누가 만들었나요?", "전세 계약 갱신 요구권", TEXTS[2]]
    reference = encoder.encode_queries(queries)
    assert cosines(onnx.encode_queries(queries), reference).min() >= 0.9999
    bf16 = SentenceTransformerEncoder(str(real_model_dir), device="cpu", precision="bf16")
    assert cosines(bf16.encode_queries(queries), reference).min() >= 0.999


@pytest.mark.realmodel
def test_real_model_int8_passes_the_guard(real_model_dir: Path) -> None:
    """Measured: int8 of me5-small-ko with the feed-forward output products in fp32 loses
    0.0017 nDCG@10 on KorQuAD dev (README, Speed); its vectors pass the guard's bounds."""
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.encoding.int8 import GUARD_COSINE, GUARD_MEAN_COSINE, RECIPE, guard_sample

    quantized = SentenceTransformerEncoder(str(real_model_dir), device="cpu", precision="int8")
    fp32 = SentenceTransformerEncoder(str(real_model_dir), device="cpu")
    passages = [*DOCS_TEXTS, *guard_sample()[:4]]
    got, want = quantized.encode_passages(passages), fp32.encode_passages(passages)
    assert cosines(got, want).min() >= GUARD_COSINE
    assert not np.array_equal(got, want)  # int8 really ran
    meta = read_export(quantized._int8.directory)
    assert meta["recipe"] == RECIPE and meta["guard"]["mean_cosine"] >= GUARD_MEAN_COSINE
