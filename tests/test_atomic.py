"""atomic_directory: a directory is replaced all at once or not at all, even under SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kosearch.errors import ConfigError
from kosearch.storage import atomic
from kosearch.storage.atomic import atomic_directory, clean_stale_temporaries, fsync_tree

REPO = Path(__file__).resolve().parents[1]


def snapshot(path: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under ``path``."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)): p.read_bytes() for p in files}


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_old(path: Path) -> dict[str, bytes]:
    path.mkdir()
    (path / "manifest.json").write_text('{"old": true}')
    (path / "sub").mkdir()
    (path / "sub" / "data.bin").write_bytes(b"\x00old" * 100)
    return snapshot(path)


def test_creates_a_new_directory(tmp_path: Path) -> None:
    target = tmp_path / "a" / "idx"  # missing parents are created
    with atomic_directory(target) as tmp:
        assert tmp.is_dir() and tmp.parent == target.parent and tmp.name.startswith("idx.tmp-")
        assert not target.exists()
        (tmp / "x.txt").write_text("새 내용")
    assert snapshot(target) == {"x.txt": "새 내용".encode()}
    assert siblings(target) == ["idx"]


def test_replaces_an_existing_directory_completely(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    write_old(target)
    with atomic_directory(target) as tmp:
        (tmp / "manifest.json").write_text('{"new": true}')
    assert snapshot(target) == {"manifest.json": b'{"new": true}'}
    assert siblings(target) == ["idx"]


def test_exception_leaves_old_directory_untouched(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    before = write_old(target)
    with pytest.raises(RuntimeError, match="boom"), atomic_directory(target) as tmp:
        (tmp / "manifest.json").write_text("half")
        raise RuntimeError("boom")
    assert snapshot(target) == before
    assert siblings(target) == ["idx"]


def test_exception_on_new_path_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    with pytest.raises(KeyboardInterrupt), atomic_directory(target):
        raise KeyboardInterrupt
    assert siblings(target) == []


def test_fallback_when_exchange_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Path, Path]] = []

    def refuse(a: Path, b: Path) -> None:
        calls.append((a, b))
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(atomic, "_exchange", refuse)
    target = tmp_path / "idx"
    write_old(target)
    with atomic_directory(target) as tmp:
        (tmp / "manifest.json").write_text("new")
    assert calls, "the exchange should have been tried first"
    assert snapshot(target) == {"manifest.json": b"new"}
    assert siblings(target) == ["idx"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux-only")
def test_exchange_swaps_two_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "from_a").write_text("a")
    (tmp_path / "b" / "from_b").write_text("b")
    try:
        atomic._exchange(tmp_path / "a", tmp_path / "b")
    except OSError as error:
        pytest.skip(f"this filesystem refuses RENAME_EXCHANGE: {error}")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["from_b"]
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["from_a"]


def test_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    target.write_text("not a directory")
    with pytest.raises(ConfigError, match="not a directory"), atomic_directory(target):
        pass
    assert target.read_text() == "not a directory"


def test_marker_protects_foreign_directories(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.txt").write_text("precious")
    with (
        pytest.raises(ConfigError, match=r"manifest\.json"),
        atomic_directory(home, marker="manifest.json"),
    ):
        pass
    assert snapshot(home) == {"thesis.txt": b"precious"}
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_directory(empty, marker="manifest.json") as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert snapshot(empty) == {"manifest.json": b"{}"}


def test_stale_temporaries_of_dead_writers_are_cleaned(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    write_old(target)
    pid = dead_pid()
    stale = tmp_path / f"idx.tmp-{pid}-0badc0de"
    stale.mkdir()
    (stale / "junk").write_bytes(b"x" * 10)
    live = tmp_path / f"idx.tmp-{os.getpid()}-00000001"  # ours: still in use
    live.mkdir()
    other = tmp_path / f"other.tmp-{pid}-0badc0de"  # another directory's: not ours to touch
    other.mkdir()
    assert clean_stale_temporaries(target) == 1
    assert siblings(target) == ["idx", live.name, other.name]
    live.rmdir()
    stale.mkdir()
    with atomic_directory(target) as tmp:  # cleans at the start too
        (tmp / "manifest.json").write_text("{}")
    assert siblings(target) == ["idx", other.name]


def test_set_aside_old_directory_is_restored_when_target_is_missing(tmp_path: Path) -> None:
    target = tmp_path / "idx"
    before = write_old(tmp_path / "saved")
    pid = dead_pid()
    (tmp_path / "saved").rename(tmp_path / f"idx.old-{pid}-12345678")
    assert clean_stale_temporaries(target) == 1
    assert snapshot(target) == before
    assert siblings(target) == ["idx"]


def test_fsync_tree_visits_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f.txt").write_text("f")
    (tmp_path / "g.txt").write_text("g")
    seen: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (seen.append(fd), real(fd))[1])
    fsync_tree(tmp_path)
    assert len(seen) == 5  # two files, three directories


# ---------------------------------------------------------------------------- SIGKILL
N_FILES, FILE_SIZE = 12, 48_000

WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from kosearch.storage import atomic
if sys.argv[2] == "fallback":
    def refuse(a, b):
        raise OSError(38, "disabled for the test")
    atomic._exchange = refuse
path, n_files, size = Path(sys.argv[1]), {n_files}, {size}
generation = int((path / "marker").read_text().split()[0])
while True:
    generation += 1
    with atomic.atomic_directory(path) as tmp:
        (tmp / "marker").write_text(f"{{generation}} {{n_files}} {{size}}")
        print("marker", flush=True)
        for i in range(n_files):
            (tmp / f"f{{i}}.bin").write_bytes(bytes([generation % 256]) * size)
            print("file", flush=True)
        print("commit", flush=True)
    print("committed", flush=True)
""".format(n_files=N_FILES, size=FILE_SIZE)


