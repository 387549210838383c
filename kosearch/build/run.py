"""Indexing runs: build an index from a corpus, or update one, streaming, resumable.

A run makes two passes over a spool in its work directory (:mod:`kosearch.build.checkpoint`): pass 1
reads the documents, compares each with the index being updated (by content hash) and chunks
only the new and changed ones into ``passages.parquet``, so no corpus text stays in memory;
pass 2 encodes the spooled passages window by window, checkpointing the vectors on disk, so an
interrupted run resumes. Then :mod:`kosearch.build.write` writes the complete new index into a
temporary directory that replaces the target only when complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from kosearch._batched import batched
from kosearch._version import __version__
from kosearch.build.checkpoint import Checkpoint
from kosearch.build.source import DocumentSource, sources_label
from kosearch.errors import CorpusError
from kosearch.ingest.chunk import Chunker
from kosearch.ingest.sentences import SentenceSplitter
from kosearch.ingest.tokens import TokenCounter
from kosearch.settings import IndexSettings
from kosearch.storage.layout import PASSAGES_FILE
from kosearch.storage.manifest import Manifest, ModelInfo, now_iso, write_manifest
from kosearch.storage.passages import encode_meta
from kosearch.types import Document, Metric, Passage, UpdateReport, join_title

if TYPE_CHECKING:
    from kosearch.encoding.encoder import Encoder
    from kosearch.storage.parts import IndexParts

log = logging.getLogger(__name__)

DOC_BATCH = 256  # documents chunked per kiwi/tokenizer batch call
ENCODE_WINDOW = 2048  # passages length-sorted and encoded together


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, unit=" passages", file=sys.stderr, disable=not enabled,
        dynamic_ncols=True, smoothing=0.1,
    )


def content_hash(doc: Document) -> str:
    """What decides whether an update re-encodes a document: a digest of its title and text."""
    data = json.dumps([doc.title, doc.text], ensure_ascii=False).encode("utf-8")
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class RunMode(str, Enum):
    """How the corpus of a run relates to the index it writes."""

    BUILD = "build"  # a new index from the corpus alone
    ADD = "add"  # new documents only; an id already in the index is an error
    UPSERT = "upsert"  # add new documents, re-encode changed ones, keep the rest
    SYNC = "sync"  # upsert, and delete the documents the corpus no longer has
    DELETE = "delete"  # remove documents by id; no corpus


def _spool_passages(
    work: Checkpoint,
    source: DocumentSource | None,
    base: IndexParts | None,
    mode: RunMode,
    delete_ids: Sequence[str],
    get_chunker: Callable[[], Chunker],
) -> dict[str, Any]:
    """Pass 1: decide each document's fate and chunk those to encode into the spool."""
    from kosearch.storage.passages import PassageTable

    known = _documents_of(base)
    drop: set[str] = set()
    metas: dict[str, str] = {}
    seen: set[str] = set()
    counts = dict.fromkeys(("added", "updated", "unchanged"), 0)
    with PassageTable.writer(work.path, typed=False) as writer:
        for docs in batched(source if source is not None else (), DOC_BATCH):
            todo: list[Document] = []
            digests: dict[str, str] = {}
            for doc in docs:
                if mode is RunMode.SYNC:
                    seen.add(doc.id)
                digest = digests[doc.id] = content_hash(doc)
                old = known.get(doc.id)
                if old is None:
                    counts["added"] += 1
                    todo.append(doc)
                elif mode is RunMode.ADD:
                    raise CorpusError(
                        f"document {doc.id!r} is already in the index; use upsert (or "
                        "`kosearch index` on the index) to replace it"
                    )
                elif old[0] != digest:
                    counts["updated"] += 1
                    drop.add(doc.id)
                    todo.append(doc)
                else:
                    counts["unchanged"] += 1
                    meta = encode_meta(doc.meta, doc.id)
                    if meta != old[1]:
                        metas[doc.id] = meta
            if todo:
                chunker = get_chunker()
                passages = chunker.chunk(todo)
                by_id = {doc.id: (doc.meta, digests[doc.id]) for doc in todo}
                writer.append(
                    passages, [by_id[p.doc_id][0] for p in passages],
                    [by_id[p.doc_id][1] for p in passages],
                )
        n_passages = writer.close()
    unknown = [i for i in dict.fromkeys(delete_ids) if i not in known]
    removed = [i for i in dict.fromkeys(delete_ids) if i in known]
    if mode is RunMode.SYNC:
        removed += [i for i in known if i not in seen]
    drop.update(removed)
    return {
        "passages": n_passages, **counts, "deleted": len(removed), "unknown": unknown,
        "drop": sorted(drop), "metas": metas,
        "documents": source.documents if source is not None else 0,
        "skipped_empty": source.skipped_empty if source is not None else 0,
        "sha256": source.sha256() if source is not None else None,
    }


