"""The CLI's policy, from Python: ``index_directory`` builds or updates, ``search_directory``
searches once; both behave as ``kosearch index`` and ``kosearch query`` do."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import SAMPLE_DOCS, HashEncoder

from kosearch import (
    ChunkSettings,
    ConfigError,
    Index,
    SearchOptions,
    index_directory,
    search_directory,
)


@pytest.fixture()
def built(tmp_path: Path) -> Path:
    target = tmp_path / "idx"
    result = index_directory(SAMPLE_DOCS[:4], target, encoder=HashEncoder(),
                             instant_queries=False)
    assert not result.updated and result.manifest.counts["documents"] == 4
    return target


def test_an_existing_index_is_updated_not_rebuilt(built: Path) -> None:
    before = Index.load(built, encoder=HashEncoder()).manifest.created
    result = index_directory(SAMPLE_DOCS[:6], built, encoder=HashEncoder())
    assert result.updated and result.report.added == 2 and result.report.unchanged == 4
    assert result.manifest.counts["documents"] == 6 and result.manifest.created == before


@pytest.mark.parametrize(("setting", "flag"), [
    ({"metric": "ip"}, "--metric 'cosine'"),
    ({"lexical": False}, "--no-lexical False"),
    ({"chunking": ChunkSettings(max_tokens=40)}, "--chunk-tokens"),
])
def test_a_setting_only_a_rebuild_can_change_is_refused(
    built: Path, setting: dict, flag: str
) -> None:
    before = (built / "manifest.json").read_bytes()
    with pytest.raises(ConfigError, match="pass --rebuild") as error:
        index_directory(SAMPLE_DOCS, built, encoder=HashEncoder(), **setting)
    assert flag in str(error.value)
    assert (built / "manifest.json").read_bytes() == before
    rebuilt = index_directory(SAMPLE_DOCS, built, encoder=HashEncoder(), rebuild=True,
                              instant_queries=False, **setting)
    assert not rebuilt.updated and rebuilt.manifest.counts["documents"] == len(SAMPLE_DOCS)


def test_the_same_setting_as_the_index_is_not_a_change(built: Path) -> None:
    result = index_directory(SAMPLE_DOCS[:4], built, encoder=HashEncoder(), metric="cosine")
    assert result.updated and result.report.unchanged == 4


def test_sync_needs_an_existing_index(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--sync updates an existing index"):
        index_directory(SAMPLE_DOCS, tmp_path / "none", encoder=HashEncoder(), sync=True)
    assert not (tmp_path / "none").exists()


def test_search_directory_ranks_as_the_loaded_index(built: Path, monkeypatch) -> None:
    monkeypatch.setattr("kosearch.encoding.factory.load_encoder", lambda *a, **k: HashEncoder())
    query = SAMPLE_DOCS[2].text[:20]
    for mode in ("hybrid", "dense", "lexical"):
        got = search_directory(built, [query], 3, SearchOptions(mode=mode))[0]
        want = Index.load(built, encoder=HashEncoder()).search(query, 3, mode=mode)
        assert [(h.id, round(h.score, 5)) for h in got] == [(h.id, round(h.score, 5))
                                                           for h in want]


def test_search_options_are_the_keywords_of_search(built: Path) -> None:
    import inspect

    from kosearch.settings import SearchOptions as Options

    index = Index.load(built, encoder=HashEncoder())
    parameters = inspect.signature(Index.search_batch).parameters
    assert set(Options().keywords()) <= set(parameters)  # every option is a search keyword
    for name, value in Options().keywords().items():
        assert parameters[name].default == value, name  # with the same default
    query = SAMPLE_DOCS[1].text[:20]
    options = Options(mode="lexical", passages=True)
    assert index.search(query, 3, **options.keywords()) == index.search(
        query, 3, mode="lexical", passages=True)
