"""The README's promises: its two commands, and CI running the second one verbatim."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