def _documents_of(base: IndexParts | None) -> dict[str, tuple[str, str]]:
    """doc id -> (content hash, meta JSON) of every document in ``base``."""
    if base is None:
        return {}
    table = base.passages.table
    columns = [table.column(c).to_pylist() for c in ("doc_id", "hash", "meta")]
    return {doc_id: (digest, meta) for doc_id, digest, meta in zip(*columns)}


def _encode_spool(
    work: Checkpoint, encoder: Encoder, chunker: Chunker, total: int, progress: bool
) -> None:
    """Pass 2: encode the spooled passages not yet checkpointed, one window at a time."""
    done = work.encoded
    with _progress(total, "encoding", progress) as bar:
        bar.update(done)
        for texts in _encode_texts(work.path, chunker, skip=done):
            work.append_vectors(encoder.encode_passages(texts, on_batch=bar.update))


def _encode_texts(directory: Path, chunker: Chunker | None, skip: int = 0) -> Iterator[list[str]]:
    """Windows of encoder input texts (BM25 texts without a chunker), from row ``skip``."""
    import pyarrow.parquet as pq

    columns = ["doc_id", "chunk", "text", "start", "end", "title"]
    spool = pq.ParquetFile(directory / PASSAGES_FILE)
    for batch in spool.iter_batches(batch_size=ENCODE_WINDOW, columns=columns):
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        rows = batch.slice(skip).to_pydict()
        skip = 0
        if chunker is None:  # for BM25: the title (untruncated) and the text
            yield [join_title(t, x) for t, x in zip(rows["title"], rows["text"])]
        else:
            yield [
                chunker.encode_text(Passage(*values))
                for values in zip(*(rows[c] for c in columns))
            ]


