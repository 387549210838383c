"""Korean sentence boundaries from Kiwi, as character spans into the original texts.

Kiwi finds sentence ends by morphological analysis, at roughly 100k characters per second on
one core, which is slower than tokenizing; the chunker therefore only hands it the windows of
text around the places where a passage must end (see :mod:`kosearch.ingest.chunk`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from kosearch.errors import ConfigError
from kosearch.ingest.tokens import Span
from kosearch.lexical.kiwi import KiwiLoader

if TYPE_CHECKING:
    import kiwipiepy

_TERMINALS = frozenset(".!?。！？…‼⁇⁈⁉")
_CLOSERS = frozenset("\"'”’」』)]}》〉")
_END_THEN_SPACE = re.compile(r"[.!?。！？…][\"'”’」』)\]]*\s")


class SentenceSplitter:
    """Korean sentence boundaries from Kiwi, as character spans into the original texts.

    Kiwi handles endings without final punctuation, quotations, numbers such as ``3.5`` and
    abbreviations. Two repairs are applied on top: a boundary Kiwi puts inside a run of
    non-space characters is kept only after sentence-final punctuation (Kiwi sometimes splits
    before an emoji or after Hanja), and texts longer than ``max_chars`` are cut into windows
    (at a line break, else after sentence punctuation, else at a space) before Kiwi sees them,
    which bounds the memory of one call. Whitespace between sentences belongs to no span.

    Args:
        num_workers: Kiwi worker threads; ``None`` uses every core.
        max_chars: Longest piece of text handed to Kiwi in one go.
        kiwi: An existing ``kiwipiepy.Kiwi`` to share (it takes ~300 MB); ``num_workers`` is
            then that of the given instance.

    Example:
        >>> SentenceSplitter(num_workers=1).split(["비가 온다. 우산을 챙겨라"])
        [[(0, 6), (7, 14)]]
    """

    def __init__(
        self,
        *,
        num_workers: int | None = None,
        max_chars: int = 20_000,
        kiwi: kiwipiepy.Kiwi | None = None,
    ) -> None:
        if num_workers is not None and num_workers < 1:
            raise ConfigError(f"Kiwi num_workers must be at least 1, got {num_workers}")
        if max_chars < 100:
            raise ConfigError(f"the splitter's max_chars must be at least 100, got {max_chars}")
        self._max_chars = max_chars
        self._loader = KiwiLoader(num_workers=num_workers, purpose="Korean sentence splitting",
                                  kiwi=kiwi)
        self.chars_analyzed = 0  # characters Kiwi has been given (a cost figure for benchmarks)

    @property
    def kiwi(self) -> kiwipiepy.Kiwi:
        """The Kiwi analyzer (loaded on first use, with
        :data:`kosearch.lexical.kiwi.DEFAULT_DICTS` unless given), to share with the BM25
        analyzer."""
        return self._loader.get()

    def split(self, texts: Sequence[str]) -> list[list[Span]]:
        """Sentence spans of every text, in one batched (multi-threaded) Kiwi call.

        Args:
            texts: The texts to split.

        Returns:
            For each text, its sentences as ``(start, end)`` with ``text[start:end]`` free of
            leading and trailing whitespace; an empty list for a whitespace-only text.
        """
        jobs = [
            (i, offset, piece)
            for i, text in enumerate(texts)
            for offset, piece in _windows(text, self._max_chars)
            if piece.strip()
        ]
        cuts: list[list[int]] = [[] for _ in texts]
        if jobs:
            self.chars_analyzed += sum(len(piece) for _, _, piece in jobs)
            pieces = [piece for _, _, piece in jobs]
            found = self._loader.get().split_into_sents(pieces, return_sub_sents=False)
            for (i, offset, piece), sentences in zip(jobs, found, strict=True):
                cuts[i].extend(offset + s.end for s in sentences)
                cuts[i].append(offset + len(piece))
        return [_spans_from_cuts(text, c) for text, c in zip(texts, cuts, strict=True)]


def _windows(text: str, max_chars: int) -> Iterator[tuple[int, str]]:
    """``(offset, piece)`` windows of at most ``max_chars`` covering ``text``."""
    pos = 0
    while len(text) - pos > max_chars:
        cut = _window_cut(text, pos, pos + max_chars)
        yield pos, text[pos:cut]
        pos = cut
    yield pos, text[pos:]


def _window_cut(text: str, low: int, high: int) -> int:
    """Where to end a window: a line break, sentence punctuation or space in its second half."""
    half = low + (high - low) // 2
    newline = text.rfind("\n", half, high)
    if newline >= 0:
        return newline + 1
    ends = [m.end() for m in _END_THEN_SPACE.finditer(text, half, high)]
    if ends:
        return ends[-1]
    space = text.rfind(" ", half, high)
    return space + 1 if space >= 0 else high


def _spans_from_cuts(text: str, cuts: list[int]) -> list[Span]:
    """Whitespace-trimmed spans between the accepted cut positions."""
    spans: list[Span] = []
    start = 0
    for cut in sorted(set(cuts)):
        if cut < len(text) and not _is_boundary(text, cut):
            continue
        segment = text[start:cut]
        body = segment.strip()
        if body:
            first = start + len(segment) - len(segment.lstrip())
            spans.append((first, first + len(body)))
        start = cut
    return spans


def _is_boundary(text: str, pos: int) -> bool:
    """A sentence may end at ``pos``: at whitespace, or right after final punctuation."""
    if pos <= 0 or text[pos].isspace() or text[pos - 1].isspace():
        return True
    i = pos - 1
    while i > 0 and pos - i < 8 and text[i] in _CLOSERS:
        i -= 1
    return text[i] in _TERMINALS
