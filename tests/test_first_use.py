"""What a new user meets first: mistakes reported before any model loads, updates that change
nothing, ``KOSEARCH_MODEL`` in Python, query limits, and a quiet stderr.

Where the user types a command, the test runs it in a fresh process (``python -m kosearch``);
"no model loaded" is checked there as "sentence_transformers was never imported".
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kosearch.cli import cli
from kosearch.errors import ModelLoadError
from kosearch.index import Index
from kosearch.types import MAX_QUERY_CHARS

pytestmark = pytest.mark.st

ROOT = Path(__file__).resolve().parent.parent
DOCS = [
    {"id": "seoul", "title": "서울", "text": "서울은 대한민국의 수도이다. 한강이 흐른다."},
    {"id": "kimchi", "title": "김치", "text": "김치는 배추와 고춧가루로 담그는 발효 음식이다."},
    {"id": "hangul", "title": "한글", "text": "한글은 세종대왕이 창제한 문자이다."},
]
# Runs the command line in this process and reports whether sentence-transformers was imported.
_PROBE = (
    "import sys, json\n"
    "from click.testing import CliRunner\n"
    "from kosearch.cli import cli\n"
    "r = CliRunner().invoke(cli, sys.argv[1:])\n"
    "print(json.dumps({'code': r.exit_code, 'stderr': r.stderr, 'stdout': r.stdout,\n"
    "                  'model_loaded': 'sentence_transformers' in sys.modules}))\n"
)


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


def kosearch(*args: str, cwd: Path, env: dict[str, str] | None = None) -> dict:
    """Run ``kosearch ARGS`` in a new process, as a user would."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    run = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=cwd, env=full, text=True,
                         capture_output=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def snapshot(directory: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``directory``: its digest and modification time."""
    return {str(p.relative_to(directory)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                            p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def one_error_line(result: dict) -> str:
    lines = [line for line in result["stderr"].splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in result["stderr"], result["stderr"]
    return lines[0]


@pytest.fixture()
def built(tmp_path: Path, tiny_xlmr_dir: Path) -> Path:
    out = tmp_path / "idx"
    corpus = write_jsonl(tmp_path / "c.jsonl", DOCS)
    result = CliRunner().invoke(cli, ["-q", "index", str(corpus), "-o", str(out),
                                      "--model", str(tiny_xlmr_dir)])
    assert result.exit_code == 0, result.output
    return out


# ---------------------------------------------------------------------------- before the model


def _bad_corpora(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (corpus path, what its one-line error must say)."""
    (tmp / "bad.jsonl").write_text('{"id": "a", "text": "서울"}\n{"id": "b", "text": "부산\n',
                                   encoding="utf-8")
    (tmp / "empty.jsonl").write_text("", encoding="utf-8")
    (tmp / "body.csv").write_text("id,body\n1,안녕하세요\n", encoding="utf-8")
    return {
        "missing path": (tmp / "corpus.jsnol", "corpus.jsnol' does not exist"),
        "malformed JSON": (tmp / "bad.jsonl", "bad.jsonl:2: invalid JSON"),
        "empty file": (tmp / "empty.jsonl", "no documents to index in"),
        "missing text column": (tmp / "body.csv", "missing field 'text'"),
    }


@pytest.mark.parametrize("case", ["missing path", "malformed JSON", "empty file",
                                  "missing text column"])
def test_corpus_mistakes_are_reported_before_any_model_loads(tmp_path: Path, case: str) -> None:
    corpus, expected = _bad_corpora(tmp_path)[case]
    # No model is available at all: the corpus error must still be the one reported.
    result = kosearch("index", str(corpus), "-o", str(tmp_path / "idx"), cwd=tmp_path,
                      env={"KOSEARCH_MODEL": str(tmp_path / "no-such-model")})
    assert result["code"] == 1
    line = one_error_line(result)
    assert expected in line and "model" not in line.lower(), line
    assert not result["model_loaded"]
    assert not (tmp_path / "idx").exists()


def test_invalid_json_message_says_at_once(tmp_path: Path) -> None:
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"id": "a", "text": "줄\tbreak\x01"}\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["index", str(corpus), "-o", str(tmp_path / "i")])
    assert result.exit_code == 1
    assert "Invalid control character at column" in result.stderr
    assert "at at" not in result.stderr


# ---------------------------------------------------------------------------- updates


def test_an_update_that_changes_nothing_loads_no_model_and_writes_nothing(
    built: Path, tmp_path: Path, tiny_xlmr_dir: Path, tiny_bert_dir: Path
) -> None:
    corpus = write_jsonl(tmp_path / "same.jsonl", DOCS)
    before = snapshot(built)
    for model in (tiny_xlmr_dir, tiny_bert_dir):  # the index's model, and another one
        result = kosearch("index", str(corpus), "-o", str(built), cwd=tmp_path,
                          env={"KOSEARCH_MODEL": str(model)})
        assert result["code"] == 0, result["stderr"]
        assert "0 added, 0 updated, 0 deleted, 3 unchanged" in result["stderr"]
        assert not result["model_loaded"]
        assert snapshot(built) == before


