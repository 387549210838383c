"""`kosearch index` on an existing index, `kosearch delete`, and `kosearch info` after updates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kosearch.cli import cli

pytestmark = pytest.mark.st

TEXTS = {
    "a": "서울 한강 공원에서 자전거를 탔다.",
    "b": "부산 해운대 바다는 여름에 붐빈다.",
    "c": "전세 계약 갱신 요구권은 한 번 쓸 수 있다.",
    "d": "김치는 배추를 소금에 절여 발효한다.",
}


def corpus(path: Path, texts: dict[str, str]) -> str:
    lines = [json.dumps({"id": k, "text": v}, ensure_ascii=False) for k, v in texts.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture()
def built(tmp_path: Path, tiny_xlmr_dir: Path) -> tuple[CliRunner, Path, Path]:
    runner = CliRunner()
    out = tmp_path / "idx"
    first = {k: TEXTS[k] for k in "abc"}
    path = corpus(tmp_path / "c1.jsonl", first)
    result = runner.invoke(
        cli, ["-q", "index", path, "-o", str(out), "--model", str(tiny_xlmr_dir)]
    )
    assert result.exit_code == 0, result.output
    return runner, out, tmp_path


def test_index_on_an_existing_index_updates_it(built: tuple[CliRunner, Path, Path]) -> None:
    runner, out, tmp = built
    changed = {"a": TEXTS["a"], "b": "부산 해운대 바다는 겨울에 조용하다.", "d": TEXTS["d"]}
    path = corpus(tmp / "c2.jsonl", changed)
    result = runner.invoke(cli, ["-q", "index", path, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 added, 1 updated, 0 deleted, 1 unchanged; 2 passages encoded" in result.stderr
    assert "now 4 documents" in result.stderr
    hits = runner.invoke(cli, ["query", "김치 배추", "-i", str(out), "--mode", "lexical", "--json"])
    assert json.loads(hits.stdout)["hits"][0]["id"] == "d"
    synced = runner.invoke(cli, ["-q", "index", path, "-o", str(out), "--sync"])
    assert "0 added, 0 updated, 1 deleted, 3 unchanged; 0 passages encoded" in synced.stderr
    info = runner.invoke(cli, ["info", str(out), "--json"])
    data = json.loads(info.stdout)
    assert data["counts"]["documents"] == 3 and data["created"] <= data["updated"]


def test_delete_command_reports_unknown_ids(built: tuple[CliRunner, Path, Path]) -> None:
    runner, out, tmp = built
    (tmp / "ids.txt").write_text("b\n\nzz\n", encoding="utf-8")
    result = runner.invoke(cli, ["delete", "a", "-i", str(out), "--ids-file", str(tmp / "ids.txt")])
    assert result.exit_code == 0, result.output
    assert "deleted 2 document(s)" in result.stderr and "1 unknown id(s) ignored" in result.stderr
    assert "zz" in result.stderr
    assert json.loads(runner.invoke(cli, ["info", str(out), "--json"]).stdout)["counts"][
        "documents"] == 1
    none = runner.invoke(cli, ["delete", "-i", str(out)])
    assert none.exit_code == 2 and "IDS" in none.output
    missing = runner.invoke(cli, ["delete", "a", "-i", str(tmp / "nowhere")])
    assert missing.exit_code == 1 and "no kosearch index" in missing.stderr


def test_updating_with_another_model_or_settings_is_refused(
    built: tuple[CliRunner, Path, Path], tiny_bert_dir: Path
) -> None:
    runner, out, tmp = built
    before = (out / "manifest.json").read_bytes()
    path = corpus(tmp / "c2.jsonl", TEXTS)
    other = runner.invoke(cli, ["index", path, "-o", str(out), "--model", str(tiny_bert_dir)])
    assert other.exit_code == 1
    assert "another model" in other.stderr and "--rebuild" in other.stderr
    assert "Traceback" not in other.output
    metric = runner.invoke(cli, ["index", path, "-o", str(out), "--metric", "ip"])
    assert metric.exit_code == 1 and "--metric 'cosine'" in metric.stderr
    assert (out / "manifest.json").read_bytes() == before
    rebuilt = runner.invoke(cli, ["-q", "index", path, "-o", str(out), "--metric", "ip",
                                  "--rebuild", "--model", str(tiny_bert_dir)])
    assert rebuilt.exit_code == 0, rebuilt.output
    data = json.loads(runner.invoke(cli, ["info", str(out), "--json"]).stdout)
    assert data["metric"] == "ip" and data["counts"]["documents"] == 4


def test_sync_needs_an_existing_index(tmp_path: Path) -> None:
    path = corpus(tmp_path / "c.jsonl", TEXTS)
    result = CliRunner().invoke(cli, ["index", path, "-o", str(tmp_path / "new"), "--sync"])
    assert result.exit_code == 2 and "--sync updates an existing index" in result.output


def test_changing_the_index_type_reuses_the_vectors(built: tuple[CliRunner, Path, Path]) -> None:
    runner, out, tmp = built
    path = corpus(tmp / "c1.jsonl", {k: TEXTS[k] for k in "abc"})
    result = runner.invoke(cli, ["-q", "index", path, "-o", str(out), "--index-type", "hnsw"])
    assert result.exit_code == 0, result.output
    assert "0 passages encoded" in result.stderr
    text = runner.invoke(cli, ["info", str(out)]).stdout
    assert "hnsw (faiss HNSW" in text
    assert "memory" in text and "updated" in text
    query = runner.invoke(
        cli, ["query", "해운대 바다", "-i", str(out), "--mode", "dense", "-k", "1"]
    )
    assert query.exit_code == 0


def test_cli_index_types_match_the_library() -> None:
    from kosearch.storage.ann import INDEX_TYPES as LIBRARY

    option = next(p for p in cli.commands["index"].params if p.name == "index_type")
    assert list(option.type.choices) == list(LIBRARY)  # type: ignore[attr-defined]


def test_query_time_knobs(built: tuple[CliRunner, Path, Path]) -> None:
    runner, out, tmp = built
    path = corpus(tmp / "c1.jsonl", {k: TEXTS[k] for k in "abc"})
    assert runner.invoke(cli, ["-q", "index", path, "-o", str(out), "--index-type", "ivf-flat"]
                         ).exit_code == 0
    info = json.loads(runner.invoke(cli, ["info", str(out), "--json"]).stdout)
    assert info["faiss"]["kind"] == "ivf-flat" and info["faiss"]["nprobe"] >= 1
    ok = runner.invoke(cli, ["query", "바다", "-i", str(out), "--mode", "dense", "--nprobe", "1"])
    assert ok.exit_code == 0, ok.output
    wrong = runner.invoke(cli, ["query", "바다", "-i", str(out), "--ef-search", "64"])
    assert wrong.exit_code == 1 and "applies only to hnsw" in wrong.stderr
    bad = runner.invoke(cli, ["query", "바다", "-i", str(out), "--nprobe", "0"])
    assert bad.exit_code == 2
