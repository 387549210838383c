"""The one-shot query path: lighter Kiwi, background loads, the analysis child, no pandas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes import SAMPLE_DOCS, HashEncoder

import kosearch.lexical.child_analysis
from kosearch.cli import cli
from kosearch.errors import ConfigError
from kosearch.index import Index
from kosearch.lazy import Lazy
from kosearch.lexical.analyzers import MorphemeAnalyzer, analyzer_from_config, query_terms
from kosearch.lexical.bm25 import LexicalIndex
from kosearch.lexical.child_analysis import ChildAnalysis
from kosearch.lexical.format import read_analyzer
from kosearch.lexical.kiwi import DEFAULT_DICTS, LEGACY_DICTS, KiwiLoader, check_dicts
from kosearch.types import Document

# Kiwi's multi-word dictionary makes "알렉산더 헤이그" one proper noun; without it a query for
# "헤이그" alone can match the passage.
HAIG = "알렉산더 헤이그는 국무장관을 지냈다."
QUERIES = ["헤이그는 무슨 장관이었나?", "서울 지하철"]


# ------------------------------------------------------------------ Kiwi's dictionaries


def test_new_analyzers_skip_the_multi_word_dictionary_and_say_so() -> None:
    analyzer = MorphemeAnalyzer(num_workers=1)
    assert analyzer.dicts == DEFAULT_DICTS == ()
    assert analyzer.config()["dicts"] == []
    assert analyzer.tokenize([HAIG])[0][:2] == ["알렉산더", "헤이그"]


def test_a_config_without_dicts_is_an_older_index_and_keeps_kiwis_defaults() -> None:
    legacy = analyzer_from_config({"name": "kiwi", "tags": ["NNP", "NNG"]}, num_workers=1)
    assert legacy.dicts == LEGACY_DICTS  # type: ignore[attr-defined]
    assert legacy.tokenize([HAIG])[0][0] == "알렉산더 헤이그"
    again = analyzer_from_config(legacy.config())
    assert again.config() == legacy.config()


def test_unknown_dictionaries_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown Kiwi dictionaries"):
        MorphemeAnalyzer(dicts=["user"])
    with pytest.raises(ConfigError, match="list of dicts"):
        analyzer_from_config({"name": "kiwi", "tags": ["NNG"], "dicts": "multi"})
    assert check_dicts(["typo", "multi", "typo"]) == ("multi", "typo")


def test_an_update_of_an_older_index_analyzes_new_passages_like_the_old_ones(
    tmp_path: Path
) -> None:
    encoder = HashEncoder()
    index = Index.build(SAMPLE_DOCS, tmp_path / "idx", encoder=encoder)
    config_path = tmp_path / "idx" / "lexical" / "config.json"
    header = json.loads(config_path.read_text(encoding="utf-8"))
    del header["tokenizer"]["dicts"]  # as written before the dictionaries were recorded
    config_path.write_text(json.dumps(header), encoding="utf-8")
    old = Index.load(tmp_path / "idx", encoder=encoder)
    assert old.lexical is not None and old.lexical.analyzer.dicts == LEGACY_DICTS  # type: ignore[attr-defined]
    old.upsert([Document(id="haig", text=HAIG)])
    updated = Index.load(tmp_path / "idx", encoder=encoder)
    assert updated.lexical is not None
    assert updated.lexical.analyzer.config()["dicts"] == list(LEGACY_DICTS)
    assert [h.id for h in updated.search("알렉산더 헤이그", k=1, mode="lexical")] == ["haig"]
    # The multi-word noun is one term there: "헤이그" alone does not match it.
    assert "haig" not in [h.id for h in updated.search("헤이그", k=5, mode="lexical")]
    assert index.lexical is not None and index.lexical.analyzer.dicts == DEFAULT_DICTS  # type: ignore[attr-defined]


# ------------------------------------------------------------------ background loading


def test_preload_makes_once_in_a_thread_and_reraises_in_the_caller() -> None:
    calls: list[str] = []
    gate = threading.Event()

    def make() -> int:
        calls.append(threading.current_thread().name)
        gate.wait(10)
        return 42

    value = Lazy(make, name="answer")
    value.start()
    value.start()  # already under way: no second thread
    assert not value.done
    gate.set()
    assert value.get() == 42 and value.get() == 42 and value.done
    assert calls == ["kosearch-answer"]

    attempts: list[int] = []

    def failing() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("first try fails")
        return 7

    flaky = Lazy(failing, name="flaky")
    flaky.start()
    with pytest.raises(ValueError, match="first try fails"):
        flaky.get()
    assert flaky.get() == 7  # tried again, in the caller's thread
    assert len(attempts) == 2


def test_kiwi_loader_shares_one_instance_between_start_and_get() -> None:
    loader = KiwiLoader(num_workers=1)
    loader.start()
    kiwi = loader.get()
    assert loader.done and loader.get() is kiwi
    assert [t.form for t in kiwi.tokenize("서울에서")][0] == "서울"
    shared = MorphemeAnalyzer(kiwi=kiwi)
    assert shared.loaded and KiwiLoader(kiwi=kiwi).get() is kiwi
    assert shared.tokenize(["서울에서"]) == [["서울"]]


def test_a_missing_kiwipiepy_is_reported_by_get(monkeypatch: pytest.MonkeyPatch) -> None:
    from kosearch.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "kiwipiepy", None)  # makes the import fail
    loader = KiwiLoader(purpose="Korean lexical search")
    loader.start()
    with pytest.raises(MissingDependencyError, match="Korean lexical search needs"):
        loader.get()


# ------------------------------------------------------------------ the analysis child


@pytest.fixture(scope="module")
def lexical_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("lexical")
    texts = [HAIG, "서울에서는 지하철이 가장 편리한 교통수단이다.", "부산의 해운대 해수욕장"]
    LexicalIndex.build(texts, analyzer=MorphemeAnalyzer(num_workers=1)).save(directory)
    return directory


def test_the_child_analysis_gives_the_terms_kiwi_gives_here(lexical_dir: Path) -> None:
    analysis = ChildAnalysis.start(lexical_dir, QUERIES)
    assert analysis is not None
    analyzer = read_analyzer(lexical_dir)
    assert analysis.terms(analyzer.config()) == analyzer.tokenize_queries(QUERIES)
    other = MorphemeAnalyzer(dicts=LEGACY_DICTS).config()
    assert analysis.terms(other) is None  # analyzed under another analyzer: not usable


def test_a_search_uses_the_child_analysis_and_never_loads_kiwi(lexical_dir: Path) -> None:
    index = LexicalIndex.load(lexical_dir)
    want = LexicalIndex.load(lexical_dir).search(QUERIES, 3)
    index.warm_up(ChildAnalysis.start(lexical_dir, QUERIES))
    assert index.search(QUERIES, 3) == want
    assert not index.analyzer.loaded  # type: ignore[attr-defined]
    # Other texts than the child analysis's are analyzed here, with the same results.
    index.warm_up(ChildAnalysis.start(lexical_dir, QUERIES))
    assert index.search(["해운대"], 1) == LexicalIndex.load(lexical_dir).search(["해운대"], 1)
    assert index.analyzer.loaded  # type: ignore[attr-defined]


def test_every_pass_of_a_search_takes_the_child_terms_once_given(lexical_dir: Path) -> None:
    """A hybrid search looks the query terms up twice (its candidates, then the exact scores
    of the candidate union): neither pass may load Kiwi here."""
    want = LexicalIndex.load(lexical_dir).search_scored(QUERIES, 2, [[0, 1], [2]])
    index = LexicalIndex.load(lexical_dir)
    index.warm_up(ChildAnalysis.start(lexical_dir, QUERIES))
    index.search(QUERIES, 2)
    got = index.search_scored(QUERIES, 2, [[0, 1], [2]])
    assert [hits for hits, _ in got] == [hits for hits, _ in want]
    assert all((a == b).all() for (_, a), (_, b) in zip(got, want))
    assert not index.analyzer.loaded  # type: ignore[attr-defined]


def test_a_failed_child_analysis_falls_back_to_analyzing_here(
    tmp_path: Path, lexical_dir: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    analysis = ChildAnalysis.start(broken, QUERIES)
    assert analysis is not None
    index = LexicalIndex.load(lexical_dir)
    index.warm_up(analysis)
    assert index.search(QUERIES, 3) == LexicalIndex.load(lexical_dir).search(QUERIES, 3)
    assert analysis.terms(index.analyzer.config()) is None


def test_no_child_analysis_without_a_second_core_or_a_lexical_part(
    tmp_path: Path, lexical_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ChildAnalysis.start(tmp_path / "lexical", QUERIES) is None  # no lexical/ there
    assert ChildAnalysis.start(lexical_dir, ["긴 질의 " * 5000]) is None  # too much input
    monkeypatch.setattr(kosearch.lexical.child_analysis, "cores", lambda: 1)
    assert ChildAnalysis.start(lexical_dir, QUERIES) is None


def test_the_child_locates_hits_and_analyzes_other_queries_as_kiwi_does_here(
    lexical_dir: Path
) -> None:
    analysis = ChildAnalysis.start(lexical_dir, QUERIES)
    assert analysis is not None
    analyzer = read_analyzer(lexical_dir)
    config = analyzer.config()
    texts = [HAIG, "서울에서는 지하철이 가장 편리하다. 부산은 멀다!", ""]
    assert analysis.locate(config, texts) == analyzer.locate(texts)  # type: ignore[attr-defined]
    assert analysis.query_terms(config, ["해운대해수욕장"]) == query_terms(
        analyzer, ["해운대해수욕장"])
    other = MorphemeAnalyzer(dicts=LEGACY_DICTS).config()
    assert analysis.locate(other, texts) is None  # another analyzer's offsets: not usable
    analysis.close()
    assert analysis.locate(config, texts) is None  # stopped: the caller analyzes here
    assert analysis.terms(config) == query_terms(analyzer, QUERIES)  # kept from before


def test_without_a_lexical_index_the_child_uses_the_default_kiwi_analyzer() -> None:
    analysis = ChildAnalysis.start(None, QUERIES)
    assert analysis is not None
    assert analysis.analyzer_config == MorphemeAnalyzer().config()
    analysis.close()


# ------------------------------------------------------------------ Index.warm_up


@pytest.fixture()
def saved(tmp_path: Path) -> Path:
    Index.build(SAMPLE_DOCS, tmp_path / "idx", encoder=HashEncoder())
    return tmp_path / "idx"


def test_warm_up_then_search_ranks_as_a_cold_search(saved: Path) -> None:
    encoder = HashEncoder()
    queries = [doc.text[:12] for doc in SAMPLE_DOCS[:3]]
    cold = Index.load(saved, encoder=encoder).search_batch(queries, 3)
    warm = Index.load(saved, encoder=encoder)
    warm.warm_up(queries=queries)
    # an encoder given: no child
    assert warm.lexical is not None and warm.lexical._child_analysis is None
    assert warm.search_batch(queries, 3) == cold
    dense = Index.load(saved, encoder=encoder)
    dense.warm_up("dense")
    dense.search_batch(queries, 3, mode="dense", highlights=False)  # highlights need Kiwi
    assert dense.lexical is not None and not dense.lexical.analyzer.loaded  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["hybrid", "lexical", "dense"])
def test_a_search_after_warm_up_takes_its_highlights_from_the_child(saved: Path,
                                                                     mode: str) -> None:
    """Same hits and highlights as a search analyzing here, and Kiwi never loads here."""
    queries = [doc.text[:12] for doc in SAMPLE_DOCS[:3]]
    want = Index.load(saved, encoder=HashEncoder()).search_batch(queries, 3, mode=mode)
    assert all(hits[0].highlights is not None and hits[0].highlights.spans for hits in want)
    index = Index.load(saved, encoder=HashEncoder())
    analysis = ChildAnalysis.start(saved / "lexical", queries)
    assert analysis is not None
    index.warm_up(mode, queries, analysis=analysis)
    assert index.search_batch(queries, 3, mode=mode) == want
    assert index.lexical is not None and not index.lexical.analyzer.loaded  # type: ignore[attr-defined]
    assert analysis.locate(index.lexical.analyzer.config(), ["서울"]) is None  # it served one search


def test_a_dense_only_index_highlights_through_the_child(tmp_path: Path) -> None:
    Index.build(SAMPLE_DOCS, tmp_path / "idx", encoder=HashEncoder(), lexical=False)
    queries = [SAMPLE_DOCS[2].text[:15]]
    want = Index.load(tmp_path / "idx", encoder=HashEncoder()).search_batch(queries, 3)
    index = Index.load(tmp_path / "idx", encoder=HashEncoder())
    index.warm_up(queries=queries, analysis=ChildAnalysis.start(None, queries))
    assert index.search_batch(queries, 3) == want
    assert index._fallback_analyzer is not None and not index._fallback_analyzer.loaded


def test_a_child_that_dies_before_the_highlights_only_costs_the_speed(saved: Path) -> None:
    queries = [SAMPLE_DOCS[0].text[:12]]
    want = Index.load(saved, encoder=HashEncoder()).search_batch(queries, 3)
    index = Index.load(saved, encoder=HashEncoder())
    analysis = ChildAnalysis.start(saved / "lexical", queries)
    assert analysis is not None and analysis.analyzer_config is not None  # it has answered
    index.warm_up(queries=queries, analysis=analysis)
    analysis._channel.process.kill()  # type: ignore[union-attr]  # dies before the hits are located
    analysis._channel.process.wait()  # type: ignore[union-attr]
    assert index.search_batch(queries, 3) == want
    assert index.lexical is not None and index.lexical.analyzer.loaded  # type: ignore[attr-defined]


def test_an_encoder_that_fails_in_the_background_fails_the_search(saved: Path) -> None:
    from kosearch.errors import ModelLoadError

    index = Index.load(saved)  # its model, "hash-encoder", is not a loadable model
    index.warm_up("dense")
    with pytest.raises(ModelLoadError):
        index.search("서울", mode="dense")


# ------------------------------------------------------------------ the command line


def test_hybrid_cli_query_analyzes_in_a_child_and_matches_the_library(
    saved: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hybrid query starts one child for BM25 analysis and ranks as the library does."""
    started: list[ChildAnalysis] = []
    original = ChildAnalysis.start.__func__  # type: ignore[attr-defined]

    def spy(cls: type, lexical: Path, texts: list[str], **options: Any) -> ChildAnalysis | None:
        analysis = original(cls, lexical, texts, **options)
        started.append(analysis)
        return analysis

    monkeypatch.setattr(ChildAnalysis, "start", classmethod(spy))
    monkeypatch.setattr("kosearch.encoding.factory.load_encoder", lambda *a, **k: HashEncoder())
    query = SAMPLE_DOCS[1].text[:15]
    args = ["-i", str(saved), "--query-backend", "torch"]
    result = CliRunner().invoke(cli, ["query", query, *args, "--json", "-k", "3"])
    assert result.exit_code == 0, result.output
    assert len(started) == 1 and started[0] is not None
    got = [(h["id"], round(h["score"], 5)) for h in json.loads(result.stdout)["hits"]]
    want = Index.load(saved, encoder=HashEncoder()).search(query, 3)
    assert got == [(h.id, round(h.score, 5)) for h in want]
    started.clear()
    result = CliRunner().invoke(cli, ["query", query, *args, "--mode", "lexical", "--json"])
    assert result.exit_code == 0, result.output
    assert len(started) == 1 and started[0] is not None  # Kiwi loads beside the index's load
    got = [(h["id"], round(h["score"], 5)) for h in json.loads(result.stdout)["hits"]]
    want = Index.load(saved, encoder=HashEncoder()).search(query, 3, mode="lexical")
    assert got == [(h.id, round(h.score, 5)) for h in want]
    started.clear()
    result = CliRunner().invoke(cli, ["query", query, *args, "--mode", "dense", "--json"])
    assert result.exit_code == 0, result.output
    assert len(started) == 1 and started[0] is not None  # for the highlights
    want = Index.load(saved, encoder=HashEncoder()).search(query, 10, mode="dense")
    assert [h["highlights"] for h in json.loads(result.stdout)["hits"]] == [
        h.to_dict()["highlights"] for h in want]
    started.clear()
    result = CliRunner().invoke(cli, ["query", query, *args, "--mode", "dense",
                                      "--no-highlights"])
    assert result.exit_code == 0, result.output
    assert started == []  # no BM25, no highlights: no child