def write_generation(path: Path, generation: int) -> None:
    with atomic_directory(path) as tmp:
        (tmp / "marker").write_text(f"{generation} {N_FILES} {FILE_SIZE}")
        for i in range(N_FILES):
            (tmp / f"f{i}.bin").write_bytes(bytes([generation % 256]) * FILE_SIZE)


def check_complete(path: Path) -> int:
    """Assert ``path`` holds one whole generation; return it."""
    assert path.is_dir(), f"{path} is missing after the kill"
    generation, n_files, size = map(int, (path / "marker").read_text().split())
    names = sorted(p.name for p in path.iterdir())
    assert names == sorted(["marker", *(f"f{i}.bin" for i in range(n_files))])
    for i in range(n_files):
        data = (path / f"f{i}.bin").read_bytes()
        expected = bytes([generation % 256]) * size
        assert data == expected, f"f{i}.bin is from another generation or short"
    return generation


@pytest.mark.parametrize("mode", ["exchange", "fallback"])
def test_sigkill_never_leaves_half_a_directory(tmp_path: Path, mode: str) -> None:
    rng = random.Random(20240611 if mode == "exchange" else 7)
    path = tmp_path / "idx"
    write_generation(path, 0)
    generations = {0}
    lines_per_generation = N_FILES + 3
    for _ in range(8):
        stop_after = rng.randrange(1, 3 * lines_per_generation)
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), mode, str(REPO)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        for _ in range(stop_after):
            if not proc.stdout.readline():
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL, "the writer died on its own"
        if mode == "exchange":  # with renameat2 the target exists at every instant
            generations.add(check_complete(path))
        clean_stale_temporaries(path)
        generations.add(check_complete(path))
        assert siblings(path) == ["idx"]
    assert len(generations) > 2, "the writer should have committed several generations"


def test_a_symlink_is_followed_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "real"
    write_old(real)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    with atomic_directory(link) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith("real.tmp-")
        (tmp / "manifest.json").write_text("new")
    assert link.is_symlink() and snapshot(real) == {"manifest.json": b"new"}
    assert siblings(real) == ["link", "real"]


def test_atomic_write_lines_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic.atomic_write_lines(target, ["first", "second"])
    assert target.read_text(encoding="utf-8") == "first\nsecond\n"

    def failing() -> Iterator[str]:
        yield "partial"
        raise RuntimeError("the producer failed")

    with pytest.raises(RuntimeError, match="producer"):
        atomic.atomic_write_lines(target, failing())
    assert target.read_text(encoding="utf-8") == "first\nsecond\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no temporary left
