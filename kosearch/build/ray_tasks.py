"""What the Ray workers of the ``ray`` engine run: parse corpus files, chunk, encode, analyze.

Ray Data reads each corpus file's bytes (``read_binary_files``: local paths and any URI
pyarrow's filesystems understand). The bytes are parsed here by kosearch's own readers
(:func:`kosearch.ingest.formats.read_records` and :func:`kosearch.ingest.records.to_document`,
on a private copy of the file) rather than by Ray's JSON or CSV readers, so the field rules and
every ``file:line`` error are those of a local build, word for word. A file is parsed whole by
one task; shard a large corpus over many files.

Two passes use the parser: :func:`scan_file` gives the driver each document's id, content hash
and metadata (no text) to decide what to encode (:func:`scan_local` the same on the driver, for
a small corpus on its own disk); :func:`documents_file` gives the documents to
encode, numbered by ``rank`` (their order among the documents to encode), to
:class:`EncodeActor`, which chunks, encodes and analyzes them for BM25 with one model and one
Kiwi per actor.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any

from kosearch.errors import CorpusError
from kosearch.ingest.formats import read_records
from kosearch.ingest.records import to_document
from kosearch.settings import ChunkSettings, Fields
from kosearch.types import Document, join_title

#: Columns of a scan row: one per record, plus one closing row per file (``id`` null) that
#: carries the file's SHA-256, or its first error (a message: Ray keeps an exception's text
#: but not its cause, so errors travel as data).
SCAN_COLUMNS = ("file", "where", "id", "hash", "meta", "empty", "digest", "error")
DOC_COLUMNS = ("rank", "id", "text", "title", "meta", "hash")


def parse(data: bytes, label: str, fmt: str, fields: Fields) -> tuple[list[tuple[str, Document]],
                                                                       str]:
    """``(location, Document)`` of every record of one file's bytes, and the file's SHA-256.

    ``label`` is the file as the user named it: it starts every location and error message.
    """
    suffix = {"jsonl.gz": ".jsonl.gz"}.get(fmt, "." + fmt)
    with tempfile.TemporaryDirectory(prefix="kosearch-ray-") as tmp:
        local = os.path.join(tmp, "corpus" + suffix)
        with open(local, "wb") as stream:
            stream.write(data)
        try:
            found, digest = read_file(local, fmt, fields)
        except CorpusError as error:
            raise CorpusError(str(error).replace(local, label)) from None
    return [(label + where[len(local):], doc) for where, doc in found], digest


def read_file(path: str, fmt: str, fields: Fields) -> tuple[list[tuple[str, Document]], str]:
    """``(location, Document)`` of every record of the file at ``path``, and its SHA-256."""
    digest = hashlib.sha256()
    found = [(where, to_document(record, fields, where))
             for where, record in read_records(path, fmt, fields, digest)]
    return found, digest.hexdigest()


def scan_file(batch: Any, *, sources: Mapping[str, tuple[int, str, str]],
              fields: Fields) -> dict[str, list[Any]]:
    """Pass 1 (a Ray Data map over ``read_binary_files`` rows): what the driver decides on."""
    out: dict[str, list[Any]] = {name: [] for name in SCAN_COLUMNS}
    for data, path in zip(batch["bytes"], batch["path"]):
        index, label, fmt = sources[path]
        for row in _scan_rows(index, label, partial(parse, bytes(data), label, fmt, fields)):
            for name, value in zip(SCAN_COLUMNS, row):
                out[name].append(value)
    return out


def scan_local(files: Sequence[tuple[str, str]], fields: Fields) -> Iterator[dict[str, Any]]:
    """Pass 1 on the driver, for ``(label, format)`` files on its own disk: the rows of
    :func:`scan_file`, one at a time."""
    for index, (label, fmt) in enumerate(files):
        for row in _scan_rows(index, label, partial(read_file, label, fmt, fields)):
            yield dict(zip(SCAN_COLUMNS, row))


def _scan_rows(index: int, label: str,
               read: Callable[[], tuple[list[tuple[str, Document]], str]]) -> list[tuple[Any, ...]]:
    """The scan rows of one file (see :data:`SCAN_COLUMNS`)."""
    from kosearch.build.run import content_hash
    from kosearch.storage.passages import encode_meta

    try:
        docs, digest = read()
    except CorpusError as error:
        return [(index, label, None, None, None, None, None, str(error))]
    rows: list[tuple[Any, ...]] = [
        (index, where, doc.id, content_hash(doc), encode_meta(doc.meta, doc.id),
         not doc.text.strip(), None, None)
        for where, doc in docs
    ]
    rows.append((index, label, None, None, None, None, digest, None))
    return rows


def documents_file(batch: Any, *, sources: Mapping[str, tuple[int, str, str]], fields: Fields,
                   known: Mapping[str, str] | None, first_rank: Sequence[int],
                   skip: int) -> dict[str, list[Any]]:
    """Pass 2: the documents to encode (non-empty, new or changed) from rank ``skip`` on."""
    from kosearch.build.run import content_hash
    from kosearch.storage.passages import encode_meta

    out: dict[str, list[Any]] = {name: [] for name in DOC_COLUMNS}
    for data, path in zip(batch["bytes"], batch["path"]):
        index, label, fmt = sources[path]
        docs, _ = parse(bytes(data), label, fmt, fields)
        rank = first_rank[index]
        for _, doc in docs:
            if not doc.text.strip():
                continue
            digest = content_hash(doc)
            if known is not None and known.get(doc.id) == digest:
                continue
            if rank >= skip:
                row = (rank, doc.id, doc.text, doc.title, encode_meta(doc.meta, doc.id), digest)
                for name, value in zip(DOC_COLUMNS, row):
                    out[name].append(value)
            rank += 1
    return out


class EncodeActor:
    """One model, one tokenizer and one Kiwi per actor; each call turns documents into passages
    with their vectors and (with BM25) their terms.

    Args:
        spec: ``model``, ``device``, ``batch_size``, ``query_prompt``, ``passage_prompt``,
            ``precision``, ``measure`` (whether ``auto`` measures on this node),
            ``threads``. Every result carries the model's fingerprint (``model``), which the
            driver checks against its own, the precision its vectors were encoded in
            (``precision``) and, in a call's first row, what ``auto`` measured
            (``calibration``, JSON, or null).
        chunking: The run's chunk settings.
        analyzer: The BM25 analyzer's config (``None``: no BM25 part).
    """

    def __init__(self, spec: Mapping[str, Any], chunking: ChunkSettings,
                 analyzer: Mapping[str, Any] | None) -> None:
        import torch

        from kosearch.encoding.encoder import SentenceTransformerEncoder
        from kosearch.ingest.chunk import Chunker
        from kosearch.ingest.sentences import SentenceSplitter
        from kosearch.ingest.tokens import TokenCounter

        threads = max(1, int(spec["threads"]))
        torch.set_num_threads(threads)
        self.encoder = SentenceTransformerEncoder(
            spec["model"], device=spec["device"], batch_size=spec["batch_size"],
            query_prompt=spec["query_prompt"], passage_prompt=spec["passage_prompt"],
            precision=spec["precision"], processes=1, measure=spec.get("measure"),
        )
        calibration = self.encoder.calibration
        self.calibration = (json.dumps(calibration.summary(), sort_keys=True)
                            if calibration is not None else None)
        counter = TokenCounter(self.encoder.backend_tokenizer, max_tokens=self.encoder.max_tokens,
                               prompt=self.encoder.passage_prompt)
        self.splitter = SentenceSplitter(num_workers=threads)
        self.chunker = Chunker(counter, chunking, splitter=self.splitter)
        self.analyzer = _analyzer(analyzer, self.splitter, threads) if analyzer else None

    def __call__(self, batch: Any) -> Any:
        import numpy as np
        import pyarrow as pa

        from kosearch.storage.passages import passage_columns

        rows = batch.to_pydict()
        docs = [Document(id=i, text=t, title=h) for i, t, h in
                zip(rows["id"], rows["text"], rows["title"])]
        of = {doc_id: n for n, doc_id in enumerate(rows["id"])}
        passages = self.chunker.chunk(docs)
        vectors = self.encoder.encode_passages([self.chunker.encode_text(p) for p in passages])
        at = [of[p.doc_id] for p in passages]
        columns: dict[str, Any] = {
            **passage_columns(passages),
            "meta": [rows["meta"][i] for i in at],
            "hash": [rows["hash"][i] for i in at],
            "rank": pa.array([rows["rank"][i] for i in at], pa.int64()),
            "model": pa.array([self.encoder.fingerprint] * len(at), pa.string()),
            "precision": pa.array([self.encoder.precision] * len(at), pa.string()),
            "calibration": pa.array([self.calibration if i == 0 else None for i in range(len(at))],
                                    pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1)),
                vectors.shape[1] if vectors.ndim == 2 else self.encoder.dim,
            ),
        }
        if self.analyzer is not None:
            texts = [join_title(p.title, p.text) for p in passages]
            columns["terms"] = pa.array(self.analyzer.tokenize(texts), pa.list_(pa.string()))
        return pa.table(columns)


def _analyzer(config: Mapping[str, Any], splitter: Any, threads: int) -> Any:
    """The BM25 analyzer of ``config``, sharing the chunker's Kiwi where its dictionaries match
    (as a local build does)."""
    from kosearch.lexical.analyzers import MorphemeAnalyzer, analyzer_from_config
    from kosearch.lexical.kiwi import DEFAULT_DICTS

    analyzer = analyzer_from_config(config, num_workers=threads)
    if isinstance(analyzer, MorphemeAnalyzer) and analyzer.dicts == DEFAULT_DICTS:
        return MorphemeAnalyzer(analyzer.tags, kiwi=splitter.kiwi)
    return analyzer