def test_a_search_reads_passages_without_importing_pandas(saved: Path) -> None:
    """Nor pyarrow.compute (a cast of the passage table, a take for zero hits) nor the build
    modules: each costs a one-shot query tenths of a second."""
    probe = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from fakes import HashEncoder\n"
        "from kosearch.index import Index\n"
        "index = Index.load(sys.argv[1], encoder=HashEncoder())\n"
        "assert index.search('서울', k=3, mode='dense')\n"
        "assert index.search('qqqq', k=3, mode='lexical') == []\n"
        "print(*(m in sys.modules for m in ('pandas', 'pyarrow.dataset', 'pyarrow.compute',\n"
        "                                   'kosearch.build.lifecycle')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(saved), str(Path(__file__).parent)],
        capture_output=True, text=True, env=os.environ.copy(), timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "False", "False"]


def test_the_child_reports_its_analyzer_and_leaves_without_teardown(lexical_dir: Path) -> None:
    """The child reads only the analyzer's config (no numpy) and prints the terms."""
    request = json.dumps({"lexical": str(lexical_dir), "texts": QUERIES})
    probe = (
        "import sys, runpy\n"
        "try:\n"
        "    runpy.run_module('kosearch.lexical.analysis_server', run_name='__main__')\n"
        "finally:\n"
        "    print('unreachable', file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", probe], input=request,
                         capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "unreachable" not in out.stderr  # os._exit: no finally, no teardown
    imported = {line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines()}
    assert "numpy" not in imported and "kiwipiepy" in imported
    result = json.loads(out.stdout)
    analyzer = read_analyzer(lexical_dir)
    assert result["analyzer"] == analyzer.config()
    assert result["terms"] == query_terms(analyzer, QUERIES)  # the spacing-robust query terms