@dataclass
class Run:
    """One indexing run: what to read, what it updates, and how to reach the model.

    ``get_encoder`` is called only when some passage needs encoding (a delete, or an update
    that changes nothing, never loads the model).
    """

    corpus: Any
    settings: IndexSettings
    get_encoder: Callable[[], Encoder]
    mode: RunMode = RunMode.BUILD
    base: IndexParts | None = None
    delete_ids: Sequence[str] = ()
    progress: bool = False
    stdin: TextIO | None = None
    _chunker: Chunker | None = field(default=None, init=False)
    _splitter: SentenceSplitter | None = field(default=None, init=False)
    _source: DocumentSource | None = field(default=None, init=False)

    def check_corpus(self) -> None:
        """Open the corpus and read its first documents, before any model loads.

        A missing file, an unknown format, malformed first records, a missing field or (for a
        build) a corpus without documents fail here; the documents read are kept for the run.
        """
        if self.mode is RunMode.DELETE or self._source is not None:
            return
        self._source = DocumentSource(self.corpus, self.settings, self.stdin)
        self._source.peek()
        if self._source.empty and self.mode is RunMode.BUILD:
            _report_documents(self._source, None, sources_label(self.corpus), 0)

    def chunker(self) -> Chunker:
        if self._chunker is None:
            encoder = self.get_encoder()
            counter = TokenCounter(
                encoder.backend_tokenizer, max_tokens=encoder.max_tokens,
                prompt=encoder.passage_prompt,
            )
            # one Kiwi for sentence splitting and BM25 (~300 MB each)
            if self._splitter is None:
                self._splitter = SentenceSplitter()
            self._chunker = Chunker(counter, self.settings.chunking, splitter=self._splitter)
        return self._chunker

    def _retyped(self) -> bool:
        """Whether this update asks for another vector index type than the index has."""
        base = self.base.manifest.settings() if self.base is not None else None
        return base is not None and self.settings.index_type != base.index_type

    def _kiwi(self) -> Any:
        """The chunker's Kiwi, loaded only when asked for (BM25 needs one)."""
        if self._splitter is None:
            self._splitter = SentenceSplitter()
        return self._splitter.kiwi

    def execute(self, directory: Path, work: Checkpoint) -> tuple[Manifest, UpdateReport]:
        """Chunk, encode and assemble into ``directory`` (an empty, private directory)."""
        metric = self.settings.validated_metric()
        record = work.chunked
        if record is None:
            self.check_corpus()
            source = self._source
            record = _spool_passages(
                work, source, self.base, self.mode, self.delete_ids, self.chunker
            )
            if source is not None and self.mode is RunMode.BUILD:
                max_tokens = self.get_encoder().max_tokens if self._chunker is not None else 0
                _report_documents(source, self._chunker, sources_label(self.corpus), max_tokens)
            elif record["skipped_empty"]:
                log.warning("skipped %d document(s) with an empty text", record["skipped_empty"])
            if self.mode is not RunMode.BUILD and not _changes(record) and not self._retyped():
                if source is not None and source.documents == 0:
                    _empty_update(sources_label(self.corpus), self.settings.strict)
                raise Unchanged(_report(record, 0))
            work.mark_chunked(record)
        resumed = work.encoded
        if resumed:
            log.warning("resuming an interrupted run: %d of %d passages were already encoded",
                        resumed, record["passages"])
        if work.encoded < record["passages"]:
            encoder, total = self.get_encoder(), record["passages"]
            _encode_spool(work, encoder, self.chunker(), total, self.progress)
        manifest = self._assemble(directory, work, record, metric)
        write_manifest(directory, manifest)
        return manifest, _report(record, resumed)

    def _assemble(
        self, directory: Path, work: Checkpoint, record: dict[str, Any], metric: Metric
    ) -> Manifest:
        from kosearch.build import write as assemble
        from kosearch.storage.ann import plan_index

        base = self.base
        keep = assemble.kept_rows(base, set(record["drop"]))
        n = assemble.write_passages(directory, base, keep, record["metas"], work.path)
        if n == 0:
            raise CorpusError("the index would hold no documents; delete the directory instead")
        dim = base.manifest.model.dim if base is not None else self.get_encoder().dim
        plan = plan_index(self.settings.index_type, n, dim)
        with _progress(n, "vectors", self.progress and n > 100_000) as bar:
            faiss_info = assemble.write_vectors(
                directory, work.path, base, keep, work.vectors(dim), metric.value, plan,
                on_rows=bar.update,
            )
        lexical = None
        if self.settings.lexical:
            lexical = self._write_lexical(directory, work, keep, record, n)
        return self._manifest(directory, record, metric, faiss_info, lexical, n)

    def _write_lexical(
        self, directory: Path, work: Checkpoint, keep: Any, record: dict[str, Any], n: int
    ) -> dict[str, Any]:
        """Write the BM25 part of the new index (the kept rows' terms plus the new passages)."""
        from kosearch.build import write as assemble

        base = self.base
        reuse = base is not None and base.lexical is not None and base.lexical.updatable
        with _progress(record["passages"] if reuse else n, "BM25", self.progress) as bar:
            return assemble.write_lexical(
                directory, base, keep,
                (t for w in _encode_texts(work.path, None) for t in w),
                lambda: (t for w in _encode_texts(directory, None) for t in w),
                self._kiwi,
                on_batch=bar.update,
            )

    def _manifest(
        self,
        directory: Path,
        record: dict[str, Any],
        metric: Metric,
        faiss_info: dict[str, Any],
        lexical: dict[str, Any] | None,
        n_passages: int,
    ) -> Manifest:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        from kosearch.storage.metadata import schema_of

        doc_ids = pq.read_table(directory / PASSAGES_FILE, columns=["doc_id"]).column("doc_id")
        fields_schema = schema_of(pq.read_schema(directory / PASSAGES_FILE))
        stamp = now_iso()
        base = self.base.manifest if self.base is not None else None
        if base is not None:
            model = base.model
            chunking = base.chunking
        else:
            encoder = self.get_encoder()
            model = ModelInfo(
                name=encoder.name, dim=encoder.dim, fingerprint=encoder.fingerprint,
                max_tokens=encoder.max_tokens, query_prompt=encoder.query_prompt,
                passage_prompt=encoder.passage_prompt,
                precision=getattr(encoder, "precision", "fp32"),
                calibration=_calibration(encoder),
            )
            budget = self._chunker.budget if self._chunker is not None else None
            chunking = {**asdict(self.settings.chunking), "budget": budget}
        skipped = record["skipped_empty"] + (base.counts.get("skipped_empty", 0) if base else 0)
        corpus = (
            dict(base.corpus) if base is not None and self.mode is RunMode.DELETE
            else {"sources": sources_label(self.corpus), "sha256": record["sha256"]}
        )
        return Manifest(
            model=model, metric=metric.value, faiss=faiss_info,
            counts={
                "documents": int(pc.count_distinct(doc_ids).as_py()), "passages": n_passages,
                "skipped_empty": skipped,
            },
            chunking=chunking, lexical=lexical, fields=asdict(self.settings.fields),
            corpus=corpus, created=base.created if base is not None else stamp, updated=stamp,
            kosearch_version=__version__, metadata=fields_schema,
        )


