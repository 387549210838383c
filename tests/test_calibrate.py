"""``--precision auto`` that measures: the choice, its cache, the quality guard, the records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from kosearch import Document
from kosearch.cli import cli
from kosearch.encoding import calibrate as calibrate_module
from kosearch.encoding import cpu as cpu_module
from kosearch.encoding import int8 as int8_module
from kosearch.encoding.calibrate import (
    MIN_GAIN,
    Calibration,
    cache_key,
    cache_path,
    calibrate,
    choose,
    measure_precisions,
)
from kosearch.encoding.int8 import GuardError, guard_sample
from kosearch.encoding.onnx_runtime import export_dir, read_export
from kosearch.errors import ConfigError

pytestmark = pytest.mark.st

_RAW = [
    {"id": "seoul", "text": "서울은 대한민국의 수도이다. 한강이 서울을 가로질러 흐른다."},
    {"id": "kimchi", "text": "김치는 배추와 고춧가루로 담그는 발효 음식이다."},
    {"id": "hangul", "text": "한글은 세종대왕이 창제한 문자이다. 훈민정음이라고도 한다."},
]
DOCS = [Document(**raw) for raw in _RAW]


@pytest.fixture
def measuring(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """``auto`` measures, with a cache of its own."""
    monkeypatch.setenv("KOSEARCH_CALIBRATE", "1")
    monkeypatch.setenv("KOSEARCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def encoder(tiny_xlmr_dir: Path):  # noqa: ANN201 - a SentenceTransformerEncoder
    from kosearch.encoding.encoder import SentenceTransformerEncoder

    return SentenceTransformerEncoder(str(tiny_xlmr_dir), device="cpu")


# ------------------------------------------------------------------ the choice


@pytest.mark.parametrize(("rates", "cosines", "refused", "expected"), [
    ({"fp32": 4.0, "int8": 5.0}, {"int8": 0.995}, {}, "int8"),
    ({"fp32": 4.0, "int8": 5.0, "bf16": 9.0}, {"int8": 0.995, "bf16": 0.98}, {}, "int8"),
    ({"fp32": 4.0, "int8": 5.0, "bf16": 9.0}, {"int8": 0.995, "bf16": 0.999}, {}, "bf16"),
    ({"fp32": 4.0, "int8": 5.0}, {"int8": 0.995}, {"int8": "could not quantize"}, "fp32"),
    ({"fp32": 4.0, "int8": 3.0}, {"int8": 0.999}, {}, "fp32"),  # slower: never chosen
    ({"fp32": 4.0, "int8": 4.0 * MIN_GAIN * 0.99}, {"int8": 0.999}, {}, "fp32"),  # within noise
    ({"fp32": 4.0}, {}, {}, "fp32"),
])
def test_choose_takes_the_fastest_that_passes_and_never_a_slower_one(
        rates: dict[str, float], cosines: dict[str, float], refused: dict[str, str],
        expected: str) -> None:
    assert choose(rates, cosines, refused) == expected


def test_the_cache_key_names_the_model_the_cpu_and_the_libraries(
        encoder, monkeypatch: pytest.MonkeyPatch) -> None:
    key = cache_key(encoder, threads=2)
    assert key["fingerprint"] == encoder.fingerprint
    assert {"cpu", "flags", "torch", "onnxruntime", "threads", "max_tokens", "int8"} <= set(key)
    other_threads = cache_key(encoder, threads=1)
    assert cache_path(other_threads) != cache_path(key)
    monkeypatch.setattr(int8_module, "RECIPE", int8_module.RECIPE + 1)  # a new int8 model
    assert cache_path(cache_key(encoder, threads=2)) != cache_path(key)
    monkeypatch.undo()
    info = dict(cpu_module.cpu_info())
    monkeypatch.setattr(calibrate_module, "cpu_info",
                        lambda: {**info, "flags": [*info["flags"], "avx512_bf16"]})
    assert cache_path(cache_key(encoder, threads=2)) != cache_path(key)


def test_calibrate_measures_once_then_reads_the_cache(
        encoder, measuring: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []

    def fake_measure(_encoder, key):  # noqa: ANN001, ANN202
        calls.append(key)
        return Calibration(choice="int8", rates={"fp32": 1.0, "int8": 2.0},
                           cosines={"int8": 0.999}, key=key, measured="2026-12-07T00:00:00Z")

    first = calibrate(encoder, measure=fake_measure)
    second = calibrate(encoder, measure=fake_measure)
    assert len(calls) == 1 and not first.cached and second.cached
    assert second.choice == "int8" and second.rates == first.rates
    stored = json.loads(cache_path(first.key).read_text(encoding="utf-8"))
    assert stored["choice"] == "int8" and stored["key"] == first.key
    # another CPU (here: another flag) is measured again
    info = dict(cpu_module.cpu_info())
    monkeypatch.setattr(calibrate_module, "cpu_info",
                        lambda: {**info, "flags": [*info["flags"], "amx_int8"]})
    third = calibrate(encoder, measure=fake_measure)
    assert len(calls) == 2 and not third.cached


def test_processes_sharing_the_cache_take_turns_so_one_measures(
        encoder, measuring: Path) -> None:
    import threading

    calls: list[int] = []
    entered, release = threading.Event(), threading.Event()

    def fake_measure(_encoder, key):  # noqa: ANN001, ANN202
        calls.append(1)
        entered.set()
        release.wait(30)  # the first measurement holds the lock until released
        return Calibration(choice="int8", rates={"fp32": 1.0, "int8": 2.0},
                           cosines={"int8": 0.999}, key=key)

    results: list[Calibration] = []

    def run() -> None:
        results.append(calibrate(encoder, measure=fake_measure))

    first = threading.Thread(target=run)
    first.start()
    assert entered.wait(30)
    second = threading.Thread(target=run)
    second.start()
    second.join(1.0)
    assert second.is_alive() and len(calls) == 1  # waiting for the lock, not measuring
    release.set()
    first.join(30)
    second.join(30)
    assert len(calls) == 1 and sorted(r.cached for r in results) == [False, True]


def test_a_corrupt_cache_is_measured_again(encoder, measuring: Path) -> None:
    calls: list[int] = []

    def fake_measure(_encoder, key):  # noqa: ANN001, ANN202
        calls.append(1)
        return Calibration(choice="fp32", rates={"fp32": 1.0}, key=key)

    first = calibrate(encoder, measure=fake_measure)
    cache_path(first.key).write_text("{not json", encoding="utf-8")
    assert not calibrate(encoder, measure=fake_measure).cached
    assert len(calls) == 2


# ------------------------------------------------------------------ real measurements (tiny model)


def test_measure_times_every_candidate_and_checks_the_guard(encoder, measuring: Path) -> None:
    import torch

    made = export_dir(encoder.fingerprint, encoder.max_tokens, variant="int8")
    older = made.with_name(made.name.rsplit("-v", 1)[0] + "-v1")  # an int8 model of an older
    older.mkdir(parents=True)                                      # export format
    (older / "model.onnx").write_bytes(b"old")
    result = measure_precisions(encoder, cache_key(encoder, torch.get_num_threads()))
    assert not older.exists()  # replaced by the new one, not left in the cache
    assert {"fp32", "int8"} <= set(result.rates)
    assert all(rate > 0 for rate in result.rates.values())
    assert 0.99 <= result.cosines["int8"] <= 1.0
    assert result.choice == choose(result.rates, result.cosines, result.refused)
    if result.choice != "fp32":
        assert result.rates[result.choice] >= result.rates["fp32"] * MIN_GAIN
    meta = read_export(export_dir(encoder.fingerprint, encoder.max_tokens, variant="int8"))
    assert meta["guard"]["sample"] == len(guard_sample())


def test_auto_builds_record_the_measurement(tiny_xlmr_dir: Path, measuring: Path,
                                            tmp_path: Path) -> None:
    from kosearch.index import Index

    index = Index.build(DOCS, tmp_path / "idx", model=str(tiny_xlmr_dir), precision="auto")
    record = index.manifest.model.calibration
    assert record["choice"] == index.manifest.model.precision
    assert record["key"]["fingerprint"] == index.manifest.model.fingerprint
    assert set(record["rates"]) >= {"fp32", "int8"}
    result = CliRunner().invoke(cli, ["info", str(tmp_path / "idx")])
    assert result.exit_code == 0, result.output
    assert f"auto chose {record['choice']}" in result.output
    hits = Index.load(tmp_path / "idx").search("김치", k=3, mode="dense")
    assert sorted(hit.id for hit in hits) == ["hangul", "kimchi", "seoul"]


def test_without_measuring_auto_records_nothing(tiny_xlmr_dir: Path, tmp_path: Path) -> None:
    from kosearch.index import Index

    index = Index.build(DOCS, tmp_path / "idx", model=str(tiny_xlmr_dir), precision="auto")
    assert index.manifest.model.calibration == {}
    assert index.manifest.model.precision in ("fp32", "bf16")


# ------------------------------------------------------------------ the guard's refusal


def test_int8_is_refused_for_a_model_that_fails_the_guard(
        tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kosearch.encoding.encoder import SentenceTransformerEncoder

    monkeypatch.setenv("KOSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(int8_module, "GUARD_COSINE", 1.000001)  # no int8 vector is that close
    with pytest.raises(GuardError, match=r"precision int8 is refused for model .*cosine"):
        SentenceTransformerEncoder(str(tiny_bert_dir), device="cpu", precision="int8")
    # the verdict is stored with the model: refused again without quantizing again
    directory = export_dir(
        SentenceTransformerEncoder(str(tiny_bert_dir), device="cpu").fingerprint, 128,
        tmp_path / "cache" / "onnx", variant="int8")
    stamp = (directory / "model.onnx").stat().st_mtime_ns
    with pytest.raises(GuardError):
        SentenceTransformerEncoder(str(tiny_bert_dir), device="cpu", precision="int8")
    assert (directory / "model.onnx").stat().st_mtime_ns == stamp
    # and auto leaves it out
    monkeypatch.setenv("KOSEARCH_CALIBRATE", "1")
    auto = SentenceTransformerEncoder(str(tiny_bert_dir), device="cpu", precision="auto")
    assert auto.precision != "int8" and "int8" in auto.calibration.refused


def test_the_cli_refuses_int8_in_one_line(tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setenv("KOSEARCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(int8_module, "GUARD_COSINE", 1.000001)
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in _RAW) + "\n",
                      encoding="utf-8")
    result = CliRunner().invoke(cli, ["index", str(corpus), "-o", str(tmp_path / "idx"),
                                      "--model", str(tiny_bert_dir), "--precision", "int8"])
    assert result.exit_code != 0
    assert "precision int8 is refused for model" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "idx").exists()


def test_a_bad_calibrate_setting_is_one_clear_error(
        monkeypatch: pytest.MonkeyPatch, tiny_bert_dir: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("KOSEARCH_CALIBRATE", "yes")
    monkeypatch.setenv("KOSEARCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="KOSEARCH_CALIBRATE must be 0 or 1, got 'yes'"):
        calibrate_module.measuring_enabled()
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in _RAW) + "\n",
                      encoding="utf-8")
    result = CliRunner().invoke(cli, ["index", str(corpus), "-o", str(tmp_path / "idx"),
                                      "--model", str(tiny_bert_dir), "--precision", "auto",
                                      "--device", "cpu"])
    assert result.exit_code == 1
    assert result.stderr == "Error: KOSEARCH_CALIBRATE must be 0 or 1, got 'yes'\n"
    assert not (tmp_path / "idx").exists()


def test_int8_passages_stay_close_to_fp32(encoder, measuring: Path) -> None:
    from kosearch.encoding.encoder import SentenceTransformerEncoder

    quantized = SentenceTransformerEncoder(encoder.name, device="cpu", precision="int8")
    texts = guard_sample()
    got, want = quantized.encode_passages(texts), encoder.encode_passages(texts)
    cosine = np.sum(got * want, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1))
    assert cosine.min() >= 0.99 and not np.array_equal(got, want)
