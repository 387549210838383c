"""HTTP server: endpoints, error shape, auth, access log, concurrency and micro-batching.

FastAPI's TestClient over an in-memory HashEncoder index (no torch, no sockets); the last tests
run ``serve`` with ``uvicorn.run`` replaced, and one builds a tiny real model (marked ``st``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
try:
    from fastapi.testclient import TestClient
except (ImportError, RuntimeError):  # starlette's TestClient needs httpx
    pytest.skip("the server tests need httpx: pip install httpx", allow_module_level=True)

from fakes import SAMPLE_DOCS, HashEncoder  # noqa: E402

from kosearch import ConfigError, MissingDependencyError  # noqa: E402
from kosearch.index import Index  # noqa: E402
from kosearch.serving.app import create_app  # noqa: E402
from kosearch.serving.batcher import SearchBatcher  # noqa: E402
from kosearch.serving.run import ENV_SETTINGS, app_from_environment, serve  # noqa: E402

DOCS = SAMPLE_DOCS
QUERIES = ["서울의 강", "부산 해수욕장", "김치 만드는 법", "한글 창제", "딥러닝 GPU", "제주 관광"]
KEY = "s3cret-key"


@pytest.fixture(scope="module")
def index() -> Index:
    return Index.build(DOCS, encoder=HashEncoder())


@pytest.fixture(scope="module")
def dense_index() -> Index:
    return Index.build(DOCS, encoder=HashEncoder(), lexical=False)


@pytest.fixture()
def client(index: Index) -> Iterator[TestClient]:
    with TestClient(create_app(index)) as c:
        yield c


def as_json(value: Any) -> Any:
    """What a value looks like after a trip through JSON (tuples -> lists, ...)."""
    return json.loads(json.dumps(value, ensure_ascii=False))


def expected_hits(index: Index, query: str, k: int = 10, **kwargs: Any) -> list[dict[str, Any]]:
    return as_json([hit.to_dict() for hit in index.search(query, k, **kwargs)])


# ---------------------------------------------------------------------------- endpoints


def test_search_returns_hits_in_the_query_json_schema(client: TestClient, index: Index) -> None:
    response = client.post("/search", json={"query": "서울의 강", "k": 3})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == {"query": "서울의 강", "hits": expected_hits(index, "서울의 강", 3)}
    hit = body["hits"][0]
    assert hit["id"] == "seoul" and hit["rank"] == 1 and hit["meta"] == {"category": "지리"}
    assert set(hit) == {"id", "chunk", "score", "rank", "text", "title", "meta", "start", "end",
                        "scores", "highlights"}
    assert "서울".encode() in response.content  # UTF-8, not ASCII-escaped


@pytest.mark.parametrize("params", [
    {"mode": "dense"}, {"mode": "lexical"}, {"mode": "hybrid"}, {"passages": True}, {"k": 1},
])
def test_search_parameters_reach_the_index(client: TestClient, index: Index,
                                           params: dict[str, Any]) -> None:
    body = client.post("/search", json={"query": "대한민국 도시", **params}).json()
    k = params.pop("k", 10)
    assert body["hits"] == expected_hits(index, "대한민국 도시", k, **params)


def test_batch_returns_one_result_per_query_in_order(client: TestClient, index: Index) -> None:
    body = client.post("/search/batch", json={"queries": QUERIES, "k": 2, "mode": "dense"}).json()
    assert [r["query"] for r in body["results"]] == QUERIES
    for result in body["results"]:
        assert result["hits"] == expected_hits(index, result["query"], 2, mode="dense")


def test_health_and_info(client: TestClient, index: Index) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and "version" in health
    assert client.get("/info").json() == as_json(index.info())


def test_openapi_docs_show_the_limits() -> None:
    app = create_app(Index.__new__(Index), max_k=7, max_query_chars=30, max_batch=5)
    with TestClient(app) as c:
        assert c.get("/docs").status_code == 200
        spec = c.get("/openapi.json").json()
    assert {"/search", "/search/batch", "/health", "/info"} <= set(spec["paths"])
    body = spec["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]
    schema = body["schema"]
    assert schema["properties"]["k"]["maximum"] == 7
    assert schema["properties"]["query"]["maxLength"] == 30
    batch = spec["paths"]["/search/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert batch["schema"]["properties"]["queries"]["maxItems"] == 5


# ---------------------------------------------------------------------------- bad input


BAD_REQUESTS: list[tuple[str, str, Any, int, str]] = [
    # (name, path, body: dict | bytes, status, message fragment)
    ("malformed json", "/search", '{"query": "서울",'.encode(), 400, "not valid JSON"),
    ("empty body", "/search", b"", 422, "JSON object"),
    ("not an object", "/search", b'["seoul"]', 422, "JSON object"),
    ("missing query", "/search", {"k": 3}, 422, "'query' is required"),
    ("empty query", "/search", {"query": ""}, 422, "query"),
    ("blank query", "/search", {"query": "   "}, 422, "blank"),
    ("huge query", "/search", {"query": "가" * 2001}, 422, "2000"),
    ("k zero", "/search", {"query": "서울", "k": 0}, 422, "'k'"),
    ("k too big", "/search", {"query": "서울", "k": 101}, 422, "100"),
    ("k as text", "/search", {"query": "서울", "k": "5"}, 422, "'k'"),
    ("k float", "/search", {"query": "서울", "k": 2.5}, 422, "'k'"),
    ("unknown mode", "/search", {"query": "서울", "mode": "semantic"}, 422, "'mode'"),
    ("query not text", "/search", {"query": 42}, 422, "'query'"),
    ("unknown field", "/search", {"query": "서울", "top_k": 3}, 422, "top_k"),
    ("no queries", "/search/batch", {"queries": []}, 422, "'queries'"),
    ("too many queries", "/search/batch", {"queries": ["서울"] * 65}, 422, "64"),
    ("blank in batch", "/search/batch", {"queries": ["서울", " "]}, 422, "queries.1"),
    ("queries not list", "/search/batch", {"queries": "서울"}, 422, "'queries'"),
]


@pytest.mark.parametrize(("path", "body", "status", "fragment"),
                         [case[1:] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_is_a_4xx_json_error(client: TestClient, path: str, body: Any, status: int,
                                       fragment: str) -> None:
    if isinstance(body, bytes):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        response = client.post(path, json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error"}
    assert fragment in response.json()["error"]


def test_too_large_body_is_413(index: Index) -> None:
    with TestClient(create_app(index, max_body_bytes=100)) as c:
        declared = c.post("/search", json={"query": "서울" * 100})
        assert declared.status_code == 413 and "100 bytes" in declared.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts the bytes read
            yield b'{"query": "'
            for _ in range(20):
                yield "서울".encode() * 10
            yield b'"}'

        streamed = c.post("/search", content=chunks())
        assert streamed.status_code == 413 and "100 bytes" in streamed.json()["error"]
        assert c.post("/search", json={"query": "서울"}).status_code == 200


def test_wrong_route_and_method_are_json_errors(client: TestClient) -> None:
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and "/nowhere" in missing.json()["error"]
    wrong = client.get("/search")
    assert wrong.status_code == 405 and "GET" in wrong.json()["error"]


def test_search_the_index_refuses_is_400(dense_index: Index) -> None:
    with TestClient(create_app(dense_index)) as c:
        response = c.post("/search", json={"query": "서울", "mode": "lexical"})
        assert response.status_code == 400
        assert "no lexical" in response.json()["error"]
        assert c.post("/search", json={"query": "서울"}).status_code == 200  # still serving


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_bad_limits_are_refused(index: Index, limit: Any) -> None:
    with pytest.raises(ConfigError, match="max_k"):
        create_app(index, max_k=limit)


def test_empty_api_key_is_refused(index: Index) -> None:
    with pytest.raises(ConfigError, match="API key is empty"):
        create_app(index, api_key=" ")


# ---------------------------------------------------------------------------- auth


def test_api_key_guards_everything_but_health(index: Index) -> None:
    with TestClient(create_app(index, api_key=KEY)) as c:
        assert c.get("/health").status_code == 200
        for method, path in [("POST", "/search"), ("POST", "/search/batch"), ("GET", "/info"),
                             ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/nowhere")]:
            for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                            {"Authorization": f"Basic {KEY}"}]:
                response = c.request(method, path, json={"query": "서울"}, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert "API key" in response.json()["error"]
                assert response.headers["www-authenticate"] == "Bearer"
        ok = {"Authorization": f"Bearer {KEY}"}
        assert c.post("/search", json={"query": "서울"}, headers=ok).status_code == 200
        assert c.get("/info", headers={"authorization": f"bearer {KEY}"}).status_code == 200
        assert c.get("/docs", headers=ok).status_code == 200


# ---------------------------------------------------------------------------- access log


def test_access_log_is_one_json_line_without_query_text(
    index: Index, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(index)) as c, caplog.at_level(logging.INFO, "kosearch.server"):
        c.post("/search/batch", json={"queries": ["비밀 질문", "서울"]})
        c.post("/search", json={"query": "x", "k": 0})
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "kosearch.server.access"]
    assert lines[0]["method"] == "POST" and lines[0]["path"] == "/search/batch"
    assert lines[0]["status"] == 200 and lines[0]["queries"] == 2 and lines[0]["ms"] >= 0
    assert lines[1]["status"] == 422 and lines[1]["queries"] == 0
    assert "비밀" not in caplog.text


def test_access_log_can_include_queries(index: Index, caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(create_app(index, log_queries=True)) as c, \
            caplog.at_level(logging.INFO, "kosearch.server"):
        c.post("/search", json={"query": "비밀 질문"})
    access = [r for r in caplog.records if r.name == "kosearch.server.access"]
    assert json.loads(access[-1].getMessage())["query"] == ["비밀 질문"]


# ---------------------------------------------------------------------------- concurrency


def test_concurrent_requests_get_the_sequential_answers(client: TestClient, index: Index) -> None:
    cases = [(q, k, mode) for q in QUERIES for k in (1, 3) for mode in ("hybrid", "dense")]
    expected = [expected_hits(index, q, k, mode=mode) for q, k, mode in cases]

    def ask(i: int) -> list[dict[str, Any]]:
        q, k, mode = cases[i % len(cases)]
        response = client.post("/search", json={"query": q, "k": k, "mode": mode})
        assert response.status_code == 200
        return response.json()["hits"]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(4 * len(cases))))
    assert answers == [expected[i % len(cases)] for i in range(len(answers))]


class GatedIndex:
    """An index whose first ``search_batch`` waits for ``release``; records every call."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self.calls: list[tuple[list[str], int, str | None, bool]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.index, name)

    def search_batch(self, queries: list[str], k: int, *, mode: str | None = None,
                     passages: bool = False, **options: Any) -> Any:
        self.calls.append((list(queries), k, mode, passages))
        if not self.started.is_set():
            self.started.set()
            assert self.release.wait(30)
        return self.index.search_batch(queries, k, mode=mode, passages=passages, **options)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_requests_queued_behind_a_search_are_batched_by_parameters(index: Index) -> None:
    gated = GatedIndex(index)
    app = create_app(gated)  # type: ignore[arg-type]
    requests = [
        ("/search", {"query": "서울의 강"}),                                  # runs alone, blocks
        ("/search", {"query": "부산 해수욕장", "k": 5}),
        ("/search/batch", {"queries": ["김치", "한글 창제"], "k": 5}),
        ("/search", {"query": "딥러닝", "k": 5, "mode": "hybrid"}),           # default == hybrid
        ("/search", {"query": "제주 관광", "k": 3}),
        ("/search", {"query": "서울", "k": 3}),
        ("/search", {"query": "도시", "k": 5, "passages": True}),
        ("/search", {"query": "문자", "k": 5, "mode": "dense"}),
    ]
    with TestClient(app) as c, ThreadPoolExecutor(len(requests)) as pool:
        first = pool.submit(c.post, *requests[0][:1], json=requests[0][1])
        assert gated.started.wait(30)
        rest = [pool.submit(c.post, path, json=body) for path, body in requests[1:]]
        wait_until(lambda: app.state.batcher.pending == len(rest))
        gated.release.set()
        responses = [first.result()] + [f.result() for f in rest]
    assert all(r.status_code == 200 for r in responses)
    groups = {(k, mode, passages): sorted(qs) for qs, k, mode, passages in gated.calls[1:]}
    assert len(gated.calls) == 5
    assert groups == {
        (5, "hybrid", False): sorted(["부산 해수욕장", "김치", "한글 창제", "딥러닝"]),
        (3, "hybrid", False): sorted(["제주 관광", "서울"]),
        (5, "hybrid", True): ["도시"],
        (5, "dense", False): ["문자"],
    }
    for (path, body), response in zip(requests, responses, strict=True):
        params = {key: body[key] for key in ("mode", "passages") if key in body}
        queries = body.get("queries", [body.get("query")])
        results = response.json()["results"] if path.endswith("batch") else [response.json()]
        for q, result in zip(queries, results, strict=True):
            assert result["hits"] == expected_hits(index, q, body.get("k", 10), **params)