def test_a_change_checks_the_environment_model_against_the_index(
    built: Path, tmp_path: Path, tiny_bert_dir: Path
) -> None:
    corpus = write_jsonl(tmp_path / "more.jsonl", [*DOCS, {"id": "new", "text": "제주 바다"}])
    before = snapshot(built)
    result = CliRunner().invoke(cli, ["index", str(corpus), "-o", str(built)],
                                env={"KOSEARCH_MODEL": str(tiny_bert_dir)})
    assert result.exit_code == 1
    assert "would mix two vector spaces" in result.stderr and "--rebuild" in result.stderr
    assert snapshot(built) == before


def test_an_empty_corpus_update_is_a_note_and_writes_nothing(built: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    before = snapshot(built)
    result = kosearch("index", str(empty), "-o", str(built), cwd=tmp_path)
    assert result["code"] == 0, result["stderr"]
    notes = [line for line in result["stderr"].splitlines() if "no documents in" in line]
    assert len(notes) == 1 and "unchanged" in notes[0]
    assert snapshot(built) == before
    strict = kosearch("index", str(empty), "-o", str(built), "--strict", cwd=tmp_path)
    assert strict["code"] == 1 and "no documents in" in one_error_line(strict)
    assert snapshot(built) == before
    manifest = json.loads((built / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["corpus"]["sources"] == [str(tmp_path / "c.jsonl")]


# ---------------------------------------------------------------------------- Python API


def test_index_build_without_a_model_uses_kosearch_model(
    monkeypatch: pytest.MonkeyPatch, tiny_xlmr_dir: Path, tmp_path: Path
) -> None:
    from kosearch.types import Document

    docs = [Document(id=d["id"], text=d["text"]) for d in DOCS]
    monkeypatch.setenv("KOSEARCH_MODEL", str(tiny_xlmr_dir))
    index = Index.build(docs)
    assert index.manifest.model.name == str(tiny_xlmr_dir)
    monkeypatch.setenv("KOSEARCH_MODEL", str(tmp_path / "elsewhere"))
    with pytest.raises(ModelLoadError, match="elsewhere"):
        Index.build(docs)


# ---------------------------------------------------------------------------- queries


@pytest.mark.parametrize("k", ["0", "-1"])
def test_k_below_one_is_a_usage_error_before_anything_loads(tmp_path: Path, k: str) -> None:
    # The index does not exist: a usage error must come first (exit 2, not 1).
    result = CliRunner().invoke(cli, ["query", "서울", "-i", str(tmp_path / "nope"), "-k", k])
    assert result.exit_code == 2, result.output
    assert "-k" in result.stderr and "Traceback" not in result.stderr


def test_a_huge_query_is_refused_and_never_echoed(built: Path, tmp_path: Path) -> None:
    huge = "서울 " + "query " * 16_600  # ~100,000 characters (one argument is at most 128 kB)
    result = kosearch("query", huge, "-i", str(built), cwd=tmp_path)
    assert result["code"] == 2
    assert str(MAX_QUERY_CHARS) in result["stderr"] and len(result["stderr"]) < 1000
    assert not result["model_loaded"]
    queries = tmp_path / "q.txt"
    queries.write_text("김치\n" + "김치 " * 1000 + "\n", encoding="utf-8")
    from_file = CliRunner().invoke(cli, ["query", "--queries", str(queries), "-i", str(built)])
    assert from_file.exit_code == 1 and f"{queries}:2:" in from_file.stderr
    assert len(from_file.stderr) < 1000


def test_a_long_query_is_echoed_on_one_line(built: Path) -> None:
    query = "김치는\n" + "배추와 고춧가루로 담근다 " * 60
    assert len(query) <= MAX_QUERY_CHARS
    result = CliRunner().invoke(cli, ["query", query, "-i", str(built), "-k", "1"])
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0]
    assert header.startswith("# 김치는 배추와") and header.endswith("…") and len(header) < 170


def test_info_shows_the_precision(built: Path) -> None:
    result = CliRunner().invoke(cli, ["info", str(built)])
    assert result.exit_code == 0, result.output
    model_line = next(line for line in result.stdout.splitlines() if line.startswith("model"))
    assert "fp32" in model_line


# ---------------------------------------------------------------------------- stderr


def test_stderr_has_no_weight_loading_bars(tmp_path: Path, tiny_xlmr_dir: Path) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", DOCS)
    result = kosearch("index", str(corpus), "-o", str(tmp_path / "idx"), "--model",
                      str(tiny_xlmr_dir), cwd=tmp_path)
    assert result["code"] == 0, result["stderr"]
    assert result["model_loaded"] and "Loading weights" not in result["stderr"]
    query = kosearch("query", "서울", "-i", str(tmp_path / "idx"), "--query-backend", "torch",
                     cwd=tmp_path)
    assert query["code"] == 0 and "Loading weights" not in query["stderr"]


@pytest.mark.parametrize("enabled", [True, False])
def test_the_users_transformers_progress_setting_is_left_as_it_was(
    tiny_xlmr_dir: Path, enabled: bool
) -> None:
    from transformers.utils import logging as hf_logging

    from kosearch.encoding.encoder import SentenceTransformerEncoder

    was = hf_logging.is_progress_bar_enabled()
    try:
        (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()
        SentenceTransformerEncoder(str(tiny_xlmr_dir), device="cpu")
        assert hf_logging.is_progress_bar_enabled() is enabled
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()
