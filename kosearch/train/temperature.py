"""The similarity scale of the MNRL losses, fitted to the base model (``--scale auto``).

MNRL is a softmax over ``scale * cosine`` of a question against its positive and every other
passage of the batch. sentence-transformers' default scale, 20 (temperature 0.05), suits a model
fresh from pre-training or STS training. A model already trained for retrieval at a lower
temperature packs its cosines into a narrow band: the e5 family was trained at 0.01 (scale
100), and me5-small-ko on KorQuAD questions gives its positives 0.886 and the other passages of
a 64-pair batch 0.789 on average. At scale 20 its loss is 2.39 on pairs it ranks 98% right, so
training spends its steps spreading the whole space apart instead of fixing the questions it
gets wrong. On KorQuAD (80/20 split of the questions) runs at scale 20 took dense nDCG@10 from
0.889 to 0.845-0.848, with or without a mined negative; at the fitted 100 it rose to 0.907.

``auto`` fits the scale the way temperature scaling calibrates a classifier: the scale at which
the base model's own in-batch loss, on a seeded sample of the training examples, is lowest
(the loss is convex in the scale), kept within :data:`SCALE_RANGE`, the temperatures the model
families kosearch knows were trained at.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from kosearch.encoding.encoder import Encoder

#: The lowest and highest scale ``auto`` picks: temperatures 0.05 (sentence-transformers'
#: default) to 0.01 (e5).
SCALE_RANGE = (20.0, 100.0)
#: Training examples encoded to fit the scale.
SAMPLE = 64
_GRID = np.geomspace(SCALE_RANGE[0], SCALE_RANGE[1], 41)


def fit_scale(encoder: Encoder, columns: dict[str, list[Any]], batch_size: int,
              seed: int) -> float:
    """The scale for MNRL that fits ``encoder`` on a seeded sample of ``columns``.

    Args:
        encoder: The base model (its prompts are applied as in training).
        columns: ``anchor, positive[, negative_i]`` training columns.
        batch_size: The training batch size: the sample is scored in groups of this size, so
            each question meets as many in-batch passages as in training.
        seed: Seeds the sample.
    """
    count = len(columns["anchor"])
    rows = sorted(random.Random(seed).sample(range(count), min(count, SAMPLE)))
    docs = [name for name in columns if name != "anchor"]
    queries = encoder.encode_queries([columns["anchor"][i] for i in rows])
    texts = [[columns[name][i] for i in rows] for name in docs]
    flat = encoder.encode_passages([t for column in texts for t in column])
    passages = np.split(flat, len(docs)) if docs else []
    return best_scale(queries, passages, texts, min(batch_size, len(rows)))


def best_scale(queries: NDArray[np.float32], passages: Sequence[NDArray[np.float32]],
               texts: Sequence[Sequence[str]], group: int) -> float:
    """The grid scale in :data:`SCALE_RANGE` with the lowest mean in-batch loss (to 1e-9; of
    equal losses, the highest scale: a sample ranked without a mistake has a loss that only
    falls as the scale grows, until rounding cannot tell).

    Args:
        queries: ``(n, dim)`` question vectors.
        passages: Per document column (positive first), ``(n, dim)`` vectors.
        texts: The same columns' texts (a passage equal to a question's positive is not
            counted as its negative, as the trainer's no-duplicates batches ensure).
        group: Questions per batch.
    """
    batches = _batches(queries, passages, texts, group)
    losses = [_mean_loss(batches, scale) for scale in _GRID]
    rounded = np.round(losses, 9)
    return float(_GRID[len(_GRID) - 1 - int(np.argmin(rounded[::-1]))])


def in_batch_loss(queries: NDArray[np.float32], passages: Sequence[NDArray[np.float32]],
                  texts: Sequence[Sequence[str]], scale: float, group: int) -> float:
    """The mean MNRL loss at ``scale`` over consecutive batches of ``group`` questions: each
    question against every passage of its batch, its own positive the target."""
    return _mean_loss(_batches(queries, passages, texts, group), scale)


def _batches(queries: NDArray[np.float32], passages: Sequence[NDArray[np.float32]],
             texts: Sequence[Sequence[str]], group: int) -> list[NDArray[np.float64]]:
    """Per batch of ``group`` questions, their cosines to every passage of the batch (the
    positives first), ``-inf`` where a passage other than the question's own positive has the
    positive's text. They do not depend on the scale, so every scale tried reuses them."""
    out = []
    for start in range(0, len(queries), group):
        part = slice(start, start + group)
        q = _unit(queries[part])
        docs = np.concatenate([_unit(p[part]) for p in passages])
        labels = np.array([t for column in texts for t in column[part]], dtype=object)
        positives = np.array(list(texts[0][part]), dtype=object)
        same = labels[None, :] == positives[:, None]
        same[np.arange(len(q)), np.arange(len(q))] = False
        cosines = q @ docs.T
        cosines[same] = -np.inf
        out.append(cosines)
    return out


def _mean_loss(batches: list[NDArray[np.float64]], scale: float) -> float:
    """The mean cross-entropy of ``scale`` x cosines, each question's own positive the target."""
    total, count = 0.0, 0
    for cosines in batches:
        logits = scale * cosines
        top = logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
        rows = np.arange(len(logits))
        total += float((log_norm - logits[rows, rows]).sum())
        count += len(logits)
    return total / count


def _unit(vectors: NDArray[np.float32]) -> NDArray[np.float64]:
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms == 0, 1.0, norms)
