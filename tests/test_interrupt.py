"""An interrupted or killed `kosearch index` leaves the existing index loadable and unchanged."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tinymodels import korean_sentences

from kosearch.index import Index

pytestmark = pytest.mark.st


def _corpus(path: Path, n: int, tag: str) -> Path:
    sentences = korean_sentences(n, seed=5)
    with path.open("w", encoding="utf-8") as f:
        for i, text in enumerate(sentences):
            f.write(json.dumps({"id": f"{tag}{i}", "text": text}, ensure_ascii=False) + "\n")
    return path


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _index_command(corpus: Path, out: Path, model: Path) -> list[str]:
    return [sys.executable, "-m", "kosearch", "-q", "index", str(corpus), "-o", str(out),
            "--model", str(model)]


def test_killed_or_interrupted_update_keeps_the_old_index_and_resumes(
    tmp_path: Path, tiny_xlmr_dir: Path
) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = tmp_path / "idx"
    old = _corpus(tmp_path / "old.jsonl", 30, "old")
    subprocess.run(_index_command(old, out, tiny_xlmr_dir), check=True, env=env,
                   capture_output=True)
    before = _snapshot(out)
    new = _corpus(tmp_path / "new.jsonl", 3000, "new")
    command = _index_command(new, out, tiny_xlmr_dir)
    rng = random.Random(1338)
    outcomes = []
    for sig in (signal.SIGKILL, signal.SIGINT, signal.SIGKILL):
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(1.5, 5.0))  # a full run takes ~15 s here, ~8 s on a fast machine
        proc.send_signal(sig)
        stderr = proc.communicate(timeout=120)[1].decode("utf-8", "replace")
        outcomes.append(proc.returncode)
        after = _snapshot(out)
        if after != before:
            # the update was swapped in before the signal (the process may still have been
            # killed on its way out): it must be the complete new index
            assert Index.load(out).manifest.counts["documents"] == 3030
            before = after
        elif len(Index.load(out)) == 30:  # still the old index: the run must have failed
            assert proc.returncode != 0
            if sig == signal.SIGINT and proc.returncode == 130:
                assert "run the same kosearch index command again to resume" in stderr
        # (an unchanged index of 3030 documents: the update had landed in an earlier round, and
        # this run found nothing to do, which a fast machine can finish before the signal)
        assert "Traceback" not in stderr
        index = Index.load(out)  # always loadable
        assert len(index) in (30, 3030)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith("idx.tmp")]
    # temporaries of killed writers are removed by the next writer; at most the last remains
    assert len(leftovers) <= 1, leftovers
    assert any(code != 0 for code in outcomes)
    state = out.with_name("idx.partial") / "state.json"
    encoded = json.loads(state.read_text())["encoded"] if state.exists() else 0
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert Index.load(out).manifest.counts["documents"] == 3030
    if encoded:
        assert f"{encoded} of 3000 passages were already encoded" in done.stderr
    assert not out.with_name("idx.partial").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("idx.tmp")]


def _small_file_limit() -> None:  # in the child: writes past 256 kB fail with EFBIG, like a full disk
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (256_000, 256_000))


def test_a_full_disk_during_an_update_leaves_the_old_index(tmp_path: Path, tiny_xlmr_dir: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = tmp_path / "idx"
    subprocess.run(_index_command(_corpus(tmp_path / "old.jsonl", 30, "old"), out, tiny_xlmr_dir),
                   check=True, env=env, capture_output=True)
    before = _snapshot(out)
    new = _corpus(tmp_path / "new.jsonl", 3000, "new")
    proc = subprocess.run(_index_command(new, out, tiny_xlmr_dir), env=env, capture_output=True,
                          text=True, preexec_fn=_small_file_limit)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
    assert _snapshot(out) == before
    assert len(Index.load(out)) == 30
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("idx.tmp")]
