"""The lingering analysis server: a one-shot query's child stays, and later queries reuse it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import SAMPLE_DOCS, HashEncoder

from kosearch.cli import cli
from kosearch.errors import ConfigError
from kosearch.index import Index
from kosearch.lexical.analysis_server import LINGER_ENV, linger_seconds, socket_path
from kosearch.lexical.analyzers import MorphemeAnalyzer, query_terms
from kosearch.lexical.bm25 import LexicalIndex
from kosearch.lexical.child_analysis import ChildAnalysis
from kosearch.lexical.format import read_analyzer
from kosearch.operations import ONESHOT_HELPER, _remote_encoder, search_directory
from kosearch.settings import SearchOptions

QUERIES = ["헤이그는 무슨 장관이었나?", "서울 지하철"]
TEXTS = ["알렉산더 헤이그는 국무장관을 지냈다.", "서울에서는 지하철이 가장 편리하다. 부산은 멀다!"]
LINGER = 120.0  # longer than any test: a server that leaves early is a failure
DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def lexical_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("lexical")
    texts = [*TEXTS, "부산의 해운대 해수욕장"]
    LexicalIndex.build(texts, analyzer=MorphemeAnalyzer(num_workers=1)).save(directory)
    return directory


@pytest.fixture()
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private XDG_RUNTIME_DIR (short: socket paths are limited to 108 bytes); every
    process started with it is killed at the end."""
    base = Path(tempfile.mkdtemp(prefix="ks-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    monkeypatch.setenv(LINGER_ENV, str(LINGER))
    try:
        yield base / "kosearch"
    finally:
        for pid in _started_with(base):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


def _started_with(base: Path) -> list[int]:
    """The live processes of this user whose environment holds ``XDG_RUNTIME_DIR=base``."""
    marker = f"XDG_RUNTIME_DIR={base}".encode() + b"\0"
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and _alive(int(entry.name)):
            try:
                if marker in (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _listening(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def _first_session(lexical_dir: Path) -> tuple[str, int]:
    """Start a lingering child, check its answer, end its session; its socket and pid."""
    analysis = ChildAnalysis.start(lexical_dir, QUERIES, linger=LINGER)
    assert analysis is not None and not analysis.via_server
    config = read_analyzer(lexical_dir).config()
    assert analysis.terms(config) == query_terms(read_analyzer(lexical_dir), QUERIES)
    assert analysis.server is not None
    pid, served = analysis.server
    path = socket_path(str(lexical_dir))
    assert path is not None and served == 1
    assert not _listening(path)  # it listens only once its first session ends
    analysis.close()
    assert analysis._channel.process.returncode == 0  # type: ignore[union-attr]  # reaped
    _wait_for(lambda: _listening(path), "the server's socket")
    return path, pid


# ------------------------------------------------------------------ the setting


def test_the_linger_setting_parses_seconds_and_refuses_anything_else(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LINGER_ENV)
    assert linger_seconds() == 300.0
    for raw, seconds in [("0", 0.0), (" 2.5 ", 2.5), ("", 300.0)]:
        monkeypatch.setenv(LINGER_ENV, raw)
        assert linger_seconds() == seconds
    for raw in ["abc", "-1", "nan", "inf"]:
        monkeypatch.setenv(LINGER_ENV, raw)
        with pytest.raises(ConfigError, match=f"got '{raw}'"):
            linger_seconds()


def test_a_bad_linger_setting_is_one_line_of_error_from_the_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["query", "서울", "-i", str(tmp_path)],
                                env={LINGER_ENV: "abc"})
    assert result.exit_code == 1
    assert result.stderr == ("Error: KOSEARCH_ANALYZER_LINGER must be a number of seconds "
                             ">= 0, got 'abc'\n")
    assert "Traceback" not in result.output


def test_query_help_names_the_linger_setting() -> None:
    result = CliRunner().invoke(cli, ["query", "--help"])
    assert result.exit_code == 0
    assert f"{LINGER_ENV} idle seconds (default 300; 0: no helper)" in " ".join(
        result.output.split())


# ------------------------------------------------------------------ the server


def test_the_next_start_is_answered_by_the_lingering_child(
    runtime: Path, lexical_dir: Path
) -> None:
    path, pid = _first_session(lexical_dir)
    analyzer = read_analyzer(lexical_dir)
    config = analyzer.config()
    for served in (2, 3):
        again = ChildAnalysis.start(lexical_dir, QUERIES[::-1], linger=LINGER)
        assert again is not None and again.via_server
        assert again.server == (pid, served)  # the same process: no child was started
        assert again.terms(config) == query_terms(analyzer, QUERIES[::-1])
        assert again.query_terms(config, ["해운대해수욕장"]) == query_terms(
            analyzer, ["해운대해수욕장"])
        assert again.locate(config, [*TEXTS, ""]) == analyzer.locate([*TEXTS, ""])  # type: ignore[attr-defined]
        again.close()
        assert again.locate(config, TEXTS) is None  # closed: the caller analyzes here
    assert os.stat(runtime).st_mode & 0o777 == 0o700
    assert os.path.dirname(path) == str(runtime)


def test_a_search_takes_the_servers_terms_and_never_loads_kiwi(
    runtime: Path, lexical_dir: Path
) -> None:
    _first_session(lexical_dir)
    want = LexicalIndex.load(lexical_dir).search(QUERIES, 3)
    index = LexicalIndex.load(lexical_dir)
    analysis = ChildAnalysis.start(lexical_dir, QUERIES, linger=LINGER)
    assert analysis is not None and analysis.via_server
    index.warm_up(analysis)
    assert index.search(QUERIES, 3) == want
    assert not index.analyzer.loaded  # type: ignore[attr-defined]


def test_the_server_leaves_and_removes_its_socket_once_idle(
    runtime: Path, lexical_dir: Path
) -> None:
    analysis = ChildAnalysis.start(lexical_dir, QUERIES, linger=1)
    assert analysis is not None and analysis.server is not None
    pid = analysis.server[0]
    path = socket_path(str(lexical_dir))
    assert path is not None
    analysis.close()
    _wait_for(lambda: os.path.exists(path), "the server's socket")
    _wait_for(lambda: not _alive(pid), "the idle server to exit")
    assert not os.path.exists(path)
    assert os.listdir(runtime) == []


def test_a_terminated_server_removes_its_socket(runtime: Path, lexical_dir: Path) -> None:
    path, pid = _first_session(lexical_dir)
    os.kill(pid, signal.SIGTERM)
    _wait_for(lambda: not _alive(pid), "the server to exit")
    assert not os.path.exists(path)


def test_a_stale_socket_is_replaced(runtime: Path, lexical_dir: Path) -> None:
    path = socket_path(str(lexical_dir))
    assert path is not None
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens: as after a server was killed
    assert os.path.exists(path) and not _listening(path)
    served_path, pid = _first_session(lexical_dir)
    assert served_path == path
    again = ChildAnalysis.start(lexical_dir, QUERIES, linger=LINGER)
    assert again is not None and again.via_server and again.server == (pid, 2)
    again.close()


def test_a_live_server_is_left_alone_and_a_silent_one_is_not_waited_for(
    runtime: Path, lexical_dir: Path
) -> None:
    """A server that accepts but does not answer: the query starts its own child, which
    then does not replace that server's socket but leaves."""
    path = socket_path(str(lexical_dir))
    assert path is not None
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(path)
    silent.listen(8)
    try:
        before = os.stat(path).st_ino
        analysis = ChildAnalysis.start(lexical_dir, QUERIES, linger=LINGER)
        assert analysis is not None and not analysis.via_server
        analyzer = read_analyzer(lexical_dir)
        assert analysis.terms(analyzer.config()) == query_terms(analyzer, QUERIES)
        assert analysis.server is not None
        pid = analysis.server[0]
        analysis.close()
        _wait_for(lambda: not _alive(pid), "the child to leave")
        assert os.stat(path).st_ino == before
    finally:
        silent.close()


def test_a_server_of_another_analyzer_is_not_used(runtime: Path, lexical_dir: Path) -> None:
    """Whatever answers at the socket, its terms count only under the index's analyzer."""
    path = socket_path(str(lexical_dir))
    assert path is not None
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(path)
    other.listen(8)
    requests: list[dict[str, object]] = []

    def serve() -> None:
        connection, _ = other.accept()
        with connection, connection.makefile("rb") as lines:
            for line in lines:
                requests.append(json.loads(line))
                answer = ({"analyzer": {"name": "whitespace"}, "terms": [["x"]] * len(QUERIES),
                           "pid": 1, "served": 7} if len(requests) == 1 else {"result": None})
                connection.sendall(json.dumps(answer).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        want = LexicalIndex.load(lexical_dir).search(QUERIES, 3)
        analysis = ChildAnalysis.start(lexical_dir, QUERIES, linger=LINGER)
        assert analysis is not None and analysis.via_server and analysis.server == (1, 7)
        index = LexicalIndex.load(lexical_dir)
        index.warm_up(analysis)
        assert analysis.terms(index.analyzer.config()) is None
        assert index.search(QUERIES, 3) == want  # analyzed here instead
        assert index.analyzer.loaded  # type: ignore[attr-defined]
        assert requests[0]["texts"] == QUERIES
        analysis.close()
        thread.join(DEADLINE_S)
    finally:
        other.close()


def test_a_runtime_directory_others_may_enter_is_not_used(
    runtime: Path, tmp_path: Path
) -> None:
    Index.build(SAMPLE_DOCS, tmp_path / "idx", encoder=HashEncoder())
    runtime.mkdir(mode=0o755)
    os.chmod(runtime, 0o755)  # whatever the umask
    assert socket_path(str(tmp_path / "idx" / "lexical")) is None
    queries = [SAMPLE_DOCS[1].text[:15]]
    options = SearchOptions(mode="lexical")
    got = search_directory(tmp_path / "idx", queries, 3, options)
    assert got == Index.load(tmp_path / "idx", encoder=HashEncoder()).search_batch(
        queries, 3, mode="lexical")
    assert os.listdir(runtime) == []
    assert _started_with(runtime.parent) == []  # the child was stopped, not left lingering


# ------------------------------------------------------------------ the command line


def test_one_shot_queries_return_at_once_and_reuse_the_lingering_child(
    runtime: Path, tmp_path: Path
) -> None:
    """The first query's child lingers without holding the query's output open (else
    ``capture_output`` would wait out the linger time); the second query is answered by it;
    both print what a query without lingering prints."""
    Index.build(SAMPLE_DOCS, tmp_path / "idx", encoder=HashEncoder())
    query = SAMPLE_DOCS[1].text[:15]
    args = [sys.executable, "-m", "kosearch", "query", query, "-i", str(tmp_path / "idx"),
            "--mode", "lexical", "--json", "-k", "3"]

    def run(linger: float) -> str:
        env = {**os.environ, LINGER_ENV: str(linger)}
        out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path,
                             timeout=LINGER / 2)
        assert out.returncode == 0, out.stderr
        return out.stdout

    want = run(0)
    assert json.loads(want)["hits"] and _started_with(runtime.parent) == []
    assert run(LINGER) == want
    path = socket_path(str(tmp_path / "idx" / "lexical"), ONESHOT_HELPER)
    assert path is not None
    _wait_for(lambda: _listening(path), "the server's socket")
    assert run(LINGER) == want
    probe = ChildAnalysis.start(tmp_path / "idx" / "lexical", ["서울"], linger=LINGER,
                                module=ONESHOT_HELPER)
    assert probe is not None and probe.via_server and probe.server is not None
    assert probe.server[1] == 3  # the first query, the second, this probe
    assert _started_with(runtime.parent) == [probe.server[0]]
    probe.close()


# ------------------------------------------------------------------ the query encoder in the helper


@pytest.fixture(scope="module")
def onnx_index(tmp_path_factory: pytest.TempPathFactory, tiny_xlmr_dir: Path) -> Path:
    """An index of a real (tiny) model whose ONNX query export is in the cache."""
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.encoding.onnx_export import ensure_export

    encoder = SentenceTransformerEncoder(str(tiny_xlmr_dir), device="cpu")
    path = tmp_path_factory.mktemp("onnx-index") / "idx"
    Index.build(SAMPLE_DOCS, path, encoder=encoder)
    ensure_export(encoder)
    return path


def _helper_session(index: Path, queries: list[str]) -> tuple[ChildAnalysis, dict, object]:
    from kosearch.encoding.onnx_runtime import export_dir
    from kosearch.encoding.remote import encoder_spec
    from kosearch.storage.manifest import read_manifest

    info = read_manifest(index).model
    spec = encoder_spec(str(export_dir(info.fingerprint, info.max_tokens)), info.name,
                        info.query_prompt, info.passage_prompt)
    analysis = ChildAnalysis.start(index / "lexical", queries, linger=LINGER,
                                   module=ONESHOT_HELPER, extra={"encoder": spec})
    assert analysis is not None
    return analysis, spec, info


def test_a_lingering_helper_encodes_the_next_queries_bit_for_bit(
    runtime: Path, onnx_index: Path
) -> None:
    from kosearch.encoding.onnx_runtime import OnnxQueryEncoder
    from kosearch.encoding.remote import RemoteQueryEncoder

    options = SearchOptions(mode="hybrid")
    want = Index.load(onnx_index, query_backend="auto").search_batch(QUERIES, 3, mode="hybrid")
    assert search_directory(onnx_index, QUERIES, 3, options, query_backend="auto") == want
    path = socket_path(str(onnx_index / "lexical"), ONESHOT_HELPER)
    assert path is not None
    _wait_for(lambda: _listening(path), "the helper's socket")

    analysis, spec, info = _helper_session(onnx_index, QUERIES)
    assert analysis.via_server
    held = analysis.first("encoder")  # loaded once the first query's session ended
    assert held == {"directory": spec["directory"], "fingerprint": info.fingerprint,
                    "dim": info.dim, "query_prompt": info.query_prompt}
    remote = RemoteQueryEncoder(analysis.ask, spec["directory"], info,
                                lambda: pytest.fail("the helper did not encode"))
    texts = [*QUERIES, "a longer query: " + TEXTS[1] * 3]
    local = OnnxQueryEncoder(spec["directory"], name=info.name, query_prompt=info.query_prompt)
    got = remote.encode_queries(texts)
    assert got.dtype == np.float32 and np.array_equal(got, local.encode_queries(texts))
    analysis.close()
    # the whole one-shot search through the helper gives the same hits
    assert search_directory(onnx_index, QUERIES, 3, options, query_backend="auto") == want
    probe, _, _ = _helper_session(onnx_index, QUERIES)
    assert probe.via_server and probe.server is not None and probe.server[1] == 4
    probe.close()


def test_the_query_side_loads_its_own_encoder_when_the_helper_fails(onnx_index: Path) -> None:
    from kosearch.encoding.onnx_runtime import OnnxQueryEncoder
    from kosearch.encoding.remote import RemoteQueryEncoder
    from kosearch.storage.manifest import read_manifest

    info = read_manifest(onnx_index).model
    loaded: list[int] = []

    def local() -> OnnxQueryEncoder:
        loaded.append(1)
        from kosearch.encoding.onnx_runtime import export_dir
        return OnnxQueryEncoder(export_dir(info.fingerprint, info.max_tokens), name=info.name,
                                query_prompt=info.query_prompt)

    for answer in (None, [[0.0] * 3], "nonsense"):
        remote = RemoteQueryEncoder(lambda *a, answer=answer, **k: answer, "dir", info, local)
        assert remote.encode_queries(QUERIES).shape == (len(QUERIES), info.dim)
    assert len(loaded) == 3


def test_a_helper_holding_another_model_is_not_used(onnx_index: Path) -> None:
    from kosearch.storage.manifest import read_manifest

    info = read_manifest(onnx_index).model
    spec = {"directory": "/x/export"}

    class Helper:
        via_server = True

        def __init__(self, held: object) -> None:
            self.held = held

        def first(self, name: str) -> object:
            return self.held if name == "encoder" else None

        def ask(self, *args: object, **kwargs: object) -> None:
            return None

    good = {"directory": "/x/export", "fingerprint": info.fingerprint, "dim": info.dim}
    assert _remote_encoder(Helper(good), (spec, info), None, "auto") is not None
    for held in (None, {**good, "fingerprint": "0" * 16}, {**good, "dim": info.dim + 1},
                 {**good, "directory": "/y/export"}):
        assert _remote_encoder(Helper(held), (spec, info), None, "auto") is None