def test_batching_off_runs_each_request_alone(index: Index) -> None:
    gated = GatedIndex(index)
    with SearchBatcher(gated, batching=False) as batcher:  # type: ignore[arg-type]
        first = batcher.submit(["서울"], 3)
        assert gated.started.wait(30)
        rest = [batcher.submit([q], 3) for q in QUERIES[:3]]
        gated.release.set()
        assert first.result(30) and all(f.result(30) for f in rest)
    assert [call[0] for call in gated.calls] == [["서울"], *[[q] for q in QUERIES[:3]]]


def test_a_failing_job_does_not_fail_its_batch(index: Index) -> None:
    gated = GatedIndex(index)
    with SearchBatcher(gated) as batcher:  # type: ignore[arg-type]
        batcher.submit(["서울"], 3)
        assert gated.started.wait(30)
        good = batcher.submit(["부산"], 3)
        bad = batcher.submit(["  "], 3)  # the HTTP layer refuses this; the batcher must cope
        gated.release.set()
        assert good.result(30)[0][0].id == "busan"
        with pytest.raises(ConfigError, match="empty"):
            bad.result(30)


def test_max_queries_splits_a_group_and_cancelled_jobs_are_dropped(index: Index) -> None:
    gated = GatedIndex(index)
    with SearchBatcher(gated, max_queries=3) as batcher:  # type: ignore[arg-type]
        batcher.submit(["서울"], 2)
        assert gated.started.wait(30)
        futures = [batcher.submit([q], 2) for q in QUERIES]
        cancelled = batcher.submit(["취소"], 2)
        assert cancelled.cancel()
        gated.release.set()
        assert all(len(f.result(30)[0]) == 2 for f in futures)
    assert [len(call[0]) for call in gated.calls] == [1, 3, 3]
    assert all("취소" not in call[0] for call in gated.calls)


