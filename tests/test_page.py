"""The search page (``GET /``): its files and headers, and the page itself in a real browser.

The first tests read the page through FastAPI's TestClient. The browser tests start real
servers (tests/pageserver.py, a separate process on free ports) and drive the system's Chromium
with Playwright's Python package (never a downloaded browser); they compare what the page shows
with the JSON the API answers the same request with. They skip, saying what to install, where
Playwright or Chromium is missing (``.ci/run`` installs Chromium).
"""

from __future__ import annotations

import json
import re
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi")
try:
    from fastapi.testclient import TestClient
except (ImportError, RuntimeError):  # starlette's TestClient needs httpx
    pytest.skip("the page tests need httpx: pip install httpx", allow_module_level=True)

from pageserver import DOCS, build_index  # noqa: E402

from kosearch.index import Index  # noqa: E402
from kosearch.serving.app import create_app  # noqa: E402
from kosearch.serving.page import CSP, PAGE_FILES  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "kosearch" / "serving" / "static"
KEY = "page-key"
QUESTION = "서울의 강은 어디로 흐르나요"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def index() -> Index:
    return build_index(lexical=False)  # no Kiwi load: the page is the same either way


# ---------------------------------------------------------------------------- files, headers


class _Page(HTMLParser):
    """What a page asks for (script and style sheet URLs) and anything CSP would block."""

    def __init__(self) -> None:
        super().__init__()
        self.assets: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "script":
            self._in_script = True
            if not named.get("src"):
                self.inline.append("a <script> without src")
            else:
                self.assets.append(str(named["src"]))
        if tag == "link" and named.get("rel") == "stylesheet":
            self.assets.append(str(named["href"]))
        if tag == "style":
            self.inline.append("a <style> element")
        self.inline += [f"{tag} {name}=" for name, _ in attrs
                        if name == "style" or name.startswith("on")]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("an inline script")


def test_root_serves_the_page_and_its_files_with_a_strict_csp(index: Index) -> None:
    with TestClient(create_app(index)) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.headers["content-security-policy"] == CSP
        assert "script-src 'self';" in CSP and "unsafe-inline" not in CSP
        assert page.headers["x-content-type-options"] == "nosniff"
        parsed = _Page()
        parsed.feed(page.text)
        assert parsed.inline == []  # the CSP allows no inline script or style
        assert sorted(parsed.assets) == ["static/search.css", "static/search.js"]
        for asset in parsed.assets:  # relative: the page also works under a path prefix
            response = client.get("/" + asset)
            assert response.status_code == 200, asset
            assert response.content == (STATIC / Path(asset).name).read_bytes()
            kind = "text/javascript" if asset.endswith(".js") else "text/css"
            assert response.headers["content-type"] == f"{kind}; charset=utf-8"
        assert client.head("/").status_code == 200
        assert client.get("/static/app.py").status_code == 404  # only the page's own files
        assert client.post("/").status_code == 405
        assert "/" not in client.get("/openapi.json").json()["paths"]


def test_the_page_loads_without_the_api_key_but_searching_needs_it(index: Index) -> None:
    with TestClient(create_app(index, api_key=KEY)) as client:
        for path in PAGE_FILES:
            assert client.get(path).status_code == 200, path
        assert client.get("/info").status_code == 401
        assert client.post("/search", json={"query": "서울"}).status_code == 401
        assert client.get("/static/other.js").status_code == 401  # the key guards the rest


def test_the_page_loads_nothing_from_elsewhere_and_writes_no_html() -> None:
    for name, _ in PAGE_FILES.values():
        text = (STATIC / name).read_text(encoding="utf-8")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), name  # no CDN
    script = (STATIC / "search.js").read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script  # hit text only ever becomes text nodes


