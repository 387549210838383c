"""The life of a build or update run: settings, the model, the checkpoint and the atomic swap.

:func:`new_build` and :func:`new_update` make a :class:`~kosearch.build.run.Run`; :func:`execute`
runs it into an index directory atomically, resumably when its inputs are files on disk (the
checkpoint sits beside the target and is keyed by :func:`run_key`); :func:`execute_in_scratch`
runs it into a temporary directory for an in-memory index.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kosearch.build.checkpoint import Checkpoint, checkpoint_path
from kosearch.build.run import Run, RunMode, Unchanged
from kosearch.encoding.factory import check_encoder, load_encoder
from kosearch.errors import ConfigError, KosearchError
from kosearch.settings import IndexSettings
from kosearch.storage.atomic import atomic_directory
from kosearch.storage.layout import MANIFEST_FILE

if TYPE_CHECKING:
    from kosearch.encoding.encoder import Encoder
    from kosearch.storage.manifest import Manifest
    from kosearch.storage.parts import IndexParts
    from kosearch.types import UpdateReport

log = logging.getLogger(__name__)

#: Settings an update may change; the others are fixed when the index is built.
UPDATE_OPTIONS = ("fields", "strict", "batch_size", "device", "index_type", "processes")


def new_build(
    corpus: Any, encoder: Encoder | None, progress: bool, stdin: TextIO | None,
    options: dict[str, Any], engine: Any = None,
) -> Run:
    """A run that builds a new index from ``corpus``; ``options`` are IndexSettings fields.

    Invalid settings fail here, before any work; so do a missing corpus file, malformed first
    records and a corpus without documents (:meth:`Run.check_corpus`). Only then does the model
    (unless ``encoder`` is given) load: without ``model``, the one ``KOSEARCH_MODEL`` names, else
    the registry default. ``engine`` (a :class:`~kosearch.build.ray_cluster.RayOptions`) runs
    the chunking and encoding on a Ray cluster; there the driver's model loads later, beside
    the actors, and a model path that is no model directory fails first.
    """
    from kosearch.encoding.registry import default_model
    from kosearch.storage.ann import plan_index

    if encoder is None and not options.get("model"):
        options = {**options, "model": default_model()}
    settings = IndexSettings(**options)
    settings.validated_metric()
    plan_index(settings.index_type, 1, 1)  # an unknown type fails before any work
    if (settings.precision or "").strip().lower() == "auto":
        from kosearch.encoding.calibrate import measuring_enabled

        measuring_enabled()  # so does a bad KOSEARCH_CALIBRATE
    loaded: list[Encoder] = [encoder] if encoder is not None else []

    def get_encoder() -> Encoder:
        if not loaded:
            loaded.append(load_encoder(settings.model, _driver_settings(settings, engine)))
        return loaded[0]

    model = settings.model if encoder is None else None
    if engine is not None and model is not None:
        from kosearch.encoding.encoder import check_model_source

        check_model_source(model)  # on Ray, the model loads while the actors start (RayRun)
    run = _make_run(engine, corpus, settings, get_encoder, model=model, progress=progress,
                    stdin=stdin)
    run.check_corpus()
    if engine is None:
        get_encoder()
    return run


def new_update(
    corpus: Any,
    mode: RunMode,
    base: IndexParts,
    encoder: Encoder | None,
    options: dict[str, Any],
    *,
    delete_ids: Any = (),
    progress: bool = False,
    stdin: TextIO | None = None,
    engine: Any = None,
) -> Run:
    """A run that updates the index ``base``; the model loads only if a passage needs encoding.

    ``encoder`` (the index's own, if loaded) is reused when it encodes passages in the index's
    precision. ``options["model"]`` (optional) is where to load the index's model from (a local
    copy, say); it must be the index's model, which is checked when it loads.
    """
    options = dict(options)
    source = options.pop("model", None)
    settings = update_settings(base.manifest, options)
    loaded: list[Encoder] = []

    def get_encoder() -> Encoder:
        if not loaded:
            mine = _driver_settings(settings, engine)
            loaded.append(_passage_encoder(base.manifest, mine, encoder, source))
        return loaded[0]

    if mode is RunMode.DELETE:
        engine = None  # nothing to encode
    return _make_run(engine, corpus, settings, get_encoder,
                     model=source or base.manifest.model.name, mode=mode, base=base,
                     delete_ids=delete_ids, progress=progress, stdin=stdin)


def engine_options(engine: str | None, ray_address: str | None = None,
                   workers: int | None = None, gpus_per_worker: float | None = None) -> Any:
    """The engine of a run from its options: None (this machine) or RayOptions."""
    if engine in (None, "local"):
        extra = [name for name, value in (("ray_address", ray_address), ("workers", workers),
                                          ("gpus_per_worker", gpus_per_worker)) if value]
        if extra:
            raise ConfigError(f"{', '.join(extra)} apply to engine='ray' only")
        return None
    if engine != "ray":
        raise ConfigError(f"unknown engine {engine!r}; choose local or ray")
    from kosearch.build.ray_cluster import RayOptions

    return RayOptions(address=ray_address, workers=workers,
                      gpus_per_worker=float(gpus_per_worker or 0.0))


def _driver_settings(settings: IndexSettings, engine: Any) -> IndexSettings:
    """On Ray, the driver's model only identifies the model (and encodes queries): CPU, fp32."""
    if engine is None:
        return settings
    return replace(settings, device="cpu", precision="fp32", processes=1)