def test_close_finishes_queued_jobs_then_refuses_new_ones(index: Index) -> None:
    batcher = SearchBatcher(index)
    futures = [batcher.submit([q], 1) for q in QUERIES]
    batcher.close(timeout=30)
    assert all(f.done() and len(f.result()[0]) == 1 for f in futures)
    with pytest.raises(RuntimeError, match="shut down"):
        batcher.submit(["서울"], 1)


# ---------------------------------------------------------------------------- serve()


@pytest.fixture()
def fake_uvicorn(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import uvicorn

    runs: list[dict[str, Any]] = []

    def run(app: Any, **kwargs: Any) -> None:
        runs.append({"app": app, "env": os.environ.get(ENV_SETTINGS), **kwargs})

    monkeypatch.setattr(uvicorn, "run", run)
    return runs


def test_serve_runs_uvicorn_and_warns_on_open_host_without_key(
    index: Index, fake_uvicorn: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, "kosearch.server"):
        serve(index, host="127.0.0.1", port=8123)
        assert "without an API key" not in caplog.text
        assert "http://127.0.0.1:8123" in caplog.text
        serve(index, host="0.0.0.0", port=8124)
        assert "without an API key" in caplog.text
        caplog.clear()
        serve(index, host="0.0.0.0", port=8125, api_key=KEY)
        assert "without an API key" not in caplog.text
    assert [run["port"] for run in fake_uvicorn] == [8123, 8124, 8125]
    with TestClient(fake_uvicorn[-1]["app"]) as c:
        assert c.get("/info").status_code == 401


def test_serve_with_workers_hands_settings_to_a_factory(
    index: Index, tmp_path: Path, fake_uvicorn: list[dict[str, Any]]
) -> None:
    index.save(tmp_path / "idx")
    serve(tmp_path / "idx", workers=3, api_key=KEY, max_k=5)
    (run,) = fake_uvicorn
    assert run["app"] == "kosearch.serving.run:app_from_environment"
    assert run["factory"] is True and run["workers"] == 3
    settings = json.loads(run["env"])
    assert settings["index"] == str(tmp_path / "idx") and settings["api_key"] == KEY
    assert settings["options"] == {"max_k": 5}
    assert ENV_SETTINGS not in os.environ  # restored afterwards
    with pytest.raises(ConfigError, match="index directory"):
        serve(index, workers=2)
    with pytest.raises(ConfigError, match="workers"):
        serve(tmp_path / "idx", workers=0)


def test_app_from_environment_needs_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_SETTINGS, raising=False)
    with pytest.raises(ConfigError, match=ENV_SETTINGS):
        app_from_environment()
    monkeypatch.setenv(ENV_SETTINGS, "{not json")
    with pytest.raises(ConfigError, match="kosearch serve"):
        app_from_environment()


