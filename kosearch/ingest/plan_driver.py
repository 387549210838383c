"""Run per-document packing plans in lock-step, answering their requests in batches.

A plan is a generator that packs one document: it yields a :class:`SplitRequest` (Kiwi sentence
spans of a text) or a :class:`MeasureRequest` (the exact encoded length of a text), receives
the answer, and finally returns its result. :func:`drive_plans` advances every plan by one
request per round, so that each round makes one Kiwi call and one tokenizer call over all the
documents still being packed.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from kosearch.ingest.sentences import SentenceSplitter
from kosearch.ingest.tokens import TokenCounter


@dataclass(frozen=True, slots=True)
class SplitRequest:
    """A request to the driver: Kiwi sentence spans of ``text``."""

    text: str


@dataclass(frozen=True, slots=True)
class MeasureRequest:
    """A request to the driver: the exact encoded length of ``text``."""

    text: str


Request = SplitRequest | MeasureRequest


def drive_plans(
    plans: list[Generator[Request, Any, Any]], splitter: SentenceSplitter, counter: TokenCounter
) -> list[Any]:
    """Run the per-document plans in lock-step, answering their requests in batches: one Kiwi
    call and one tokenizer call per round, over every document still being packed."""
    results: list[Any] = [None] * len(plans)
    pending: dict[int, Request] = {}

    def advance(i: int, reply: Any) -> None:
        try:
            pending[i] = plans[i].send(reply)
        except StopIteration as stop:
            results[i] = stop.value
            pending.pop(i, None)

    for i in range(len(plans)):
        advance(i, None)
    while pending:
        splits = [(i, r.text) for i, r in pending.items() if isinstance(r, SplitRequest)]
        measures = [(i, r.text) for i, r in pending.items() if isinstance(r, MeasureRequest)]
        answers: list[Any] = []
        if splits:
            answers += splitter.split([text for _, text in splits])
        if measures:
            answers += counter.full_length([text for _, text in measures])
        for (i, _), answer in zip(splits + measures, answers, strict=True):
            advance(i, answer)
    return results
