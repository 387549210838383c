"""A build or update run whose reading, chunking, encoding and BM25 analysis run on Ray.

:class:`RayRun` is a :class:`~kosearch.build.run.Run` with the same result on disk. Pass 1 (a
Ray Data map over the corpus files, :func:`~kosearch.build.ray_tasks.scan_file`, or for a small
local corpus the driver itself) sends the driver each document's id, content hash and
metadata, and the driver applies the local rules (empty texts, duplicate ids, what an update
re-encodes) before any model loads. Pass 2 parses the files again on the workers, keeps the
documents to encode and hands them to a pool of :class:`~kosearch.build.ray_tasks.EncodeActor`
(``map_batches`` with a class: one model load per actor, ``num_gpus`` each, calls of up to a
local build's encoding window), while the driver loads its own copy of the model in a thread.
The driver streams the results (``iter_batches``,
blocks in corpus order) into shards in the run's checkpoint directory: ``shards/*.parquet``
(passages and their BM25 terms) and ``vectors.f32`` (:class:`~kosearch.build.checkpoint.
Checkpoint`), so an interrupted run resumes from the shards already written. The index
directory is then assembled by :mod:`kosearch.build.write` as for a local run, the BM25 part
from the workers' terms, and swapped in atomically by :mod:`kosearch.build.lifecycle`.

Ray restarts an actor whose process dies and retries its batch (Ray Data's actor pools run
with ``max_restarts=-1`` and ``max_task_retries=-1``); an error in the corpus stops the run with
its ``file:line``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import types
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from kosearch.build.checkpoint import Checkpoint
from kosearch.build.ray_cluster import (
    READ_CPUS,
    RayOptions,
    connect,
    disconnect,
    kosearch_cause,
    quiet_console,
)
from kosearch.build.ray_precision import COLUMNS_OF_PRECISION, encoded_precision, worker_precision
from kosearch.build.ray_shards import ShardSpool
from kosearch.build.ray_sources import SourceFile, resolve_sources
from kosearch.build.run import (
    ENCODE_WINDOW,
    Run,
    RunMode,
    Unchanged,
    _changes,
    _documents_of,
    _empty_update,
    _progress,
    _report,
    _report_documents,
)
from kosearch.build.source import sources_label
from kosearch.errors import CorpusError, ModelMismatchError
from kosearch.storage.manifest import Manifest, write_manifest

if TYPE_CHECKING:
    import pyarrow as pa

    from kosearch.encoding.encoder import Encoder
    from kosearch.types import Metric, UpdateReport

log = logging.getLogger(__name__)

SHARD_ROWS = 4096  # passages per checkpointed shard (the unit a resumed run keeps)
#: The largest corpus of several local files scanned on the driver (a few seconds of parsing,
#: as long as a Ray Data job takes to start).
LOCAL_SCAN_BYTES = 8 << 20


class Pretokenized:
    """An analyzer whose "texts" are the terms the workers found; it reports the real
    analyzer's config, which is what the index stores and queries are analyzed with."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config

    def tokenize(self, texts: Any) -> list[list[str]]:
        return [list(terms) for terms in texts]

    def config(self) -> dict[str, Any]:
        return dict(self._config)


def _same_model(table: pa.Table, encoder: Encoder) -> pa.Table:
    """``table`` without the fingerprint of the model its vectors came from (``model``; a
    table without it was checked before), which must be the driver's."""
    if "model" not in table.column_names:
        return table
    models = set(table.column("model").unique().to_pylist())
    if models != {encoder.fingerprint}:
        raise ModelMismatchError(
            f"a Ray worker loaded other weights for {encoder.name} than the driver "
            f"(fingerprint {', '.join(sorted(models - {encoder.fingerprint}))}, driver "
            f"{encoder.fingerprint}); give every node the same model files"
        )
    return table.drop_columns(["model"])