@pytest.fixture(scope="module")
def tiny_index_dir(tiny_xlmr_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index on disk made with a tiny real model (so it can be loaded by path)."""
    path = tmp_path_factory.mktemp("served") / "idx"
    Index.build(DOCS, path, model=str(tiny_xlmr_dir))
    return path


@pytest.mark.st
def test_worker_factory_loads_the_index_and_its_model(
    tiny_index_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"index": str(tiny_index_dir), "model": None, "device": "cpu",
                "api_key": KEY, "options": {"max_k": 3}}
    monkeypatch.setenv(ENV_SETTINGS, json.dumps(settings))
    app = app_from_environment()
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as c:
        hits = c.post("/search", json={"query": "서울의 강", "k": 3}).json()["hits"]
        assert len(hits) == 3
        assert c.post("/search", json={"query": "서울", "k": 4}).status_code == 422


@pytest.mark.st
def test_cli_serve_loads_the_index_and_logs_url_and_warning(
    tiny_index_dir: Path, fake_uvicorn: list[dict[str, Any]]
) -> None:
    from click.testing import CliRunner

    from kosearch.cli import cli

    logger = logging.getLogger("kosearch.server")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        result = CliRunner().invoke(cli, ["serve", "-i", str(tiny_index_dir), "--host",
                                          "0.0.0.0", "--port", "8765", "--device", "cpu"])
    finally:
        logger.handlers, logger.level, logger.propagate = saved
    assert result.exit_code == 0, result.output
    assert "http://0.0.0.0:8765" in result.stderr and "without an API key" in result.stderr
    assert fake_uvicorn[0]["host"] == "0.0.0.0" and fake_uvicorn[0]["port"] == 8765


def test_missing_fastapi_says_which_extra_to_install(
    index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'kosearch\[server\]'"):
        create_app(index)


# ---------------------------------------------------------------------------- writable
def test_document_routes_exist_only_when_writable(client: TestClient) -> None:
    response = client.post("/documents", json={"documents": [{"id": "x", "text": "글"}]})
    assert response.status_code == 404 and "no endpoint at /documents" in response.json()["error"]


def test_writable_server_adds_updates_and_deletes(tmp_path: Any) -> None:
    encoder = HashEncoder()
    Index.build(DOCS[:4], tmp_path / "idx", encoder=encoder)
    index = Index.load(tmp_path / "idx", encoder=encoder)
    with TestClient(create_app(index, writable=True, api_key=KEY)) as c:
        auth = {"Authorization": f"Bearer {KEY}"}
        doc = {"id": "new", "text": "울릉도 오징어 축제가 열렸다", "title": "축제", "meta": {"s": 1}}
        denied = c.post("/documents", json={"documents": [doc]})
        assert denied.status_code == 401
        added = c.post("/documents", json={"documents": [doc]}, headers=auth)
        assert added.status_code == 200, added.text
        assert added.json()["added"] == 1 and added.json()["documents"] == 5
        hit = c.post("/search", json={"query": "오징어 축제", "k": 1}, headers=auth).json()["hits"][0]
        assert (hit["id"], hit["meta"]) == ("new", {"s": 1})
        again = c.post("/documents", json={"documents": [doc], "mode": "add"}, headers=auth)
        assert again.status_code == 400 and "already in the index" in again.json()["error"]
        changed = c.post("/documents", json={"documents": [{**doc, "text": "울릉도 호박엿"}]},
                         headers=auth)
        assert changed.json()["updated"] == 1
        gone = c.request("DELETE", "/documents", json={"ids": ["new", "zz"]}, headers=auth)
        assert gone.status_code == 200
        assert (gone.json()["deleted"], gone.json()["unknown"]) == (1, ["zz"])
        for bad in ({"documents": []}, {"documents": [{"id": "", "text": "x"}]},
                    {"documents": [{"id": "a"}]}, {"documents": [doc], "mode": "replace"}):
            response = c.post("/documents", json=bad, headers=auth)
            assert response.status_code == 422, (bad, response.text)
            assert set(response.json()) == {"error"}
    assert len(Index.load(tmp_path / "idx")) == 4  # saved as it went


def test_a_skipped_empty_document_is_reported_with_the_reason(tmp_path: Any) -> None:
    encoder = HashEncoder()
    Index.build(DOCS[:4], tmp_path / "idx", encoder=encoder)
    before = (tmp_path / "idx" / "manifest.json").read_bytes()
    index = Index.load(tmp_path / "idx", encoder=encoder)
    with TestClient(create_app(index, writable=True)) as c:
        empty = c.post("/documents", json={"documents": [{"id": "blank", "text": "  "}]})
        assert empty.status_code == 200, empty.text
        body = empty.json()
        assert (body["added"], body["documents"]) == (0, 4)
        assert [s["id"] for s in body["skipped"]] == ["blank"]
        assert "empty text" in body["skipped"][0]["reason"]
        assert (tmp_path / "idx" / "manifest.json").read_bytes() == before  # nothing written
        mixed = c.post("/documents", json={"documents": [
            {"id": "ok", "text": "울릉도 오징어"}, {"id": "blank2", "text": ""}]}).json()
        assert mixed["added"] == 1 and [s["id"] for s in mixed["skipped"]] == ["blank2"]
        assert c.post("/documents", json={"documents": [
            {"id": "ok2", "text": "독도"}]}).json()["skipped"] == []
    assert before != (tmp_path / "idx" / "manifest.json").read_bytes()  # the real ones were saved


def test_docs_pages_load_their_assets_from_the_server_itself(index: Index) -> None:
    from kosearch.serving.docs import ASSETS_URL, local_assets

    if local_assets() is None:
        pytest.skip("fastapi-offline (the server extra) is not installed")
    with TestClient(create_app(index)) as c:
        assert c.get("/openapi.json").json()["info"]["title"] == "kosearch"
        for page, script in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
            html = c.get(page)
            assert html.status_code == 200 and f"{ASSETS_URL}/{script}" in html.text
            assert "cdn." not in html.text and "fonts.googleapis" not in html.text
            asset = c.get(f"{ASSETS_URL}/{script}")
            assert asset.status_code == 200 and len(asset.content) > 100_000
        assert c.get(f"{ASSETS_URL}/swagger-ui.css").status_code == 200
        assert c.get(f"{ASSETS_URL}/..%2Fcore.py").status_code == 404
        assert c.get(f"{ASSETS_URL}/core.py").status_code == 404


def test_writable_needs_one_worker(index: Index, tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="single worker"):
        serve(tmp_path, workers=2, writable=True)
