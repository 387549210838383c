"""``batched``: an iterable in lists of a fixed size (``itertools.batched`` is Python 3.12+)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of ``size`` consecutive items of ``items`` (the last one may be shorter)."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