def _make_run(engine: Any, *args: Any, model: str | None = None, **kwargs: Any) -> Run:
    """A local run, or with ``engine`` (RayOptions) one on a Ray cluster whose workers load
    ``model`` (None: the name of the encoder ``get_encoder`` gives)."""
    if engine is None:
        return Run(*args, **kwargs)
    from kosearch.build.ray_run import RayRun

    return RayRun(*args, **kwargs, ray=engine, model=model)


def update_settings(manifest: Manifest, options: dict[str, Any]) -> IndexSettings:
    """The settings of an update: the index's own, plus the few an update may change."""
    fixed = sorted(set(options) - set(UPDATE_OPTIONS))
    if fixed:
        raise ConfigError(
            f"an update cannot change {', '.join(fixed)}: the index keeps the settings it was "
            "built with; rebuild it to change them"
        )
    return replace(manifest.settings(), **{k: v for k, v in options.items() if v is not None})


def warn_unknown(report: UpdateReport) -> None:
    """Log the ids a delete asked for that the index does not hold."""
    if report.unknown:
        shown = ", ".join(report.unknown[:10])
        more = f" and {len(report.unknown) - 10} more" if len(report.unknown) > 10 else ""
        log.warning("%d id(s) are not in the index and were ignored: %s%s",
                    len(report.unknown), shown, more)


def _passage_encoder(
    manifest: Manifest, settings: IndexSettings, mine: Encoder | None, source: str | None
) -> Encoder:
    """An encoder for new passages: in the index's model and precision, checked."""
    if (
        mine is not None and hasattr(mine, "encode_passages")
        and getattr(mine, "precision", "fp32") == manifest.model.precision
    ):
        return mine
    encoder = load_encoder(source or manifest.model.name, settings)
    check_encoder(manifest.model, encoder)
    return encoder


def execute(run: Run, target: Path, *, restart: bool = False) -> UpdateReport:
    """Run ``run`` into ``target`` atomically, resuming an interrupted identical run.

    An update that changes nothing writes nothing (the index on disk stays as it is).
    """
    try:
        return _execute(run, target, restart)
    except Unchanged as nothing:
        return nothing.report


def _execute(run: Run, target: Path, restart: bool) -> UpdateReport:
    key = run_key(run, target)
    with contextlib.ExitStack() as stack:
        if key is None:  # stdin or Python objects: nothing to recognise a rerun by
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kosearch-")))
            work = Checkpoint.open(scratch / "work", {}, restart=True)
        else:
            work = Checkpoint.open(checkpoint_path(target), key, restart=restart)
        try:
            with atomic_directory(target, marker=MANIFEST_FILE) as tmp:
                _, report = run.execute(tmp, work)
        except Unchanged:
            work.discard()
            raise
        except KosearchError:
            if work.encoded == 0:
                work.discard()  # nothing costly to resume; a rerun starts clean
            raise
        work.discard()
    return report


def execute_update(
    run: Run, path: Path | None, *, restart: bool = False
) -> tuple[IndexParts, UpdateReport]:
    """Run an update into ``path`` (None: an in-memory index) and read the new parts."""
    from kosearch.storage.parts import read_parts

    base = run.base
    try:
        if path is None:
            with execute_in_scratch(run) as (scratch, report):
                return read_parts(scratch, mmap=False), report
        report = _execute(run, path, restart)
    except Unchanged as nothing:  # nothing was written: the parts in hand are the index
        if base is None:
            raise
        return base, nothing.report
    return read_parts(path), report


@contextlib.contextmanager
def execute_in_scratch(run: Run) -> Iterator[tuple[Path, UpdateReport]]:
    """Run ``run`` into a temporary index directory, removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="kosearch-") as tmp:
        out = Path(tmp) / "index"
        out.mkdir()
        _, report = run.execute(out, Checkpoint.open(Path(tmp) / "work", {}, restart=True))
        yield out, report


def run_key(run: Run, target: Path) -> dict[str, Any] | None:
    """What identifies a run for resuming: inputs, model, settings and the index it updates."""
    if run.mode is RunMode.DELETE:
        return None  # encodes nothing, so nothing to resume (and no other run's checkpoint to meet)
    stamps = getattr(run, "stamps", None)  # an engine that reads URIs stamps them itself
    sources = stamps() if stamps is not None else source_stamps(run.corpus)
    if sources is None:
        return None
    s = run.settings
    base = run.base.manifest if run.base is not None else None
    engine = getattr(run, "engine", "local")
    return {
        **({"engine": engine} if engine != "local" else {}),
        "mode": run.mode.value,
        "target": str(target.resolve()),
        "sources": sources,
        "model": base.model.fingerprint if base is not None else s.model,
        "prompts": [s.query_prompt, s.passage_prompt],
        "precision": s.precision,
        "chunking": asdict(s.chunking),
        "fields": asdict(s.fields),
        "strict": s.strict,
        "base": [base.created, base.updated, base.counts.get("passages")] if base else None,
    }


def source_stamps(corpus: Any) -> list[list[Any]] | None:
    """(path, size, mtime) of every corpus file; None when the corpus is not files on disk."""
    paths = [corpus] if isinstance(corpus, (str, os.PathLike)) else corpus
    if not isinstance(paths, (list, tuple)) or not paths:
        return None
    stamps: list[list[Any]] = []
    for item in paths:
        if not isinstance(item, (str, os.PathLike)) or os.fspath(item) == "-":
            return None
        path = Path(item)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            try:
                info = file.stat()
            except OSError:
                return None  # the reader reports a missing file properly
            stamps.append([str(file.resolve()), info.st_size, info.st_mtime_ns])
    return stamps


