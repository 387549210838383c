"""The Ray engine: the same index as a local build, updates, faults, errors (a local Ray, 2 CPUs).

One Ray session serves every test here (``ray_session``); the model is the tiny e5-like one,
so a build costs little more than starting two actors.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from kosearch.build import ray_run
from kosearch.build.checkpoint import checkpoint_path
from kosearch.build.ray_shards import SHARDS_DIR
from kosearch.errors import ConfigError, CorpusError, MissingDependencyError, ModelLoadError
from kosearch.index import Index

ray = pytest.importorskip("ray", reason="the ray extra: pip install 'kosearch[ray]'")

pytestmark = [pytest.mark.st, pytest.mark.enable_socket]  # Ray's driver talks to its local GCS

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "서울 한강 공원에서 자전거를 탔다.", "부산 해운대 바다는 여름에 붐빈다.",
    "전세 계약 갱신 요구권은 한 번 쓸 수 있다.", "김치는 배추를 소금에 절여 발효한다.",
    "세종대왕은 훈민정음을 창제했다.", "제주도 한라산 등반은 새벽에 시작한다.",
    "태양광 패널은 남향으로 설치한다.", "GPU로 딥러닝 모델을 학습시킨다.",
]
QUERIES = ["한강 자전거", "김치 발효", "훈민정음", "딥러닝 GPU"]


def record(i: int, suffix: str = "") -> dict[str, Any]:
    """Document ``i``: one to five sentences (the longer ones span several passages)."""
    body = " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(1 + i % 5))
    return {"id": f"d{i}", "title": f"제목 {i}", "text": f"{body} 문서 번호 {i}{suffix}.",
            "year": 2000 + i}


def write_jsonl(path: Path, records: list[dict[str, Any]], extra: str = "") -> Path:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ray_session() -> Any:
    """One local Ray for the module: 2 CPUs, no dashboard."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two files, so that file order, ids across files and the corpus hash are exercised."""
    root = tmp_path_factory.mktemp("ray-corpus")
    return [write_jsonl(root / "a.jsonl", [record(i) for i in range(14)]),
            write_jsonl(root / "b.jsonl", [record(i) for i in range(14, 24)])]


