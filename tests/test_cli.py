"""The command line, end to end through click's CliRunner, with tiny offline models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kosearch.cli import cli

pytestmark = pytest.mark.st

DOCS = [
    {"id": "seoul", "title": "서울", "text": "서울은 대한민국의 수도이다. 한강이 서울을 가로질러 흐른다.", "tag": "지리"},
    {"id": "kimchi", "title": "김치", "text": "김치는 배추와 고춧가루로 담그는 발효 음식이다."},
    {"id": "hangul", "title": "한글", "text": "한글은 세종대왕이 창제한 문자이다. 훈민정음이라고도 한다."},
    {"id": "gpu", "title": "GPU", "text": "GPU는 딥러닝 학습을 빠르게 해 주는 장치이다."},
]


def write_jsonl(path: Path, records: list[dict], extra: str = "") -> Path:
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.write(extra)
    return path


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "corpus.jsonl", DOCS)


@pytest.fixture()
def index_dir(runner: CliRunner, corpus: Path, tmp_path: Path, tiny_xlmr_dir: Path) -> Path:
    out = tmp_path / "idx"
    result = runner.invoke(cli, ["-q", "index", str(corpus), "-o", str(out), "--model", str(tiny_xlmr_dir)])
    assert result.exit_code == 0, result.output
    return out


def assert_one_line_error(result, *fragments: str) -> None:  # noqa: ANN001
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    error_lines = [line for line in lines if line.startswith("Error: ")]
    assert len(error_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]


def test_index_then_query_prints_hits(runner: CliRunner, index_dir: Path) -> None:
    result = runner.invoke(cli, ["query", "서울 한강", "-i", str(index_dir), "-k", "2"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "# 서울 한강"
    assert sum(1 for line in lines if line.strip()[:2] in ("1.", "2.")) == 2


def test_index_reports_counts_on_stderr(runner: CliRunner, corpus: Path, tmp_path: Path,
                                        tiny_xlmr_dir: Path) -> None:
    result = runner.invoke(cli, ["index", str(corpus), "-o", str(tmp_path / "i"),
                                 "--model", str(tiny_xlmr_dir)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "indexed 4 documents as 4 passages" in result.stderr


def test_query_json_schema(runner: CliRunner, index_dir: Path) -> None:
    result = runner.invoke(cli, ["query", "김치", "-i", str(index_dir), "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["query"] == "김치"
    assert len(record["hits"]) == 3
    hit = record["hits"][0]
    assert {"id", "chunk", "score", "rank", "text", "title", "meta", "start", "end"} <= set(hit)
    assert [h["rank"] for h in record["hits"]] == [1, 2, 3]
    assert "김치" in result.stdout  # not ASCII-escaped


def test_lexical_mode_finds_particle_glued_nouns(runner: CliRunner, index_dir: Path) -> None:
    result = runner.invoke(cli, ["query", "훈민정음은", "-i", str(index_dir), "--mode", "lexical",
                                 "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    assert hits[0]["id"] == "hangul"
    assert hits[0]["scores"]["lexical_rank"] == 1
    assert "dense_rank" not in hits[0]["scores"]


def test_queries_file_jsonl_and_plain(runner: CliRunner, index_dir: Path, tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "q.jsonl", [{"_id": "q1", "text": "서울"}, {"id": 7, "text": "GPU"}])
    result = runner.invoke(cli, ["query", "--queries", str(jsonl), "-i", str(index_dir), "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["query_id"], r["query"]) for r in records] == [("q1", "서울"), ("7", "GPU")]
    plain = tmp_path / "q.txt"
    plain.write_text("서울\n\n김치\n", encoding="utf-8")
    result = runner.invoke(cli, ["query", "--queries", str(plain), "-i", str(index_dir), "--json"])
    assert [json.loads(line)["query"] for line in result.stdout.splitlines()] == ["서울", "김치"]
    stdin = runner.invoke(cli, ["query", "--queries", "-", "-i", str(index_dir), "--json"],
                          input="한글\n")
    assert json.loads(stdin.stdout)["query"] == "한글"


def test_query_needs_exactly_one_source(runner: CliRunner, index_dir: Path) -> None:
    result = runner.invoke(cli, ["query", "-i", str(index_dir)])
    assert result.exit_code == 2
    assert "QUERY" in result.stderr


def test_info_and_models(runner: CliRunner, index_dir: Path, tiny_xlmr_dir: Path) -> None:
    result = runner.invoke(cli, ["info", str(index_dir)])
    assert result.exit_code == 0, result.output
    assert str(tiny_xlmr_dir) in result.stdout
    assert "passages   4" in result.stdout
    data = json.loads(runner.invoke(cli, ["info", str(index_dir), "--json"]).stdout)
    assert data["counts"]["documents"] == 4
    models = runner.invoke(cli, ["models"])
    assert "dragonkue/multilingual-e5-small-ko (default)" in models.stdout


def test_stdin_corpus(runner: CliRunner, tmp_path: Path, tiny_xlmr_dir: Path) -> None:
    text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS)
    result = runner.invoke(cli, ["-q", "index", "-", "-o", str(tmp_path / "s"),
                                 "--model", str(tiny_xlmr_dir)], input=text)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["counts"]["documents"] == 4


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        ('{"id": "a", "text": "좋다"}\n{"id": "b", "text": \n', ["bad.jsonl:2", "JSON"]),
        ('{"id": "a", "body": "좋다"}\n', ["bad.jsonl:1", "'text'"]),
        ('{"id": "a", "text": "하나"}\n{"id": "a", "text": "둘"}\n', ["bad.jsonl:2", "duplicate", "'a'"]),
        ("", ["no documents"]),
        ('{"id": "a", "text": "  "}\n', ["no documents", "empty"]),
    ],
)
def test_bad_corpus_is_one_line_error(runner: CliRunner, tmp_path: Path, tiny_xlmr_dir: Path,
                                      content: str, fragments: list[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content, encoding="utf-8")
    result = runner.invoke(cli, ["index", str(bad), "-o", str(tmp_path / "idx"),
                                 "--model", str(tiny_xlmr_dir)])
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "idx").exists()


def test_non_utf8_corpus(runner: CliRunner, tmp_path: Path, tiny_xlmr_dir: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes('{"id": "a", "text": "좋다"}\n'.encode() + b'{"id": "b", "text": "\xff\xfe"}\n')
    result = runner.invoke(cli, ["index", str(bad), "-o", str(tmp_path / "idx"),
                                 "--model", str(tiny_xlmr_dir)])
    assert_one_line_error(result, "bad.jsonl:2", "UTF-8")


def test_strict_fails_on_empty_text(runner: CliRunner, tmp_path: Path, tiny_xlmr_dir: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", [*DOCS, {"id": "e", "text": ""}])
    result = runner.invoke(cli, ["index", str(corpus), "-o", str(tmp_path / "idx"),
                                 "--model", str(tiny_xlmr_dir), "--strict"])
    assert_one_line_error(result, "c.jsonl:5")
    lenient = runner.invoke(cli, ["index", str(corpus), "-o", str(tmp_path / "idx"),
                                  "--model", str(tiny_xlmr_dir)])
    assert lenient.exit_code == 0
    assert "skipped 1 document" in lenient.stderr


def test_failed_index_leaves_existing_index_untouched(
    runner: CliRunner, index_dir: Path, tmp_path: Path, tiny_xlmr_dir: Path
) -> None:
    before = {p.name: p.read_bytes() for p in index_dir.iterdir() if p.is_file()}
    bad = write_jsonl(tmp_path / "bad.jsonl", DOCS, extra="{oops\n")
    result = runner.invoke(cli, ["index", str(bad), "-o", str(index_dir), "--model", str(tiny_xlmr_dir)])
    assert_one_line_error(result, "bad.jsonl:5")
    assert {p.name: p.read_bytes() for p in index_dir.iterdir() if p.is_file()} == before


def test_missing_and_corrupt_index(runner: CliRunner, index_dir: Path, tmp_path: Path) -> None:
    missing = runner.invoke(cli, ["query", "서울", "-i", str(tmp_path / "nope")])
    assert_one_line_error(missing, "no kosearch index")
    (index_dir / "vectors.faiss").write_bytes(b"garbage")
    corrupt = runner.invoke(cli, ["query", "서울", "-i", str(index_dir)])
    assert_one_line_error(corrupt, "vectors.faiss")


def test_model_that_cannot_load_offline_says_how_to_fix(runner: CliRunner, corpus: Path,
                                                        tmp_path: Path) -> None:
    result = runner.invoke(cli, ["index", str(corpus), "-o", str(tmp_path / "i"),
                                 "--model", "nobody/no-such-model"])
    assert_one_line_error(result, "nobody/no-such-model", "--model", "KOSEARCH_MODEL")


def test_default_model_offline_is_a_clear_error(runner: CliRunner, corpus: Path,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KOSEARCH_MODEL", raising=False)
    result = runner.invoke(cli, ["index", str(corpus), "-o", str(tmp_path / "i")])
    assert_one_line_error(result, "dragonkue/multilingual-e5-small-ko", "KOSEARCH_MODEL")


def test_model_from_environment(runner: CliRunner, corpus: Path, tmp_path: Path,
                                tiny_xlmr_dir: Path) -> None:
    result = runner.invoke(cli, ["-q", "index", str(corpus), "-o", str(tmp_path / "i")],
                           env={"KOSEARCH_MODEL": str(tiny_xlmr_dir)})
    assert result.exit_code == 0, result.output
    query = runner.invoke(cli, ["query", "서울"], env={"KOSEARCH_INDEX": str(tmp_path / "i")})
    assert query.exit_code == 0, query.output


def test_query_with_another_model_is_refused(runner: CliRunner, index_dir: Path,
                                             tiny_bert_dir: Path) -> None:
    result = runner.invoke(cli, ["query", "서울", "-i", str(index_dir), "--model", str(tiny_bert_dir)])
    assert_one_line_error(result, "the index was built with")


@pytest.mark.parametrize("k", ["0", "-3"])
def test_non_positive_k(runner: CliRunner, index_dir: Path, k: str) -> None:
    result = runner.invoke(cli, ["query", "서울", "-i", str(index_dir), "-k", k])
    assert result.exit_code == 2 and "-k" in result.stderr  # bad usage, caught by click


def test_debug_shows_the_traceback(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["--debug", "query", "서울", "-i", str(tmp_path / "nope")])
    assert result.exit_code != 0
    assert result.exception is not None
    assert type(result.exception).__name__ == "IndexNotFoundError"


def test_every_command_has_help(runner: CliRunner) -> None:
    commands = cli.commands
    assert {"index", "query", "info", "models"} <= set(commands)
    for name, command in commands.items():
        assert command.help, name
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, name
        for param in command.params:
            if isinstance(param, __import__("click").Option) and not param.hidden:
                assert param.help, f"{name} {param.opts}"


def test_python_dash_m(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "kosearch", "--version"], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "kosearch, version 0.1.0"


def test_query_with_a_cross_encoder(runner: CliRunner, index_dir: Path,
                                    tiny_cross_encoder_dir: Path) -> None:
    result = runner.invoke(cli, ["query", "서울", "-i", str(index_dir), "--json", "-k", "2",
                                 "--rerank", str(tiny_cross_encoder_dir), "--rerank-top", "4"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)["hits"]
    assert len(hits) == 2
    assert hits[0]["scores"]["rerank_rank"] == 1
    assert hits[0]["score"] >= hits[1]["score"]


def test_unloadable_reranker_is_one_line_error(runner: CliRunner, index_dir: Path) -> None:
    result = runner.invoke(cli, ["query", "서울", "-i", str(index_dir), "--rerank", "nobody/ranker"])
    assert_one_line_error(result, "nobody/ranker")