@dataclass
class RayRun(Run):
    """A :class:`Run` on a Ray cluster (see the module docs); ``ray`` says how."""

    ray: RayOptions = field(default_factory=RayOptions)
    model: str | None = None  # what the workers load; None: the driver's encoder's name
    engine: ClassVar[str] = "ray"
    _files: list[SourceFile] | None = field(default=None, init=False)
    _connected: bool = field(default=False, init=False)
    _started: bool = field(default=False, init=False)
    _shards: ShardSpool | None = field(default=None, init=False)
    _analyzer: dict[str, Any] | None = field(default=None, init=False)
    _precision: str | None = field(default=None, init=False)

    def check_corpus(self) -> None:
        """Check the corpus files and reach Ray, before any model loads."""
        if self.mode is RunMode.DELETE:
            return
        if self._files is None:
            self._files = resolve_sources(self.corpus)
        if not self._connected:
            self._started = connect(self.ray.address)
            self._connected = True

    def stamps(self) -> list[list[Any]]:
        """(file, size, mtime) of every corpus file, which keys the checkpoint."""
        if self._files is None:
            self._files = resolve_sources(self.corpus)
        stamps = []
        for f in self._files:
            info = f.filesystem.get_file_info(f.path)
            stamps.append([f.label if "://" in f.label else f.path, info.size, info.mtime_ns])
        return stamps

    def execute(self, directory: Path, work: Checkpoint) -> tuple[Manifest, UpdateReport]:
        try:
            self.check_corpus()
            with quiet_console():
                return self._execute(directory, work)
        except Unchanged:
            raise
        except Exception as error:
            cause = kosearch_cause(error)
            if cause is None or cause is error:
                raise
            raise cause.with_traceback(None) from None
        finally:
            disconnect(self._started)
            self._started = self._connected = False

    # ------------------------------------------------------------------ the passes
    def _read(self) -> Any:
        import ray.data

        files = self._files or []
        return ray.data.read_binary_files(
            [f.path for f in files], include_paths=True, filesystem=files[0].filesystem,
            num_cpus=READ_CPUS,
        )

    def _sources(self) -> dict[str, tuple[int, str, str]]:
        """Ray's ``path`` column -> (file number, label, format)."""
        out = {}
        for n, f in enumerate(self._files or []):
            for key in (f.path, f.path.lstrip("/")):
                out[key] = (n, f.label, f.fmt)
        return out

    def _execute(self, directory: Path, work: Checkpoint) -> tuple[Manifest, UpdateReport]:
        metric = self.settings.validated_metric()
        labels = sources_label(self.corpus)
        record = work.chunked
        if record is None or record.get("engine") != "ray":
            record = self._scan()
            if self.mode is RunMode.BUILD:
                _report_documents(types.SimpleNamespace(**record), None, labels, 0)
            elif record["skipped_empty"]:
                log.warning("skipped %d document(s) with an empty text", record["skipped_empty"])
            if self.mode is not RunMode.BUILD and not _changes(record) and not self._retyped():
                if record["documents"] == 0:
                    _empty_update(labels, self.settings.strict)
                raise Unchanged(_report(record, 0))
            work.mark_chunked(record)
        shards = self._shards = ShardSpool(work)
        resumed = shards.rows
        if shards.done:
            log.warning("resuming an interrupted run: %d of %d documents (%d passages) were "
                        "already encoded", shards.done, record["todo"], shards.rows)
        self._analyzer = self._analyzer_config()
        if shards.done < record["todo"]:
            self._encode(record, shards)
        if shards.done != record["todo"]:
            raise CorpusError(f"the Ray run encoded {shards.done} of {record['todo']} documents; "
                              "the corpus changed while it was read? run the command again")
        self._merge(work.path, shards)
        record = {**record, "passages": shards.rows}
        manifest = self._assemble(directory, work, record, metric)
        write_manifest(directory, manifest)
        return manifest, _report(record, resumed)

    def _scan(self) -> dict[str, Any]:
        """Pass 1: each document's fate, decided on the driver from ids and hashes only."""
        mode = self.mode
        known = _documents_of(self.base)
        files = self._files or []
        first_seen: dict[str, str] = {}
        drop: set[str] = set()
        metas: dict[str, str] = {}
        seen: set[str] = set()
        counts = dict.fromkeys(("added", "updated", "unchanged"), 0)
        todo = [0] * len(files)
        digests: list[str] = [""] * len(files)
        documents = skipped = 0
        last_file = 0
        for row in self._scan_rows():
            index, where, doc_id = row["file"], row["where"], row["id"]
            if index < last_file:
                raise RuntimeError("Ray returned the corpus files out of order")
            last_file = index
            if row["error"] is not None:
                raise CorpusError(row["error"])
            if doc_id is None:
                digests[index] = row["digest"]
                continue
            if row["empty"]:
                if self.settings.strict:
                    raise CorpusError(f"{where}: document {doc_id!r} has empty text "
                                      "(strict mode rejects empty documents)")
                skipped += 1
                continue
            first = first_seen.get(doc_id)
            if first is not None:
                raise CorpusError(f"{where}: duplicate id {doc_id!r} (first seen at {first})")
            first_seen[doc_id] = where
            documents += 1
            if mode is RunMode.SYNC:
                seen.add(doc_id)
            old = known.get(doc_id)
            if old is None:
                counts["added"] += 1
                todo[index] += 1
            elif mode is RunMode.ADD:
                raise CorpusError(
                    f"document {doc_id!r} is already in the index; use upsert (or "
                    "`kosearch index` on the index) to replace it"
                )
            elif old[0] != row["hash"]:
                counts["updated"] += 1
                drop.add(doc_id)
                todo[index] += 1
            else:
                counts["unchanged"] += 1
                if row["meta"] != old[1]:
                    metas[doc_id] = row["meta"]
        removed = [i for i in known if i not in seen] if mode is RunMode.SYNC else []
        drop.update(removed)
        first_rank = [sum(todo[:n]) for n in range(len(todo))]
        sha = digests[0] if len(digests) == 1 else hashlib.sha256(
            "\n".join(digests).encode("ascii")).hexdigest()
        return {
            "engine": "ray", "passages": sum(todo), "todo": sum(todo), "first_rank": first_rank,
            **counts, "deleted": len(removed), "unknown": [], "drop": sorted(drop),
            "metas": metas, "documents": documents, "skipped_empty": skipped, "sha256": sha,
        }

    def _scan_rows(self) -> Iterator[dict[str, Any]]:
        """The scan rows of every corpus file, in order (see
        :data:`~kosearch.build.ray_tasks.SCAN_COLUMNS`).

        A corpus on the driver's own disk of one file, or of at most :data:`LOCAL_SCAN_BYTES`,
        is scanned here: Ray Data would parse a file in one task too, after seconds of
        scheduling. Others are scanned by Ray Data tasks, a file each.
        """
        from kosearch.build.ray_tasks import scan_file, scan_local

        files = self._files or []
        if all(f.local for f in files) and (
            len(files) == 1 or sum(os.path.getsize(f.path) for f in files) <= LOCAL_SCAN_BYTES
        ):
            yield from scan_local([(f.label, f.fmt) for f in files], self.settings.fields)
            return
        ds = self._read().map_batches(
            scan_file, batch_size=1, batch_format="numpy", num_cpus=READ_CPUS,
            fn_kwargs={"sources": self._sources(), "fields": self.settings.fields},
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield from batch.to_pylist()

    def _encode(self, record: dict[str, Any], shards: ShardSpool) -> None:
        """Pass 2: chunk, encode and analyze on the actor pool; checkpoint shards as they come.

        The driver loads its own copy of the model (which the manifest and queries need) in a
        thread while the actors start; the actors' fingerprint, which every result carries,
        is checked against it before a shard is written.
        """
        import ray.data

        from kosearch.build.ray_cluster import call_size, pool_size
        from kosearch.build.ray_tasks import EncodeActor, documents_file

        workers, cpus, gpus = pool_size(self.ray)
        loading = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kosearch-model")
        driver = loading.submit(self.get_encoder)
        loading.shutdown(wait=False)
        device = self.settings.device or ("cuda" if gpus > 0 else "cpu")
        spec = {
            "model": self.model or driver.result().name, "device": device,
            "batch_size": self.settings.batch_size, "query_prompt": self.settings.query_prompt,
            "passage_prompt": self.settings.passage_prompt,
            "threads": max(1, round(cpus)), **self._worker_precision(device),
        }
        known = None
        if self.base is not None:
            known = {doc_id: digest for doc_id, (digest, _) in _documents_of(self.base).items()}
        per_call = self.ray.docs_per_call or call_size(record["todo"] - shards.done, workers,
                                                      ENCODE_WINDOW)
        log.info("encoding on Ray: %d actor(s), %.2g CPU and %g GPU each, %d documents a call",
                 workers, cpus, gpus, per_call)
        ds = self._read().map_batches(
            documents_file, batch_size=1, batch_format="numpy", num_cpus=READ_CPUS,
            fn_kwargs={"sources": self._sources(), "fields": self.settings.fields,
                       "known": known, "first_rank": record["first_rank"], "skip": shards.done},
        ).repartition(  # a file's documents become many blocks, so every actor gets some
            target_num_rows_per_block=per_call,
        ).map_batches(  # one call in flight per actor: a call waits for an idle actor
            EncodeActor, batch_size=per_call, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers, max_tasks_in_flight_per_actor=1),
            num_cpus=cpus, num_gpus=gpus or None,
            fn_constructor_kwargs={"spec": spec, "chunking": self.settings.chunking,
                                   "analyzer": self._analyzer},
        )  # Ray Data restarts a dead actor and retries its batch (max_restarts=-1 by default)
        pending: list[pa.Table] = []
        waiting = 0
        with _progress(None, "encoding on Ray", self.progress) as bar:  # type: ignore[arg-type]
            for block in ds.iter_batches(batch_size=None, batch_format="pyarrow",
                                         prefetch_batches=2):
                if block.num_rows == 0:
                    continue
                pending.append(block)
                waiting += block.num_rows
                bar.update(block.num_rows)
                if waiting >= SHARD_ROWS:
                    pending = self._flush(pending, shards, driver.result(), final=False)
                    waiting = sum(t.num_rows for t in pending)
            self._flush(pending, shards, driver.result(), final=True)

    @staticmethod
    def _flush(pending: list[pa.Table], shards: ShardSpool, encoder: Encoder,
               final: bool) -> list[pa.Table]:
        """Write the whole documents of ``pending`` as a shard; return what is left over."""
        import numpy as np
        import pyarrow as pa

        if not pending:
            return []
        table = pa.concat_tables([_same_model(t, encoder) for t in pending]).combine_chunks()
        ranks = np.asarray(table.column("rank").to_numpy())
        if ranks[0] < shards.done or (ranks.size > 1 and np.any(np.diff(ranks) < 0)):
            raise RuntimeError("Ray returned the passages out of order")
        cut = table.num_rows if final else int(np.searchsorted(ranks, ranks[-1]))
        if cut:
            shards.write(table.slice(0, cut), encoder.dim)
        return [table.slice(cut)] if cut < table.num_rows else []

    def _merge(self, spool: Path, shards: ShardSpool) -> None:
        """The shards' passages as the run's spool (``passages.parquet``) for the writer."""
        from kosearch.storage.passages import COLUMNS, PassageTable

        with PassageTable.writer(spool, typed=False) as writer:
            for table in shards.tables(list(COLUMNS)):
                writer.append_table(table)

    # ------------------------------------------------------------------ what the workers use
    def _worker_precision(self, device: str) -> dict[str, Any]:
        wanted = self.base.manifest.model.precision if self.base is not None else None
        spec = worker_precision(wanted or self.settings.precision, device)
        self._precision = None if spec["measure"] else spec["precision"]
        return spec

    def _analyzer_config(self) -> dict[str, Any] | None:
        """The BM25 analyzer the workers run (None: BM25 analyzed on the driver, or none)."""
        if not self.settings.lexical:
            return None
        base = self.base
        if base is not None:
            if base.lexical is None or not base.lexical.updatable:
                return None  # every passage is analyzed again, on the driver (write_lexical)
            return base.lexical.analyzer.config()
        from kosearch.lexical.analyzers import MorphemeAnalyzer

        return MorphemeAnalyzer().config()

    def _write_lexical(
        self, directory: Path, work: Checkpoint, keep: Any, record: dict[str, Any], n: int
    ) -> dict[str, Any]:
        from kosearch.lexical.bm25 import LexicalIndex
        from kosearch.storage.layout import LEXICAL_DIR

        if self._analyzer is None or self._shards is None:
            return super()._write_lexical(directory, work, keep, record, n)
        analyzer = Pretokenized(self._analyzer)
        terms = (t for table in self._shards.tables(["terms"])
                 for t in table.column("terms").to_pylist())
        base = self.base
        if base is not None and base.lexical is not None:
            lexical = base.lexical.updated(keep, terms, analyzer=analyzer)
        else:
            lexical = LexicalIndex.build(terms, analyzer=analyzer)
        lexical.save(directory / LEXICAL_DIR)
        return lexical.config()

    def _manifest(self, directory: Path, record: dict[str, Any], metric: Metric,
                  faiss_info: dict[str, Any], lexical: dict[str, Any] | None,
                  n_passages: int) -> Manifest:
        if self.base is None and self._chunker is None:
            self.chunker()  # the driver's chunker gives the budget the manifest records
        manifest = super()._manifest(directory, record, metric, faiss_info, lexical, n_passages)
        if self.base is None:
            shards = self._shards.tables_with(COLUMNS_OF_PRECISION) if self._shards else ()
            precision, calibration = encoded_precision(shards, self._precision)
            if precision is not None:
                manifest = replace(manifest, model=replace(
                    manifest.model, precision=precision, calibration=calibration))
        return manifest
