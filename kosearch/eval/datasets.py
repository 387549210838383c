"""Evaluation datasets: BEIR retrieval folders and STS sentence pairs, with clear errors.

The loaders read the whole (small) evaluation files and raise :class:`DatasetError` naming the
file and line of anything malformed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kosearch.errors import DatasetError
from kosearch.ingest.jsonl import read_jsonl, read_lines

STS_FILES: tuple[str, ...] = ("pairs.tsv", "pairs.jsonl", "sts-dev.tsv")
_STS_FIELDS = ("sentence1", "sentence2", "score")


@dataclass(frozen=True)
class BeirDataset:
    """A retrieval test set in the BEIR layout.

    Attributes:
        corpus_path: ``corpus.jsonl`` (or ``corpus.jsonl.gz``) to index; read by the corpus reader.
        queries: Query id -> text, only for queries that have judgments in ``qrels``.
        qrels: Query id -> {corpus id -> graded relevance}; a score <= 0 means not relevant.
        split: The qrels split that was loaded (``qrels/<split>.tsv``).
        unjudged_queries: How many queries of ``queries.jsonl`` were ignored for lack of qrels.
    """

    corpus_path: Path
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    split: str
    unjudged_queries: int = 0


@dataclass(frozen=True)
class StsPairs:
    """Sentence pairs with gold similarity scores (KorSTS: 0 = unrelated ... 5 = equivalent)."""

    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]
    #: "file:line" of each pair, for messages about one of them
    where: list[str] = dataclasses.field(default_factory=list, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.scores)


def load_beir(directory: str | os.PathLike[str], *, split: str = "test") -> BeirDataset:
    """Load a BEIR folder: ``corpus.jsonl[.gz]``, ``queries.jsonl[.gz]`` and ``qrels/<split>.tsv``.

    Queries are JSON objects with ``_id`` (or ``id``) and ``text``. The qrels file holds
    tab-separated ``query-id``, ``corpus-id`` and integer ``score`` columns with an optional header
    line (four-column TREC qrels ``qid iter docid rel`` are read too). Queries without qrels are
    left out and counted in ``unjudged_queries``; the corpus is only located, not read.

    Args:
        directory: The dataset folder.
        split: Which qrels file to use.

    Returns:
        The dataset.

    Raises:
        DatasetError: A file is missing or malformed (the message names the file and line), a
            qrels query id has no query, or the qrels file is empty.

    Example:
        >>> data = load_beir("korquad_v1_retrieval_dev")  # doctest: +SKIP
        >>> len(data.queries), data.corpus_path.name  # doctest: +SKIP
        (2844, 'corpus.jsonl')
    """
    root = Path(directory)
    layout = f"expected corpus.jsonl, queries.jsonl and qrels/{split}.tsv inside"
    if not root.is_dir():
        raise DatasetError(f"no BEIR dataset at '{root}': the folder does not exist ({layout})")
    corpus = _first_file(root, ("corpus.jsonl", "corpus.jsonl.gz"))
    queries_path = _first_file(root, ("queries.jsonl", "queries.jsonl.gz"))
    qrels_path = root / "qrels" / f"{split}.tsv"
    found = {"corpus.jsonl": corpus, "queries.jsonl": queries_path}
    missing = [name for name, file in found.items() if file is None]
    if not qrels_path.is_file():
        missing.append(f"qrels/{split}.tsv{_available_splits(root)}")
    if corpus is None or queries_path is None or missing:
        raise DatasetError(
            f"'{root}' is not a complete BEIR dataset: missing {', '.join(missing)} ({layout})"
        )
    qrels = _read_qrels(qrels_path)
    queries, unjudged = _read_queries(queries_path, qrels)
    orphans = [qid for qid in qrels if qid not in queries]
    if orphans:
        examples = ", ".join(repr(qid) for qid in orphans[:3])
        raise DatasetError(
            f"{qrels_path}: {len(orphans)} query id(s) have no query in {queries_path.name}, "
            f"e.g. {examples}"
        )
    return BeirDataset(corpus, queries, qrels, split, unjudged)


def load_sts(path: str | os.PathLike[str]) -> StsPairs:
    """Load STS sentence pairs from a TSV or JSONL file, or from a folder holding one.

    A ``.tsv`` file needs a header line naming ``sentence1``, ``sentence2`` and ``score`` columns
    in any position, so the original 7-column KorSTS layout (genre, filename, year, id, score,
    sentence1, sentence2) loads as is; fields are split on tabs only and quotes stay literal.
    A ``.jsonl`` file holds objects with those three fields (others are ignored). For a folder,
    the first of ``pairs.tsv``, ``pairs.jsonl`` and ``sts-dev.tsv`` found inside is used.
    Sentences are stripped of surrounding whitespace; blank lines are skipped.

    Args:
        path: The file or folder.

    Returns:
        The pairs, in file order.

    Raises:
        DatasetError: The file is missing, lacks a column (the message lists the columns found),
            has a bad score (file:line) or holds no pairs.

    Example:
        >>> pairs = load_sts("korsts_dev")  # doctest: +SKIP
        >>> len(pairs)  # doctest: +SKIP
        1500
    """
    target = Path(path)
    if target.is_dir():
        found = _first_file(target, STS_FILES)
        if found is None:
            raise DatasetError(
                f"no STS pairs in the folder '{target}' (expected one of: {', '.join(STS_FILES)})"
            )
        target = found
    elif not target.is_file():
        raise DatasetError(f"STS file '{target}' does not exist")
    suffix = target.suffix.lower()
    if suffix == ".jsonl":
        rows = _sts_jsonl_rows(target)
    elif suffix in (".tsv", ".txt"):
        rows = _sts_tsv_rows(target)
    else:
        raise DatasetError(f"cannot read '{target}': unknown STS format (supported: .tsv, .jsonl)")
    pairs = StsPairs([], [], [])
    for where, first, second, raw_score in rows:
        pairs.sentences1.append(first.strip())
        pairs.sentences2.append(second.strip())
        pairs.scores.append(_float_score(raw_score, where))
        pairs.where.append(where)
    if not pairs.scores:
        raise DatasetError(f"{target}: the file has no sentence pairs")
    return pairs


def _first_file(folder: Path, names: Iterable[str]) -> Path | None:
    """The first of ``names`` that is a file inside ``folder``."""
    return next((folder / name for name in names if (folder / name).is_file()), None)


def _available_splits(root: Path) -> str:
    """A hint listing the qrels splits that do exist."""
    folder = root / "qrels"
    splits = sorted(p.stem for p in folder.glob("*.tsv")) if folder.is_dir() else []
    return f" (qrels/ has: {', '.join(splits)})" if splits else ""


def _json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number from 1, object) for the non-blank lines of a JSONL file."""
    return read_jsonl(path, error=DatasetError, type_name=lambda value: type(value).__name__)