@pytest.fixture(scope="module")
def local_index(corpus: list[Path], tiny_xlmr_dir: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Index:
    path = tmp_path_factory.mktemp("local") / "idx"
    return Index.build(corpus, path, model=str(tiny_xlmr_dir))


def ray_build(corpus: list[Path], path: Path, model: Path, **options: Any) -> Index:
    return Index.build(corpus, path, model=str(model), engine="ray", workers=2, **options)


def assert_same_index(got: Index, want: Index) -> None:
    """Passages, vectors (float tolerance), BM25 and search results of two indexes agree."""
    columns = ["doc_id", "chunk", "text", "title", "start", "end", "meta", "hash"]
    assert got.passages.table.select(columns).equals(want.passages.table.select(columns))
    n = len(want)
    assert len(got) == n
    assert np.allclose(got.store.reconstruct(range(n)), want.store.reconstruct(range(n)),
                       atol=1e-5)
    for mode in ("dense", "lexical", "hybrid"):
        for a, b in zip(got.search_batch(QUERIES, k=5, mode=mode),
                        want.search_batch(QUERIES, k=5, mode=mode)):
            assert np.allclose([h.score for h in a], [h.score for h in b], atol=1e-4)
            scores = {h.id: h.score for h in b}
            for got_hit, want_hit in zip(a, b):  # the same hits; a near-tie (vectors equal
                if got_hit.id != want_hit.id:    # within float tolerance) may swap
                    assert abs(scores.get(got_hit.id, b[-1].score) - got_hit.score) < 1e-4
    g, w = got.manifest, want.manifest
    assert (g.counts, g.chunking, g.lexical, g.model, g.faiss["factory"], g.metadata) == (
        w.counts, w.chunking, w.lexical, w.model, w.faiss["factory"], w.metadata)
    assert g.corpus == w.corpus


def _actor_pids() -> list[int]:
    """Processes of this machine running an encoding actor (Ray titles them after the class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"EncodeActor" in cmdline:
                pids.append(int(entry.name))
    return pids


class _Bar:
    """A progress bar that runs ``hook(updates so far)`` on every update (driver side)."""

    def __init__(self, hook: Any) -> None:
        self.hook, self.calls = hook, 0

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *_: Any) -> None:
        pass

    def update(self, _: int) -> None:
        self.calls += 1
        self.hook(self.calls)


def _small_calls(init: Any) -> Any:
    """RayOptions with two documents per actor call, so that a run has many calls."""

    def patched(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **{**kwargs, "docs_per_call": 2})

    return patched


@pytest.fixture(scope="module")
def killed_run(ray_session: Any, corpus: list[Path], tiny_xlmr_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Index, list[int], list[int]]:
    """A Ray build during which one encoding actor's process is killed (SIGKILL) as soon as the
    driver has the first results: the actors killed, and the updates that came after."""
    killed: list[int] = []
    after: list[int] = []

    def kill_one(calls: int) -> None:
        if not killed:
            pids = _actor_pids()
            assert pids, "no encoding actor process found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])
        else:
            after.append(calls)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ray_run, "_progress", lambda *a, **k: _Bar(kill_one))
        patch.setattr(ray_run.RayOptions, "__init__", _small_calls(ray_run.RayOptions.__init__))
        patch.setattr(ray_run, "LOCAL_SCAN_BYTES", -1)  # scanned by Ray Data, not the driver
        path = tmp_path_factory.mktemp("ray") / "idx"
        index = ray_build(corpus, path, tiny_xlmr_dir)
    return index, killed, after


def test_a_ray_build_with_an_actor_killed_mid_run_equals_a_local_build(
    killed_run: tuple[Index, list[int], list[int]], local_index: Index,
) -> None:
    built, killed, after = killed_run
    assert killed and after, "the run did not go on after the actor died"
    assert built.path is not None and not checkpoint_path(built.path).exists()
    assert len(local_index) > 24  # some documents span several passages
    assert_same_index(Index.load(built.path), local_index)
    assert built.last_report is not None and built.last_report.encoded == len(local_index)


def test_an_update_on_ray_encodes_only_new_and_changed_documents(
    killed_run: tuple[Index, list[int], list[int]], corpus: list[Path], local_index: Index,
    tmp_path: Path,
) -> None:
    assert killed_run[0].path is not None
    index = Index.load(shutil.copytree(killed_run[0].path, tmp_path / "idx"))
    changed = [record(i, " 개정판" if i == 3 else "") for i in range(14)] + [record(30)]
    newer = [write_jsonl(tmp_path / "a.jsonl", changed), corpus[1]]
    report = index.upsert(newer, engine="ray", workers=2)
    assert (report.added, report.updated, report.unchanged) == (1, 1, 23)
    assert local_index.path is not None
    want = Index.load(shutil.copytree(local_index.path, tmp_path / "want"))
    assert want.upsert(newer) == report  # the same documents encoded as a local update
    assert_same_index(Index.load(tmp_path / "idx"), want)


def test_an_interrupted_ray_run_resumes_from_its_shards(
    ray_session: Any, corpus: list[Path], local_index: Index, tiny_xlmr_dir: Path,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupt(calls: int) -> None:
        if calls == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(ray_run, "SHARD_ROWS", 4)  # a shard every few documents
    monkeypatch.setattr(ray_run.RayOptions, "__init__", _small_calls(ray_run.RayOptions.__init__))
    with monkeypatch.context() as patch:
        patch.setattr(ray_run, "_progress", lambda *a, **k: _Bar(interrupt))
        with pytest.raises(KeyboardInterrupt):
            ray_build(corpus, tmp_path / "idx", tiny_xlmr_dir)
    shards = list((checkpoint_path(tmp_path / "idx") / SHARDS_DIR).glob("*.parquet"))
    assert shards and not (tmp_path / "idx").exists()
    index = ray_build(corpus, tmp_path / "idx", tiny_xlmr_dir)
    assert index.last_report is not None and index.last_report.resumed > 0
    assert index.last_report.resumed + index.last_report.encoded == len(local_index)
    assert_same_index(Index.load(tmp_path / "idx"), local_index)


@pytest.mark.parametrize("scan_bytes", [ray_run.LOCAL_SCAN_BYTES, -1],
                         ids=["scanned on the driver", "scanned by Ray Data"])
def test_a_corpus_error_names_the_line_and_keeps_the_index(
    ray_session: Any, corpus: list[Path], tiny_xlmr_dir: Path, local_index: Index,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scan_bytes: int,
) -> None:
    monkeypatch.setattr(ray_run, "LOCAL_SCAN_BYTES", scan_bytes)
    bad = write_jsonl(tmp_path / "bad.jsonl", [record(40), record(41)], extra="{oops\n")
    with pytest.raises(CorpusError) as local:
        Index.build([corpus[0], bad], tmp_path / "x", model=str(tiny_xlmr_dir))
    assert local_index.path is not None
    target = Path(shutil.copytree(local_index.path, tmp_path / "idx"))
    before = (target / "manifest.json").read_bytes()
    with pytest.raises(CorpusError) as remote:
        ray_build([corpus[0], bad], target, tiny_xlmr_dir, restart=True)
    assert str(remote.value) == str(local.value)
    assert str(remote.value).startswith(f"{bad}:3: invalid JSON")
    assert (target / "manifest.json").read_bytes() == before
    dup = write_jsonl(tmp_path / "dup.jsonl", [record(50), record(5)])
    with pytest.raises(CorpusError, match=r"dup.jsonl:2: duplicate id 'd5' \(first seen at "):
        ray_build([corpus[0], dup], target, tiny_xlmr_dir, restart=True)
    with pytest.raises(CorpusError, match="does not exist"):
        ray_build([tmp_path / "missing.jsonl"], target, tiny_xlmr_dir)


def test_an_unreachable_ray_address_is_a_one_line_error(tmp_path: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", [record(1)])
    out = subprocess.run(
        [sys.executable, "-m", "kosearch", "index", str(corpus), "-o", str(tmp_path / "idx"),
         "--engine", "ray", "--ray-address", "127.0.0.1:9"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(
        "Error: cannot reach the Ray cluster at 127.0.0.1:9"), out.stderr


def test_ray_options_need_the_ray_engine_and_ray_needs_its_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kosearch.build import ray_cluster
    from kosearch.build.lifecycle import engine_options

    with pytest.raises(ConfigError, match="ray_address apply to engine='ray' only"):
        engine_options("local", ray_address="head:6379")
    with pytest.raises(ConfigError, match="unknown engine"):
        engine_options("spark")
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"kosearch\[ray\]"):
        ray_cluster.import_ray()


def test_actor_calls_are_as_large_as_the_local_window_in_whole_rounds() -> None:
    from kosearch.build.ray_cluster import call_size

    assert call_size(2000, 2, 2048) == 1000  # one call each
    assert call_size(10000, 2, 2048) == 1667  # three calls each, not 2048 + a short tail
    for documents in (1, 3, 5, 999, 2000, 4097, 10000, 123457):
        for workers in (1, 2, 3, 8):
            size = call_size(documents, workers, 2048)
            rounds = -(-documents // (workers * 2048))
            assert 1 <= size <= 2048
            assert -(-documents // size) <= workers * rounds  # no actor waits on a short tail


def test_results_of_other_weights_than_the_drivers_are_refused_before_a_shard_is_written(
) -> None:
    import pyarrow as pa

    from kosearch.errors import ModelMismatchError

    table = pa.table({"rank": pa.array([0, 1], pa.int64()), "model": ["abc", "abc"]})
    driver = SimpleNamespace(name="me5", fingerprint="def", dim=2)
    shards = SimpleNamespace(done=0, write=lambda *a: pytest.fail("a shard was written"))
    with pytest.raises(ModelMismatchError, match=r"other weights for me5 .*abc.*def"):
        ray_run.RayRun._flush([table], shards, driver, final=True)  # type: ignore[arg-type]


def test_auto_on_cpu_workers_is_measured_on_their_machine_once_and_recorded(
    ray_session: Any, corpus: list[Path], tiny_xlmr_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kosearch.encoding.calibrate import cache_path
    from kosearch.encoding.cpu import cpu_info

    monkeypatch.setenv("KOSEARCH_CALIBRATE", "1")  # the driver's say; the workers' env has 0
    ray_build(corpus, tmp_path / "idx", tiny_xlmr_dir, precision="auto")
    model = Index.load(tmp_path / "idx").manifest.model
    record = model.calibration
    assert "nodes" not in record  # the actors took turns: one measured, the other read it
    assert model.precision == record["choice"] and {"fp32", "int8"} <= set(record["rates"])
    assert record["key"]["threads"] == 1  # an actor's share: 2 CPUs, 2 actors
    assert record["key"]["cpu"] == cpu_info()["model"]
    assert cache_path(record["key"]).is_file()  # cached on the node, for the next run


def test_the_manifest_records_the_workers_precision_or_auto_where_nodes_chose_differently(
) -> None:
    import pyarrow as pa

    from kosearch.build.ray_precision import encoded_precision
    from kosearch.encoding.calibrate import describe

    def node(cpu: str, choice: str) -> str:
        return json.dumps({"choice": choice, "rates": {"fp32": 1.0, choice: 2.0},
                           "key": {"cpu": cpu, "flags": ["avx2"]}}, sort_keys=True)

    def table(precisions: list[str], records: list[str | None]) -> pa.Table:
        return pa.table({"precision": precisions, "calibration": pa.array(records, pa.string())})

    assert encoded_precision([], "bf16") == ("bf16", {})  # nothing encoded: the driver's word
    assert encoded_precision([table(["fp32"], [None])], None) == ("fp32", {})  # not measured
    one = node("EPYC", "int8")
    same = [table(["int8", "int8"], [one, None]), table(["int8"], [one])]
    assert encoded_precision(same, None) == ("int8", json.loads(one))
    mixed = [table(["int8"], [one]), table(["bf16", "bf16"], [node("Xeon", "bf16"), None])]
    precision, record = encoded_precision(mixed, None)
    assert precision == "auto"  # an update measures again
    assert record["passages"] == {"bf16": 2, "int8": 1}
    assert sorted(n["key"]["cpu"] for n in record["nodes"]) == ["EPYC", "Xeon"]
    assert "auto chose int8" in describe(record) and "auto chose bf16" in describe(record)


def test_a_model_path_that_is_no_model_fails_before_ray_is_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ray_run, "connect", lambda *_: pytest.fail("Ray was reached"))
    corpus = write_jsonl(tmp_path / "c.jsonl", [record(1)])
    with pytest.raises(ModelLoadError, match="no-model': no such directory"):
        ray_build([corpus], tmp_path / "idx", tmp_path / "no-model")
    assert not (tmp_path / "idx").exists()


def test_ray_datas_console_chatter_is_held_back_during_a_run_and_restored_after() -> None:
    import logging

    import ray.data  # configures Ray Data's loggers

    from kosearch.build.ray_cluster import configure_data, quiet_console

    console = [h for h in logging.getLogger("ray.data").handlers
               if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    assert console, "Ray Data logs to the console no more; quiet_console has nothing to do"
    before = [h.level for h in console]
    with quiet_console():
        assert all(h.level >= logging.ERROR for h in console)
    assert [h.level for h in console] == before
    configure_data()
    assert ray.data.DataContext.get_current().issue_detectors_config.detectors == []


def test_a_kosearch_error_is_found_in_the_text_ray_keeps_of_it() -> None:
    from kosearch.build.ray_cluster import kosearch_cause

    wrapped = RuntimeError("ray::MapBatches(f)()\nkosearch.errors.CorpusError: x.jsonl:3: bad\n")
    found = kosearch_cause(wrapped)
    assert isinstance(found, CorpusError) and str(found) == "x.jsonl:3: bad"
    assert kosearch_cause(RuntimeError("ValueError: not ours")) is None