def test_the_page_files_are_package_data() -> None:
    """A wheel holds what pyproject.toml's package-data names: every file of the page."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["kosearch.serving"]
    shipped = {p.relative_to(STATIC.parent).as_posix() for p in STATIC.iterdir()}
    matched = {name for name in shipped if any(Path(name).match(p) for p in patterns)}
    assert matched == shipped
    assert {name for name, _ in PAGE_FILES.values()} <= {Path(n).name for n in shipped}
    folder = resources.files("kosearch.serving").joinpath("static")
    assert folder.joinpath("index.html").read_bytes() == (STATIC / "index.html").read_bytes()


# ---------------------------------------------------------------------------- in a browser


def _browser_path() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium installed for the search page's browser test: apt-get install "
                "chromium (.ci/run does it when it can)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _browser_path()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the browser test needs Playwright: pip install playwright")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


def _start_servers() -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("pageserver.py")), "--api-key", KEY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("ports "):
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"the page server did not start: {line!r} {err[-2000:]}")
    return proc, [f"http://127.0.0.1:{int(port)}/" for port in line.split()[1:]]


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=30)  # and close its pipes
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def servers(browser: Any) -> Iterator[list[str]]:  # after the browser: no server without one
    """The URLs of two servers of :func:`pageserver.build_index`: open, and with the key."""
    proc, urls = _start_servers()
    yield urls
    _stop(proc)


@pytest.fixture()
def server(servers: list[str]) -> str:
    return servers[0]


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    tab = context.new_page()
    tab.errors = []  # console errors (a CSP violation is one) and uncaught exceptions
    tab.on("console", lambda m: m.type == "error" and tab.errors.append(m.text))
    tab.on("pageerror", lambda e: tab.errors.append(str(e)))
    yield tab
    context.close()


def _searches(page: Any) -> int:
    return int(page.eval_on_selector("#hits", "el => el.dataset.searches || '0'"))


def _submit(page: Any) -> None:
    """Press Enter in the query box and wait until that search has been answered."""
    before = _searches(page)
    page.press("#q", "Enter")
    page.wait_for_function(
        f"() => Number(document.getElementById('hits').dataset.searches || 0) > {before}")


def _shown(page: Any) -> list[dict[str, Any]]:
    """Each rendered hit: id, title, snippet text, the bold parts, meta, score parts."""
    return page.eval_on_selector_all("#hits > li", """items => items.map(li => ({
        id: li.querySelector('.id').textContent,
        title: li.querySelector('.title').textContent,
        snippet: li.querySelector('.snippet').textContent,
        marks: Array.from(li.querySelectorAll('.snippet mark'), m => m.textContent),
        meta: Array.from(li.querySelectorAll('.meta dt'), d => d.textContent),
        scores: Array.from(li.querySelectorAll('.scores .part'), p => p.dataset.retriever),
    }))""")


def _api(page: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The hits ``POST /search`` answers ``body`` with, asked from the page (same origin)."""
    return page.evaluate("""async body => (await fetch('search', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)})).json()""",
                         body)["hits"]


def _expected(hit: dict[str, Any]) -> dict[str, Any]:
    """What the page shows for one hit of the API (``Hit.to_dict()``)."""
    h = hit.get("highlights")
    if h:  # the snippet with its matched spans in bold (offsets are code points, as here)
        snippet = ("… " if h["start"] > 0 else "") + h["snippet"] + (
            " …" if h["end"] < len(hit["text"]) else "")
        marks = [hit["text"][s["start"]:s["end"]] for s in h["spans"]]
    else:
        snippet, marks = hit["text"], []
    retrievers = dict.fromkeys(re.sub(r"_(rank|score)$", "", key) for key in hit["scores"])
    return {"id": hit["id"], "title": hit["title"] or hit["id"], "snippet": snippet,
            "marks": marks, "meta": list(hit["meta"]), "scores": list(retrievers)}


def test_a_typed_korean_question_shows_the_hits_in_order(page: Any, server: str) -> None:
    page.goto(server)
    page.fill("#q", QUESTION)
    page.fill("#k", "4")
    page.select_option("#mode", "hybrid")
    _submit(page)
    hits = _api(page, {"query": QUESTION, "k": 4, "mode": "hybrid"})
    assert [hit["id"] for hit in hits][:1] == ["seoul"] and len(hits) == 4
    assert _shown(page) == [_expected(hit) for hit in hits]
    assert {"dense", "lexical"} <= {name for hit in _shown(page) for name in hit["scores"]}
    assert page.text_content("#status") == "4 hits"
    assert page.evaluate("location.search") == f"?q={quote(QUESTION)}&mode=hybrid&k=4".replace(
        "%20", "+")  # the search can be linked
    assert page.errors == []


def test_a_search_url_renders_its_results_without_typing(page: Any, server: str) -> None:
    page.goto(f"{server}?q={quote('부산 해수욕장')}&mode=dense&k=2")
    page.wait_for_selector("#hits[data-searches='1']", state="attached")
    assert page.input_value("#q") == "부산 해수욕장"
    assert page.input_value("#mode") == "dense" and page.input_value("#k") == "2"
    expected = [_expected(h) for h in _api(page, {"query": "부산 해수욕장", "k": 2,
                                                  "mode": "dense"})]
    assert _shown(page) == expected and expected[0]["id"] == "busan"
    page.fill("#q", "김치")
    _submit(page)
    assert [hit["id"] for hit in _shown(page)][0] == "kimchi"
    page.go_back()  # back to the linked search, its form and its hits
    page.wait_for_selector("#hits[data-searches='3']", state="attached")
    assert page.input_value("#q") == "부산 해수욕장" and _shown(page) == expected
    assert page.errors == []


