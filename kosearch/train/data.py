"""Training data for fine-tuning: retrieval questions with their relevant documents, or STS pairs.

Three layouts are read, each with errors that name the file and line at fault:

* a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``), read as
  ``kosearch eval retrieval`` reads it;
* a JSONL file of pairs: ``{"query": ..., "positive": ..., "negative": ...}`` (``negative``
  optional); every distinct passage becomes a document of a small corpus;
* STS pairs (the KorSTS layout ``kosearch eval sts`` reads), scores in ``[0, 5]``.

:func:`split_queries` holds out a seeded share of the questions (or STS pairs) for the
before/after evaluation.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kosearch.errors import ConfigError, DatasetError
from kosearch.eval.datasets import STS_FILES, BeirDataset, StsPairs, load_beir, load_sts
from kosearch.ingest.jsonl import read_jsonl, read_lines
from kosearch.types import Document

#: KorSTS's scale: 0 (unrelated) to 5 (equivalent); CosineSimilarityLoss learns score / 5.
STS_RANGE = (0.0, 5.0)
_QRELS_SPLITS = ("train", "dev", "test")


@dataclass
class RetrievalData:
    """Questions, the documents that answer them, and the corpus they come from.

    Attributes:
        source: The file or folder read.
        corpus: The corpus file (BEIR) or the documents built from the pairs.
        queries: Query id -> text, only queries with at least one positive.
        positives: Query id -> ids of its relevant documents (grade > 0).
        negatives: Query id -> texts of negatives given in the data (JSONL pairs only).
        skipped: Queries left out because nothing relevant is judged for them.
    """

    source: Path
    corpus: Path | list[Document]
    queries: dict[str, str]
    positives: dict[str, set[str]]
    negatives: dict[str, list[str]] = field(default_factory=dict)
    skipped: int = 0

    def subset(self, qids: list[str]) -> RetrievalData:
        """The same corpus with only the queries ``qids``."""
        return RetrievalData(
            self.source, self.corpus, {q: self.queries[q] for q in qids},
            {q: self.positives[q] for q in qids},
            {q: self.negatives[q] for q in qids if q in self.negatives}, 0,
        )

    def as_beir(self, corpus_path: Path) -> BeirDataset:
        """The queries as an evaluation dataset over ``corpus_path`` (for the eval runner)."""
        qrels = {q: dict.fromkeys(sorted(docs), 1) for q, docs in self.positives.items()}
        return BeirDataset(corpus_path, dict(self.queries), qrels, "held-out")


def load_training_data(path: str | os.PathLike[str]) -> RetrievalData | StsPairs:
    """Read retrieval or STS training data, deciding the kind from the layout.

    Raises:
        DatasetError: The path is missing, of an unknown layout, or malformed (file:line).
    """
    source = Path(path)
    if source.is_dir():
        if any((source / name).is_file() for name in ("corpus.jsonl", "corpus.jsonl.gz")):
            return load_beir_training(source)
        if any((source / name).is_file() for name in STS_FILES):
            return load_sts_training(source)
        raise DatasetError(
            f"'{source}' is neither a BEIR folder (corpus.jsonl, queries.jsonl, qrels/) nor an "
            f"STS folder ({', '.join(STS_FILES)})"
        )
    if not source.is_file():
        raise DatasetError(f"training data '{source}' does not exist")
    if source.suffix.lower() in (".tsv", ".txt"):
        return load_sts_training(source)
    first = next(iter(read_jsonl(source, error=DatasetError)), None)
    if first is None:
        raise DatasetError(f"{source}: the file holds no training pairs")
    _, record = first
    if isinstance(record, dict) and "sentence1" in record:
        return load_sts_training(source)
    return load_pairs(source)


def load_beir_training(directory: Path) -> RetrievalData:
    """A BEIR folder: qrels must name known queries and corpus documents (file:line)."""
    from kosearch.ingest.corpus import CorpusReader

    split = next((s for s in _QRELS_SPLITS if (directory / "qrels" / f"{s}.tsv").is_file()),
                 "test")
    data = load_beir(directory, split=split)
    doc_ids = {doc.id for doc in CorpusReader(data.corpus_path)}
    qrels_path = directory / "qrels" / f"{split}.tsv"
    unknown = [(q, d) for q, docs in data.qrels.items() for d in docs if d not in doc_ids]
    if unknown:
        line = _qrels_line(qrels_path, *unknown[0])
        raise DatasetError(
            f"{qrels_path}:{line}: corpus id {unknown[0][1]!r} is not in "
            f"{data.corpus_path.name} ({len(unknown)} judgment(s) name unknown documents)"
        )
    positives = {q: {d for d, grade in docs.items() if grade > 0} for q, docs in data.qrels.items()}
    kept = {q: docs for q, docs in positives.items() if docs}
    queries = {q: data.queries[q] for q in kept}
    skipped = data.unjudged_queries + len(positives) - len(kept)
    return RetrievalData(directory, data.corpus_path, queries, kept, {}, skipped)


def _qrels_line(path: Path, qid: str, doc_id: str) -> int:
    """The line of ``path`` that judges ``doc_id`` for ``qid`` (for the error message)."""
    for number, line in read_lines(path, error=DatasetError):
        fields = [f.strip() for f in (line.split("\t") if "\t" in line else line.split())]
        if fields and fields[0] == qid and doc_id in fields[1:3]:
            return number
    return 0


def load_pairs(path: Path) -> RetrievalData:
    """JSONL ``{"query", "positive", "negative"?}`` lines; one query may have several lines."""
    texts: dict[str, str] = {}  # passage text -> document id
    queries: dict[str, str] = {}  # query text -> query id
    positives: dict[str, set[str]] = {}
    negatives: dict[str, list[str]] = {}
    skipped = 0
    for number, record in read_jsonl(path, error=DatasetError):
        where = f"{path}:{number}"
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected a JSON object with 'query' and 'positive'")
        values = {key: record.get(key) for key in ("query", "positive", "negative")}
        for key, value in values.items():
            if value is not None and not isinstance(value, str):
                raise DatasetError(f"{where}: field {key!r} must be a string, found {value!r}")
        query, positive = (values["query"] or "").strip(), (values["positive"] or "").strip()
        if not query:
            raise DatasetError(f"{where}: missing field 'query' (found: {', '.join(record)})")
        if not positive:  # a question without an answer teaches nothing
            skipped += 1
            continue
        qid = queries.setdefault(query, f"q{len(queries)}")
        positives.setdefault(qid, set()).add(texts.setdefault(positive, f"p{len(texts)}"))
        negative = (values["negative"] or "").strip()
        if negative:
            texts.setdefault(negative, f"p{len(texts)}")
            negatives.setdefault(qid, []).append(negative)
    if not positives:
        raise DatasetError(f"{path}: no line has both a 'query' and a 'positive'")
    corpus = [Document(id=doc_id, text=text) for text, doc_id in texts.items()]
    by_id = {qid: text for text, qid in queries.items() if qid in positives}
    skipped += len(queries) - len(by_id)
    return RetrievalData(path, corpus, by_id, positives, negatives, skipped)


def load_sts_training(path: Path) -> StsPairs:
    """STS pairs as ``eval sts`` reads them, with every score inside :data:`STS_RANGE`."""
    pairs = load_sts(path)
    low, high = STS_RANGE
    for i, score in enumerate(pairs.scores):
        if not low <= score <= high:
            where = pairs.where[i] if i < len(pairs.where) else f"{path} pair {i + 1}"
            raise DatasetError(
                f"{where}: score {score:g} is outside the STS range {low:g}-{high:g}"
            )
    return pairs


def split_queries(ids: list[Any], share: float, seed: int) -> tuple[list[Any], list[Any]]:
    """``(train, held_out)``: a seeded ``share`` of ``ids`` held out (at least one when
    ``share > 0`` and there are two or more ids), both in their original order."""
    if not 0 <= share < 1:
        raise ConfigError(f"the held-out share must be in [0, 1), got {share}")
    count = round(len(ids) * share)
    if share > 0 and len(ids) > 1:
        count = min(max(count, 1), len(ids) - 1)
    held = set(random.Random(seed).sample(range(len(ids)), count))
    train = [x for i, x in enumerate(ids) if i not in held]
    return train, [x for i, x in enumerate(ids) if i in held]


def sts_subset(pairs: StsPairs, rows: list[int]) -> StsPairs:
    """The pairs at ``rows``."""
    return StsPairs([pairs.sentences1[i] for i in rows], [pairs.sentences2[i] for i in rows],
                    [pairs.scores[i] for i in rows])
