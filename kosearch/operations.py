"""What the command line and the server do, as library calls, so every front end behaves alike.

- :func:`index_directory`: build an index into a directory, or update the one already there
  (refusing settings only a rebuild can change), then prepare the instant-query model.
- :func:`search_directory`: a one-shot search of an index directory, with the BM25 analysis of
  the queries in a child process while this one loads the index and the model.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kosearch.errors import ConfigError, KosearchError, ModelMismatchError
from kosearch.settings import ChunkSettings, IndexSettings, SearchOptions
from kosearch.storage.layout import LEXICAL_DIR, is_index
from kosearch.types import Hit, Mode, UpdateReport

if TYPE_CHECKING:
    from kosearch.encoding.encoder import Encoder
    from kosearch.storage.manifest import Manifest

#: Settings fixed when an index is built, with the command-line flag that sets each, and how
#: to read the value from IndexSettings (the flag's value for the ``--no-*`` switches).
FIXED_SETTINGS: dict[str, tuple[str, Any]] = {
    "metric": ("--metric", lambda s: str(getattr(s.metric, "value", s.metric))),
    "chunking.max_tokens": ("--chunk-tokens", lambda s: s.chunking.max_tokens),
    "chunking.overlap": ("--chunk-overlap", lambda s: s.chunking.overlap),
    "chunking.enabled": ("--no-chunk", lambda s: not s.chunking.enabled),
    "lexical": ("--no-lexical", lambda s: not s.lexical),
    "query_prompt": ("--query-prompt", lambda s: s.query_prompt),
    "passage_prompt": ("--passage-prompt", lambda s: s.passage_prompt),
    "precision": ("--precision", lambda s: s.precision),
}
_UPDATABLE = ("batch_size", "device", "index_type", "processes", "fields")


@dataclass(frozen=True)
class IndexingResult:
    """What :func:`index_directory` did: ``updated`` is False for a new build."""

    manifest: Manifest
    report: UpdateReport
    updated: bool


def index_directory(
    corpus: Sequence[str | os.PathLike[str]],
    path: str | os.PathLike[str],
    *,
    given: Collection[str] | None = None,
    rebuild: bool = False,
    sync: bool = False,
    restart: bool = False,
    progress: bool = False,
    stdin: TextIO | None = None,
    instant_queries: bool = True,
    encoder: Encoder | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    **options: Any,
) -> IndexingResult:
    """Build an index of ``corpus`` at ``path``, or update the index already there.

    An existing index is updated (upsert; with ``sync`` also deleting documents the corpus no
    longer has) unless ``rebuild``. An update keeps the settings the index was built with:
    a setting in ``given`` that differs from the index's is refused with a
    :class:`ConfigError` naming the flag and saying to rebuild. After a build, the query model
    is exported for instant queries (``instant_queries``; never fails the build).

    Args:
        corpus: corpus files or folders (``"-"`` for JSONL on ``stdin``).
        path: the index directory.
        given: the settings the caller chose explicitly, as :class:`IndexSettings` field names
            (``chunking.max_tokens`` style for the chunk settings); default: every key of
            ``options`` (a ``chunking`` value counts as all its fields).
        encoder: an already loaded encoder (default: load ``options["model"]``).
        engine, ray_address, workers, gpus_per_worker: where to encode, as for
            :meth:`~kosearch.index.Index.build` (``ray``: on a Ray cluster).
        **options: :class:`IndexSettings` fields.
    """
    from kosearch.build.lifecycle import engine_options

    target = Path(path)
    ray = {"engine": engine, "ray_address": ray_address, "workers": workers,
           "gpus_per_worker": gpus_per_worker}
    engine_options(**ray)  # a bad engine option fails before any work
    if given is None:
        given = _given_of(options)
    if not is_index(target) or rebuild:
        if sync:
            raise ConfigError(f"--sync updates an existing index; there is none at {target}")
        return _build(corpus, target, restart, progress, stdin, instant_queries, encoder,
                      options, engine_options(**ray))
    index, deferred = _index_to_update(target, options, given, encoder)
    chosen = {name: options[name] for name in _UPDATABLE if name in given and name in options}
    if deferred is not None:
        chosen["model"] = deferred
    try:
        report = index.upsert(list(corpus), sync=sync, progress=progress, restart=restart,
                              stdin=stdin, strict=options.get("strict", False), **ray,
                              **chosen)
    except ModelMismatchError:
        if deferred is None:
            raise
        raise _mixing(target, index.manifest.model.name, deferred) from None
    return IndexingResult(index.manifest, report, updated=True)


def _build(corpus: Sequence[Any], target: Path, restart: bool, progress: bool,
           stdin: TextIO | None, instant_queries: bool, encoder: Encoder | None,
           options: dict[str, Any], engine: Any = None) -> IndexingResult:
    from kosearch.build import lifecycle
    from kosearch.storage.manifest import read_manifest

    run = lifecycle.new_build(list(corpus), encoder, progress, stdin, options, engine=engine)
    report = lifecycle.execute(run, target, restart=restart)
    # The index is not opened: that would read every passage text, which the build never does.
    manifest = read_manifest(target)
    if instant_queries:
        from kosearch.encoding.onnx_export import prepare_instant_queries

        prepare_instant_queries(run.get_encoder())
    return IndexingResult(manifest, report, updated=False)


def _given_of(options: dict[str, Any]) -> set[str]:
    names = set(options)
    if "chunking" in names:
        names |= {f"chunking.{f.name}" for f in fields(ChunkSettings)}
    return names


def _index_to_update(
    target: Path, options: dict[str, Any], given: Collection[str], encoder: Encoder | None
) -> tuple[Any, str | None]:
    """The index at ``target``, after refusing settings that only a rebuild can change, and
    the model to load for new passages if that is still to be checked.

    A model in ``given`` that is not the index's (by name) is loaded now and checked; any other
    ``model`` (one from ``$KOSEARCH_MODEL``, say) loads only if a passage needs encoding, and is
    checked then, so an update that changes nothing never loads a model.
    """
    from kosearch.index import Index
    from kosearch.storage.manifest import read_manifest

    # The manifest alone decides what is refused: the parts are read once, afterwards.
    built = read_manifest(target).settings()
    wanted = IndexSettings(**{k: v for k, v in options.items() if k != "model"})
    for name, (flag, value) in FIXED_SETTINGS.items():
        if name in given and value(wanted) != value(built):
            raise ConfigError(
                f"the index at {target} was built with other settings ({flag} "
                f"{value(built)!r}); an update keeps them, so pass --rebuild to re-encode "
                f"everything with {flag} {value(wanted)!r}"
            )
    model = options.get("model")
    if model is None or model == built.model or "model" not in given:
        return Index.load(target, encoder=encoder), model
    try:
        return Index.load(target, model=model, device=options.get("device")), None
    except ModelMismatchError:
        raise _mixing(target, built.model, model) from None


def _mixing(target: Path, built: str | None, model: str) -> ModelMismatchError:
    return ModelMismatchError(
        f"the index at {target} was built with {built}, not {model}; "
        "updating it with another model would mix two vector spaces, so pass --rebuild "
        "to re-encode everything with the new model"
    )


def search_directory(
    path: str | os.PathLike[str],
    queries: Sequence[str],
    k: int = 10,
    options: SearchOptions | None = None,
    *,
    filter: Any = None,
    model: str | None = None,
    device: str | None = None,
    query_backend: str = "torch",
    nprobe: int | None = None,
    ef_search: int | None = None,
) -> list[list[Hit]]:
    """Open the index at ``path`` and search ``queries`` once, as fast as a cold start allows.

    ``options`` (mode, passages, reranking, fusion) and ``filter`` (one, or one per query) are
    as for :meth:`~kosearch.index.Index.search_batch`; ``model``, ``device`` and
    ``query_backend`` as for :meth:`~kosearch.index.Index.load`.

    Another core (a child process) analyzes the queries for BM25, and the hits for their
    highlights, while this process loads the index (and the query model); see
    :meth:`kosearch.index.Index.warm_up`. That child then lingers for the next one-shot query
    of the same analyzer (``KOSEARCH_ANALYZER_LINGER`` idle seconds, 300 by default; ``0``:
    no lingering), which finds Kiwi loaded: :mod:`kosearch.lexical.analysis_server`.

    Raises:
        ConfigError: If ``KOSEARCH_ANALYZER_LINGER`` is not a number of seconds >= 0.
    """
    from kosearch.lexical.analysis_server import linger_seconds
    from kosearch.lexical.child_analysis import ChildAnalysis

    linger = linger_seconds()
    options = options or SearchOptions()
    texts = list(queries)
    bm25 = options.mode is None or str(options.mode) in (Mode.HYBRID.value, Mode.LEXICAL.value)
    lexical = Path(path) / LEXICAL_DIR
    analysis = None
    dense = str(options.mode) != Mode.LEXICAL.value
    wanted = _helper_encoder(path, model, device, query_backend) if linger and dense else None
    if bm25 or options.highlights:  # an index without BM25 highlights with the default Kiwi
        analysis = ChildAnalysis.start(
            lexical if lexical.is_dir() else None, texts, linger=linger, module=ONESHOT_HELPER,
            extra={"encoder": wanted[0]} if wanted else None)
    try:
        from kosearch.index import Index

        encoder = _remote_encoder(analysis, wanted, device, query_backend)
        index = Index.load(path, encoder=encoder, model=model, device=device,
                           query_backend=query_backend)
        index.warm_up(options.mode, texts, analysis=analysis, highlights=options.highlights)
        index.set_search_params(nprobe=nprobe, ef_search=ef_search)
        return index.search_batch(texts, k, filter=filter, **options.keywords())
    finally:
        if analysis is not None:
            analysis.close()  # a no-op once the search used it; else stop the child


# The helper process of one-shot queries: Kiwi and the query encoder (kosearch.retrieval.oneshot,
# started by name: this module does not import the retrieval layer).
ONESHOT_HELPER = "kosearch.retrieval.oneshot"


def _helper_encoder(path: str | os.PathLike[str], model: str | None, device: str | None,
                    query_backend: str) -> tuple[dict[str, str], Any] | None:
    """What a lingering helper may encode this one-shot query with: the index's ONNX export
    when queries would run on it here (no other model, a CPU, an export already made), as
    ``(spec, the manifest's model)``; else ``None``."""
    from kosearch.encoding import onnx_runtime
    from kosearch.encoding.remote import encoder_spec
    from kosearch.storage.manifest import read_manifest

    if (model is not None or query_backend not in ("auto", "onnx")
            or device not in (None, "auto", "cpu") or not onnx_runtime.onnxruntime_available()):
        return None
    try:
        info = read_manifest(path).model
        directory = onnx_runtime.export_dir(info.fingerprint, info.max_tokens)
        onnx_runtime.read_export(directory)
    except KosearchError:
        return None  # no export yet: the query makes it, the next one can use a helper
    spec = encoder_spec(str(directory), info.name, info.query_prompt, info.passage_prompt)
    return spec, info


def _remote_encoder(analysis: Any, wanted: tuple[dict[str, str], Any] | None,
                    device: str | None, query_backend: str) -> Encoder | None:
    """The helper's query encoder, where a lingering helper has the one ``wanted`` loaded."""
    if analysis is None or wanted is None or not analysis.via_server:
        return None
    spec, info = wanted
    held = analysis.first("encoder")
    if (not isinstance(held, dict) or held.get("directory") != spec["directory"]
            or held.get("fingerprint") != info.fingerprint or held.get("dim") != info.dim):
        return None
    from functools import partial

    from kosearch.encoding.factory import load_query_encoder
    from kosearch.encoding.remote import RemoteQueryEncoder

    return RemoteQueryEncoder(analysis.ask, spec["directory"], info,
                              partial(load_query_encoder, info, query_backend, device))