def test_markup_in_a_hit_is_shown_as_text(page: Any, server: str) -> None:
    page.goto(f"{server}?q={quote('보안 점검')}&mode=lexical&k=1")
    page.wait_for_selector("#hits[data-searches='1']", state="attached")
    xss = next(d for d in DOCS if d.id == "xss")
    [shown] = _shown(page)
    assert shown["id"] == "xss" and shown["title"] == xss.title
    assert "<script>window.pwned = 1</script>" in shown["snippet"]
    assert page.locator("#hits script, #hits img, #hits i, .snippet b").count() == 0
    assert page.text_content(".meta dd") == "<i>x</i>"
    assert page.evaluate("typeof window.pwned") == "undefined"


def test_highlighted_spans_are_bold(page: Any, server: str) -> None:
    """The page renders ``highlights`` (see kosearch.types.Hit) when the API sends them."""
    text = "🙂 전세 계약이 끝나면 보증금을 돌려받습니다. <b>주의</b>: 이사 전에 확인하세요."
    snippet = "전세 계약이 끝나면 보증금을 돌려받습니다."
    start = text.index(snippet)  # code points, as Python counts; the emoji is 2 UTF-16 units
    spans = [(text.index(w), text.index(w) + len(w)) for w in ("전세", "보증금")]
    hits = [
        {"id": "a", "chunk": 0, "score": 0.9, "rank": 1, "text": text, "title": "전세",
         "meta": {}, "start": 0, "end": len(text), "scores": {"dense_rank": 1},
         "highlights": {"snippet": snippet, "start": start, "end": start + len(snippet),
                        "spans": [{"start": s, "end": e} for s, e in spans]}},
        {"id": "b", "chunk": 0, "score": 0.5, "rank": 2, "text": "<script>x()</script> 보증금",
         "title": "", "meta": {"year": 2024}, "start": 0, "end": 24, "scores": {},
         "highlights": None},
    ]
    page.route("**/search", lambda route: route.fulfill(
        status=200, content_type="application/json",
        body=json.dumps({"query": "전세 보증금", "hits": hits})))
    page.goto(f"{server}?q={quote('전세 보증금')}")
    page.wait_for_selector("#hits[data-searches='1']", state="attached")
    shown = _shown(page)
    assert shown == [_expected(hit) for hit in hits]
    assert shown[0]["marks"] == ["전세", "보증금"]
    assert shown[0]["snippet"] == f"… {snippet} …"
    assert page.eval_on_selector(".snippet mark", "m => getComputedStyle(m).fontWeight") == "700"
    assert page.locator(".passage").first.text_content().endswith(text)  # the whole passage
    assert shown[1]["title"] == "b" and shown[1]["snippet"] == hits[1]["text"]


def test_the_filter_box_sends_the_api_filter(page: Any, server: str) -> None:
    page.goto(server)
    page.fill("#q", "대한민국 도시")
    page.click("#filter-box summary")
    page.fill("#filter", '{"n": {"$gte": 2}}')
    _submit(page)
    hits = _api(page, {"query": "대한민국 도시", "filter": {"n": {"$gte": 2}}})
    assert _shown(page) == [_expected(hit) for hit in hits] and len(hits) == 1
    assert "filter=" in page.evaluate("location.search")
    assert "n (int: 2)" in page.text_content("#fields")  # the index's fields, from /info
    page.fill("#filter", '{"n": ')
    _submit(page)
    assert page.text_content("#status").startswith("Error: the filter is not valid JSON")
    page.fill("#filter", '{"colour": "red"}')
    _submit(page)
    status = page.text_content("#status")
    assert status.startswith("Error: ") and "colour" in status and "(HTTP 400)" in status
    assert _shown(page) == []
    page.fill("#filter", "")
    page.fill("#k", "1000")  # the server's limits are the server's: the page shows its answer
    _submit(page)
    assert page.text_content("#status") == (
        "Error: invalid 'k': input should be less than or equal to 100 (HTTP 422)")


def test_a_server_with_an_api_key_asks_for_it(page: Any, servers: list[str]) -> None:
    page.goto(f"{servers[1]}?q={quote('김치')}&k=1")
    page.wait_for_selector("#hits[data-searches='1']", state="attached")
    assert page.is_visible("#key")
    assert "(HTTP 401)" in page.text_content("#status")
    page.fill("#key", KEY)
    _submit(page)
    assert [hit["id"] for hit in _shown(page)] == ["kimchi"]
    assert KEY not in page.evaluate("location.href")
    page.wait_for_selector("#about:has-text('dense only')")  # /info, asked with the key
    assert page.eval_on_selector("#mode option[value=lexical]", "o => o.disabled")