def _names(record: Mapping[str, Any]) -> str:
    """The keys of a JSON object, for messages."""
    return ", ".join(record) or "none"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _int_score(raw: str, where: str) -> int:
    """A relevance grade: an integer, also written as ``2.0``."""
    with contextlib.suppress(ValueError):
        return int(raw)
    value = float(raw) if _is_number(raw) else math.nan
    if not value.is_integer():
        raise DatasetError(f"{where}: relevance score {raw!r} is not an integer")
    return int(value)


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Read ``query-id, corpus-id, score`` rows; a first line with no numeric score is a header."""
    qrels: dict[str, dict[str, int]] = {}
    seen_line = False
    for number, line in read_lines(path, error=DatasetError):
        if not line.strip():
            continue
        fields = [f.strip() for f in (line.split("\t") if "\t" in line else line.split())]
        if not seen_line:
            seen_line = True
            if not _is_number(fields[-1]):
                continue
        if len(fields) == 4:  # TREC qrels: qid iteration docid relevance
            fields = [fields[0], fields[2], fields[3]]
        if len(fields) != 3:
            raise DatasetError(
                f"{path}:{number}: expected 3 tab-separated columns (query-id, corpus-id, score), "
                f"found {len(fields)}"
            )
        if not fields[0] or not fields[1]:
            raise DatasetError(f"{path}:{number}: the query id or corpus id is empty")
        qrels.setdefault(fields[0], {})[fields[1]] = _int_score(fields[2], f"{path}:{number}")
    if not qrels:
        raise DatasetError(f"{path}: the qrels file has no judgments")
    return qrels


def _read_queries(path: Path, qrels: Mapping[str, object]) -> tuple[dict[str, str], int]:
    """Read ``{"_id", "text"}`` lines; return the judged queries and the count of the others."""
    queries: dict[str, str] = {}
    first_seen: dict[str, int] = {}
    for number, record in _json_objects(path):
        where = f"{path}:{number}"
        key = "_id" if "_id" in record else "id"
        qid, text = record.get(key), record.get("text")
        if qid is None or text is None:
            field = "_id" if qid is None else "text"
            raise DatasetError(f"{where}: missing field '{field}' (found: {_names(record)})")
        if isinstance(qid, bool) or not isinstance(qid, str | int):
            raise DatasetError(f"{where}: field '{key}' must be a string, found {qid!r}")
        if not isinstance(text, str):
            raise DatasetError(f"{where}: field 'text' must be a string, found {text!r}")
        qid = str(qid)
        if qid in first_seen:
            first = first_seen[qid]
            raise DatasetError(f"{where}: duplicate query id {qid!r} (first seen at line {first})")
        first_seen[qid] = number
        if qid in qrels:
            queries[qid] = text
    return queries, len(first_seen) - len(queries)


def _sts_tsv_rows(path: Path) -> Iterator[tuple[str, str, str, str]]:
    """Yield (where, sentence1, sentence2, raw score) from a tab-separated file with a header."""
    columns: list[int] | None = None
    for number, line in read_lines(path, error=DatasetError):
        if not line.strip():
            continue
        fields = line.split("\t")
        if columns is None:
            names = [name.strip().lower() for name in fields]
            missing = [f"'{c}'" for c in _STS_FIELDS if c not in names]
            if missing:
                raise DatasetError(
                    f"{path}:{number}: the header has no {', '.join(missing)} column "
                    f"(found: {', '.join(fields[:10])})"
                )
            columns = [names.index(c) for c in _STS_FIELDS]
            continue
        if len(fields) <= max(columns):
            raise DatasetError(
                f"{path}:{number}: expected at least {max(columns) + 1} tab-separated fields, "
                f"found {len(fields)}"
            )
        yield f"{path}:{number}", fields[columns[0]], fields[columns[1]], fields[columns[2]]


def _sts_jsonl_rows(path: Path) -> Iterator[tuple[str, str, str, object]]:
    """Yield (where, sentence1, sentence2, raw score) from JSONL objects."""
    for number, record in _json_objects(path):
        where = f"{path}:{number}"
        missing = [f"'{c}'" for c in _STS_FIELDS if c not in record]
        if missing:
            fields = ", ".join(missing)
            raise DatasetError(f"{where}: missing field {fields} (found: {_names(record)})")
        first, second = record["sentence1"], record["sentence2"]
        if not isinstance(first, str) or not isinstance(second, str):
            raise DatasetError(f"{where}: 'sentence1' and 'sentence2' must be strings")
        yield where, first, second, record["score"]


def _float_score(raw: object, where: str) -> float:
    """A finite gold similarity score from a number or numeric string."""
    value = math.nan
    if isinstance(raw, int | float | str) and not isinstance(raw, bool):
        with contextlib.suppress(ValueError):
            value = float(raw)
    if not math.isfinite(value):
        raise DatasetError(f"{where}: score {raw!r} is not a finite number")
    return value