class Unchanged(Exception):  # noqa: N818 - a signal, not an error
    """An update changes nothing: nothing is written; ``report`` says what was read."""

    def __init__(self, report: UpdateReport) -> None:
        super().__init__("the update changes nothing")
        self.report = report


def _changes(record: dict[str, Any]) -> bool:
    """Whether the pass-1 ``record`` of an update changes the index at all."""
    return bool(record["passages"] or record["updated"] or record["deleted"] or record["metas"])


def _empty_update(labels: list[str], strict: bool) -> None:
    what = ", ".join(labels)
    if strict:
        raise CorpusError(f"no documents in {what}; the index is unchanged (strict mode "
                          "rejects an empty corpus)")
    log.warning("no documents in %s; nothing to update, the index is unchanged", what)


def _report(record: dict[str, Any], resumed: int) -> UpdateReport:
    return UpdateReport(
        added=record["added"], updated=record["updated"], unchanged=record["unchanged"],
        deleted=record["deleted"], unknown=tuple(record["unknown"]),
        skipped_empty=record["skipped_empty"], encoded=record["passages"] - resumed,
        resumed=resumed,
    )


def _report_documents(
    source: DocumentSource, chunker: Chunker | None, labels: list[str], max_tokens: int
) -> None:
    if source.documents == 0:
        what = ", ".join(labels)
        extra = f" ({source.skipped_empty} had an empty text)" if source.skipped_empty else ""
        raise CorpusError(f"no documents to index in {what}{extra}")
    if source.skipped_empty:
        log.warning("skipped %d document(s) with an empty text (use --strict to fail instead)",
                    source.skipped_empty)
    if chunker is None:
        return
    stats = chunker.stats
    if stats.over_limit:
        log.warning(
            "%d document(s) are longer than the model's %d-token limit and will be truncated by "
            "the model; drop --no-chunk to split them into passages instead",
            stats.over_limit, max_tokens,
        )
    if stats.sentences_split:
        log.info("%d sentence(s) longer than the passage budget were split at token boundaries",
                 stats.sentences_split)


def _calibration(encoder: Any) -> dict[str, Any]:
    """The record of what ``auto`` measured for ``encoder``, or ``{}``."""
    calibration = getattr(encoder, "calibration", None)
    return calibration.summary() if calibration is not None else {}
