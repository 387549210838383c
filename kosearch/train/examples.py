"""Training examples from questions and an index of their corpus: the positive passage and
hard negatives of each question, chosen with kosearch's own retrieval (BM25 by default; dense
or hybrid search with the base model on request).

* **Positive.** A relevant document may be split into several passages; the positive is the
  passage the index holds for it that the search ranks highest for the question (the passage that
  shares the question's words), else its first passage. With one passage per document, as in
  most QA collections, that is simply the document.
* **Hard negatives.** The best-ranked passages of documents *not* judged relevant to the
  question (one per document), skipping any whose text equals a positive. When BM25 finds
  fewer than asked, seeded random non-relevant passages fill the rest, so every example has the
  same number of columns (the losses need it). Negatives given in JSONL pairs come first.

Texts are the passages as the index encodes them (title, newline, passage text); the model's
prompts are added by the trainer, exactly as at index and query time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kosearch.types import join_title

if TYPE_CHECKING:
    from kosearch.index import Index
    from kosearch.train.data import RetrievalData

_SEARCH_BATCH = 64
_EXTRA_DEPTH = 10  # hits beyond the wanted negatives, for relevant and duplicate ones


@dataclass(frozen=True, slots=True)
class Example:
    """One training row: a question, its positive passage and its negatives (texts)."""

    query: str
    positive: str
    negatives: tuple[str, ...] = ()


def build_examples(
    index: Index, data: RetrievalData, *, negatives: int, seed: int, mode: str = "lexical"
) -> list[Example]:
    """One :class:`Example` per question of ``data`` (ids sorted), mined over ``index``.

    Args:
        index: An index of ``data``'s corpus (with BM25, else positives are first passages
            and negatives random).
        data: The training questions.
        negatives: Hard negatives per question (0: none, unless the data gives some).
        seed: Seeds the random fill.
        mode: The retrieval that ranks the candidates: ``lexical`` (BM25, the cheapest: no
            question is encoded), ``dense`` or ``hybrid`` (with the base model).
    """
    passages = _passages_by_document(index)
    qids = sorted(data.queries)
    wanted = max(negatives, 1 if data.negatives else 0)
    hits = _ranked_hits(index, [data.queries[q] for q in qids], wanted, mode)
    rng = random.Random(seed)
    pool = [text for texts in passages.values() for text in texts]
    examples = []
    for qid, ranked in zip(qids, hits):
        relevant = data.positives[qid]
        positive = _positive(ranked, relevant, passages)
        chosen = list(dict.fromkeys(data.negatives.get(qid, ())))[:wanted]
        for doc_id, text in ranked if negatives else ():  # 0: mining off
            if len(chosen) >= wanted:
                break
            if doc_id not in relevant and text != positive and text not in chosen:
                chosen.append(text)
        chosen = _fill(chosen, wanted, positive, relevant, passages, pool, rng)
        examples.append(Example(data.queries[qid], positive, tuple(chosen)))
    return examples


def _passages_by_document(index: Index) -> dict[str, list[str]]:
    """Document id -> its passages' encoded texts, in chunk order."""
    table = index.passages.table
    docs = table.column("doc_id").to_pylist()
    chunks = table.column("chunk").to_pylist()
    texts = table.column("text").to_pylist()
    titles = table.column("title").to_pylist()
    out: dict[str, list[tuple[int, str]]] = {}
    for doc_id, chunk, text, title in zip(docs, chunks, texts, titles):
        out.setdefault(str(doc_id), []).append((int(chunk), join_title(title or "", text)))
    return {doc: [t for _, t in sorted(parts)] for doc, parts in out.items()}


def _ranked_hits(index: Index, queries: list[str], wanted: int, mode: str
                 ) -> list[list[tuple[str, str]]]:
    """Per query, ``(document id, passage text)`` of the passage hits of ``mode``, best first."""
    if index.lexical is None and mode != "dense":
        return [[] for _ in queries]
    depth = wanted + _EXTRA_DEPTH
    out: list[list[tuple[str, str]]] = []
    for start in range(0, len(queries), _SEARCH_BATCH):
        batch = index.search_batch(queries[start : start + _SEARCH_BATCH], depth,
                                   mode=mode, passages=True)
        out.extend([(h.id, join_title(h.title, h.text)) for h in hits] for hits in batch)
    return out


def _positive(ranked: list[tuple[str, str]], relevant: set[str],
              passages: dict[str, list[str]]) -> str:
    """The best-ranked passage of a relevant document, else the first passage of the first."""
    for doc_id, text in ranked:
        if doc_id in relevant:
            return text
    first = min(relevant)
    return passages[first][0]


def _fill(chosen: list[str], wanted: int, positive: str, relevant: set[str],
          passages: dict[str, list[str]], pool: list[str], rng: random.Random) -> list[str]:
    """Top ``chosen`` up to ``wanted`` with seeded random non-relevant passages."""
    if len(chosen) >= wanted:
        return chosen
    banned = {t for doc in relevant for t in passages.get(doc, ())} | {positive, *chosen}
    candidates = [t for t in pool if t not in banned]
    rng.shuffle(candidates)
    chosen = chosen + candidates[: wanted - len(chosen)]
    # A corpus with too few other passages: repeat what there is (never the positive).
    while chosen and len(chosen) < wanted:
        chosen.append(chosen[0])
    return chosen if len(chosen) == wanted else []


def as_columns(examples: list[Example]) -> dict[str, list[Any]]:
    """Columns for a ``datasets.Dataset``: anchor, positive, negative_1..n (n the fewest any
    example has, so every row has the same shape)."""
    n = min((len(e.negatives) for e in examples), default=0)
    columns: dict[str, list[Any]] = {
        "anchor": [e.query for e in examples], "positive": [e.positive for e in examples],
    }
    for i in range(n):
        columns[f"negative_{i + 1}"] = [e.negatives[i] for e in examples]
    return columns
