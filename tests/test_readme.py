"""The README's promises: its two commands, and CI running the second one verbatim."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "the README must start with a bash block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_opens_with_two_commands() -> None:
    commands = _readme_commands()
    assert len(commands) == 2
    setup_and_run, setup_and_test = commands
    assert "torch==2.13.0" in setup_and_run and "torch==2.13.0" in setup_and_test
    assert "kosearch index data/sample.jsonl" in setup_and_run
    assert "pytest" in setup_and_test


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _readme_commands()[1] in ci.splitlines()


def test_sample_data_the_quickstart_uses_is_valid() -> None:
    lines = (ROOT / "data" / "sample.jsonl").read_text(encoding="utf-8").splitlines()
    docs = [json.loads(line) for line in lines]
    assert len(docs) >= 40
    assert len({d["id"] for d in docs}) == len(docs)
    assert all(d["text"].strip() for d in docs)
    question = re.search(r'kosearch query "([^"]+)"', _readme_commands()[0]).group(1)
    assert question in (ROOT / "data" / "questions.txt").read_text(encoding="utf-8")


def _offline_block() -> list[str]:
    """The README's offline form: the bash block that exports KOSEARCH_MODEL."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    found = [b for b in blocks if "export KOSEARCH_MODEL=" in b]
    assert len(found) == 1, "the README must give the offline form as one bash block"
    return [line for line in found[0].splitlines() if line and not line.startswith("#")]


def _quickstart_shell(tmp_path: Path) -> dict[str, str]:
    """A folder where the first command runs as typed: ``python3 -m venv`` and ``pip`` are
    stand-ins that do nothing, ``.venv/bin/kosearch`` runs this checkout; no model id resolves
    (the hub is offline), so only a local model can work."""
    import shutil

    (tmp_path / "data").mkdir()
    shutil.copy(ROOT / "data" / "sample.jsonl", tmp_path / "data" / "sample.jsonl")
    stubs, venv = tmp_path / "stubs", tmp_path / ".venv" / "bin"
    stubs.mkdir()
    venv.mkdir(parents=True)
    scripts = {stubs / "python3": "exit 0", venv / "pip": "exit 0",
               venv / "kosearch": f'exec "{sys.executable}" -m kosearch "$@"'}
    for path, body in scripts.items():
        path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        path.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "KOSEARCH_MODEL"}
    env.update(PATH=f"{stubs}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(ROOT),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


@pytest.mark.st
def test_the_offline_quick_start_works_when_pasted(tmp_path: Path, tiny_xlmr_dir: Path) -> None:
    import subprocess

    offline = _offline_block()
    assert offline == ["export KOSEARCH_MODEL=/path/to/multilingual-e5-small-ko"]
    first = _readme_commands()[0]
    env = _quickstart_shell(tmp_path)
    local = str(tiny_xlmr_dir)

    def bash(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=300)

    # The prefix form this README used to give reaches only `python3 -m venv`: kosearch asks
    # for the default model, which is not there offline.
    prefixed = bash(f"KOSEARCH_MODEL={local} {first}")
    assert prefixed.returncode == 1 and "cannot load model" in prefixed.stderr
    # The README's form, pasted as written (the model path filled in), then the first command.
    pasted = bash(offline[0].replace("/path/to/multilingual-e5-small-ko", local) + "\n" + first)
    assert pasted.returncode == 0, pasted.stderr
    assert f"with {local}" in pasted.stderr and "# 전세 계약이" in pasted.stdout
    assert " 1. " in pasted.stdout


def test_ci_sets_both_test_variables_and_tests_skip_naming_them(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    import subprocess

    from realdata import HOW, data_path, missing

    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "export KOSEARCH_TEST_MODEL" in ci and "export KOSEARCH_TEST_DATA" in ci
    monkeypatch.delenv("KOSEARCH_TEST_DATA", raising=False)
    assert "KOSEARCH_TEST_MODEL" in missing(data_path("x")) and "KOSEARCH_TEST_DATA" in HOW
    # A data-set test run from another folder with the variable unset: skipped, saying why.
    env = {k: v for k, v in os.environ.items() if k != "KOSEARCH_TEST_DATA"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "test_evaluate.py"), "-k", "korsts_tsv_and_jsonl"],
        cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout and "KOSEARCH_TEST_DATA" in run.stdout
    assert "KOSEARCH_TEST_MODEL" in run.stdout
