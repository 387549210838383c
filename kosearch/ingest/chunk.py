"""Packing of documents into passages of whole sentences that fit the model's token budget.

A passage is a run of whole sentences of one document, ``doc.text[start:end]``, such that
``prompt + title + "\\n" + text`` plus the model's special tokens fits the token budget. Every
passage is measured with the model's own tokenizer and a sentence longer than the budget is cut
at token boundaries, so nothing is dropped or silently truncated.

Kiwi finds sentence ends by morphological analysis, at roughly 100k characters per second on
one core, which is slower than tokenizing. So each document is first encoded whole (one batched
tokenizer call): one that fits is one passage and never reaches Kiwi. For the others, a cut
only needs the sentence ends just before the point where the budget runs out, so Kiwi reads a
window of ``48 + overlap`` tokens before that point and 16 after it (widened backwards when it
holds no sentence end), about an eighth of the text at 512 tokens. With small budgets or large
overlaps, where windows would re-read most of the text, whole documents are split up front
instead. Kiwi and tokenizer calls are batched over all the documents being packed
(:mod:`kosearch.ingest.plan_driver`).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Generator, Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from itertools import accumulate
from typing import Any

from kosearch.errors import ConfigError
from kosearch.ingest.plan_driver import MeasureRequest, Request, SplitRequest, drive_plans
from kosearch.ingest.sentences import SentenceSplitter
from kosearch.ingest.tokens import Span, TokenCounter
from kosearch.settings import ChunkSettings
from kosearch.types import Document, Passage, join_title

_MIN_ROOM = 16  # content tokens a budget must leave after the prompt and special tokens
_CONTEXT = 48  # tokens before a cut that Kiwi sees (plus the overlap)
_LOOKAHEAD = 16  # tokens after a cut that Kiwi sees, so it can judge the boundary
_DEFAULT_CAP = 512


@dataclass(frozen=True, slots=True)
class ChunkStats:
    """Counts over every ``Chunker.chunk`` call so far.

    Attributes:
        documents: Documents seen.
        passages: Passages produced.
        empty_documents: Documents with no text but whitespace (they yield no passage).
        over_limit: Passages longer than the budget (chunking on: only a pathological text
            whose single token does not fit) or, chunking off, documents longer than the model's
            limit, which the model will truncate.
        sentences_split: Sentences longer than the budget, cut at token boundaries.
    """

    documents: int = 0
    passages: int = 0
    empty_documents: int = 0
    over_limit: int = 0
    sentences_split: int = 0

    def __add__(self, other: ChunkStats) -> ChunkStats:
        names = [f.name for f in fields(self)]
        return ChunkStats(*(getattr(self, n) + getattr(other, n) for n in names))


@dataclass(frozen=True, slots=True)
class _Doc:
    """A document ready for packing: content bounds, token offsets, encoding title."""

    doc: Document
    start: int
    end: int
    starts: list[int]
    ends: list[int]
    title: str
    room: int  # content tokens a passage may hold next to the title
    length: int  # exact encoded length of the whole document as one passage
    sentences: list[Span] | None = None  # all sentences, when split up front


class Chunker:
    """Packs documents into passages of whole sentences that fit the model's token budget.

    Sentences are added greedily while ``prompt + title + "\\n" + passage`` plus the special
    tokens fits ``budget``; each passage is then measured exactly with the tokenizer and
    shortened by a sentence when it does not fit. A sentence longer than the budget is cut at
    token boundaries (preferring a line break, then a space, in the second half of the piece);
    its pieces never overlap. A title that would take more than half of the room after the
    prompt and special tokens is cut to that half, at a token boundary, in ``encode_text``
    (``Passage.title`` keeps the full title).

    Args:
        counter: Token counts of the model that will encode the passages.
        settings: Budget, overlap and on/off; ``None`` means ``ChunkSettings()``.
        splitter: The Kiwi sentence splitter to use; by default one using every core.

    Raises:
        ConfigError: If a setting is negative, the budget exceeds the model's limit or leaves
            no room for text, or the overlap does not leave room for new text.

    Example:
        >>> chunker = Chunker(counter, ChunkSettings(max_tokens=256, overlap=32))
        >>> passages = chunker.chunk(documents)
        >>> texts = [chunker.encode_text(p) for p in passages]  # encode with the prompt
    """

    def __init__(
        self,
        counter: TokenCounter,
        settings: ChunkSettings | None = None,
        *,
        splitter: SentenceSplitter | None = None,
    ) -> None:
        self.settings = settings if settings is not None else ChunkSettings()
        self.budget = _resolve_budget(counter, self.settings)
        self.stats = ChunkStats()
        self._counter = counter
        self._splitter = splitter if splitter is not None else SentenceSplitter()
        self._title_for = lru_cache(maxsize=4096)(self._cut_title)

    def encode_text(self, passage: Passage) -> str:
        """The text to encode (the model adds its prompt): ``title + "\\n" + text`` or ``text``."""
        return join_title(self._title_for(passage.title)[0], passage.text)

    def chunk(self, docs: Sequence[Document]) -> list[Passage]:
        """Split documents into passages; batched over all of them (pass a few thousand at once).

        Args:
            docs: The documents.

        Returns:
            The passages in document order, ``chunk`` numbered from 0 within each document and
            ``doc.text[p.start:p.end] == p.text``. A whitespace-only document yields none.
        """
        docs = list(docs)
        if not self.settings.enabled:
            return self._whole(docs)
        bounds = [_content_bounds(doc.text) for doc in docs]
        nonempty = [(doc, a, b) for doc, (a, b) in zip(docs, bounds, strict=True) if a < b]
        whole = [join_title(self._title_for(d.title)[0], d.text[a:b]) for d, a, b in nonempty]
        measured = self._counter.full_length_with_spans(whole)
        kept = [self._prepare(*n, *m) for n, m in zip(nonempty, measured, strict=True)]
        kept = self._presplit(kept)
        plans = drive_plans([self._plan(d) for d in kept], self._splitter, self._counter)
        passages: list[Passage] = []
        cuts = over = 0
        for d, (spans, doc_cuts, doc_over) in zip(kept, plans, strict=True):
            text, doc_id, title = d.doc.text, d.doc.id, d.doc.title
            passages += [
                Passage(doc_id, i, text[a:b], a, b, title) for i, (a, b) in enumerate(spans)
            ]
            cuts += doc_cuts
            over += doc_over
        self.stats += ChunkStats(len(docs), len(passages), len(docs) - len(kept), over, cuts)
        return passages

    def _whole(self, docs: list[Document]) -> list[Passage]:
        """One passage per non-empty document; count those longer than the model's limit."""
        passages = []
        for doc in docs:
            start, end = _content_bounds(doc.text)
            if start < end:
                passages.append(Passage(doc.id, 0, doc.text[start:end], start, end, doc.title))
        lengths = self._counter.full_length([self.encode_text(p) for p in passages])
        over = sum(n > self._counter.max_tokens for n in lengths)
        self.stats += ChunkStats(len(docs), len(passages), len(docs) - len(passages), over, 0)
        return passages

    def _cut_title(self, title: str) -> tuple[str, int]:
        """The title used for encoding and its token count, cut to half the room."""
        title = title.strip()
        if not title:
            return "", 0
        spans = self._counter.spans(title)
        limit = (self.budget - self._counter.overhead) // 2
        if len(spans) <= limit:
            return title, len(spans)
        return title[: spans[limit - 1][1]].rstrip(), limit

    def _presplit(self, docs: list[_Doc]) -> list[_Doc]:
        """Split whole documents up front where Kiwi windows would re-read most of the text:
        when the window (``_CONTEXT + overlap + _LOOKAHEAD`` tokens) exceeds half the new
        text of a passage, as with small budgets or large overlaps."""
        overlap = self.settings.overlap
        window = _CONTEXT + overlap + _LOOKAHEAD
        need = [
            i
            for i, d in enumerate(docs)
            if d.length > self.budget and d.room < 2 * window + overlap
        ]
        found = self._splitter.split([docs[i].doc.text for i in need]) if need else []
        for i, sentences in zip(need, found, strict=True):
            docs[i] = replace(docs[i], sentences=sentences)
        return docs

    def _prepare(self, doc: Document, start: int, end: int, length: int, spans: list[Span]) -> _Doc:
        """Token offsets in document coordinates, from the encoding of the whole document as
        one passage (``spans`` are relative to ``title + "\n" + text[start:end]``)."""
        title, title_tokens = self._title_for(doc.title)
        prefix = len(title) + 1 if title else 0
        shift = start - prefix
        kept = [(a, b) for a, b in spans if b > prefix]
        starts = [max(start, a + shift) for a, _ in kept]
        ends = list(accumulate((b + shift for _, b in kept), max))
        room = self.budget - self._counter.overhead - title_tokens
        return _Doc(doc, start, end, starts, ends, title, room, length)

    def _measure(self, d: _Doc, start: int, end: int) -> MeasureRequest:
        return MeasureRequest(join_title(d.title, d.doc.text[start:end]))

    def _plan(self, d: _Doc) -> Generator[Request, Any, tuple[list[Span], int, int]]:
        """Passage spans of one document, the sentences it cut, and passages over budget."""
        spans: list[Span] = []
        cuts = over = 0
        leads, new = [d.start], d.start
        in_cut = False  # the previous passage ended inside a sentence
        if d.length <= self.budget:
            return [(d.start, d.end)], 0, 0
        while new < d.end:
            lead, end, starts, cut, length = yield from self._passage(d, leads, new)
            spans.append((lead, end))
            cuts += cut and not in_cut
            over += length > self.budget
            following = _skip_space(d.doc.text, end, d.end)
            if not in_cut:
                starts = [new, *starts]
            leads = [*self._overlap_starts(d, [] if cut else starts, end), following]
            in_cut, new = cut, following
        return spans, cuts, over

    def _overlap_starts(self, d: _Doc, starts: list[int], end: int) -> list[int]:
        """Sentence starts in ``starts`` whose trailing sentences up to ``end`` fit in
        ``overlap`` tokens, most overlap first."""
        if self.settings.overlap <= 0:
            return []
        tokens_to_end = bisect_right(d.ends, end)
        return [
            s
            for s in sorted(set(starts))
            if s < end and tokens_to_end - bisect_right(d.ends, s) <= self.settings.overlap
        ]

    def _passage(
        self, d: _Doc, leads: list[int], new: int
    ) -> Generator[Request, Any, tuple[int, int, list[int], bool, int]]:
        """``(start, end, sentence starts, cut?, length)`` of the passage whose new text begins
        at ``new``. It starts at the first of ``leads`` (overlap starts, then ``new``) that
        leaves room for at least one new sentence."""
        lead, leads = leads[0], leads[1:]
        limit = self._fit_end(d, lead)
        while True:
            if limit >= d.end:
                length = yield self._measure(d, lead, d.end)
                if length <= self.budget:
                    return lead, d.end, [], False, length
                limit = d.end - 1
            end, starts = yield from self._boundary(d, new, limit)
            if end is None:
                if leads:  # too much overlap to fit a new sentence: one sentence less
                    lead, leads = leads[0], leads[1:]
                    limit = self._fit_end(d, lead)
                    continue
                end, length = yield from self._token_cut(d, new)
                return new, end, [], True, length
            length = yield self._measure(d, lead, end)
            if length <= self.budget:
                return lead, end, starts, False, length
            limit = end - 1  # back off one sentence

    def _fit_end(self, d: _Doc, lead: int) -> int:
        """Estimated last character a passage from ``lead`` can reach (``d.end`` if all fits)."""
        first = bisect_right(d.ends, lead)
        stop = first + d.room  # tokens [first, stop) fit
        if stop >= len(d.ends):
            return d.end
        last = stop - 1
        while last >= first and d.ends[last] == d.ends[stop]:  # tokens sharing one character
            last -= 1
        return d.ends[last] if last >= first else lead

    def _boundary(
        self, d: _Doc, new: int, limit: int
    ) -> Generator[Request, Any, tuple[int | None, list[int]]]:
        """The last sentence end in ``(new, limit]`` and the sentence starts Kiwi saw before it.

        Kiwi reads a window from ``_CONTEXT + overlap`` tokens before ``limit`` to
        ``_LOOKAHEAD`` tokens after it: its last sentence runs into the cut-off, so its end is
        no boundary, and unless the window starts at ``new`` its first sentence is a fragment,
        so that start is none either. With no boundary found the window doubles backwards
        (re-reading only ``_LOOKAHEAD`` tokens of the text already read).
        """
        if limit <= new:
            return None, []
        if d.sentences is not None:
            return _known_boundary(d.sentences, new, limit)
        ends = d.ends
        first, at_limit = bisect_right(ends, new), bisect_right(ends, limit)
        back = _CONTEXT + self.settings.overlap
        stop = min(len(ends), at_limit + _LOOKAHEAD)
        while True:
            begin = max(first, at_limit - back)
            low = new if begin == first else max(new, d.starts[begin])
            high = d.end if stop >= len(ends) else min(d.end, ends[stop - 1])
            found = yield SplitRequest(d.doc.text[low:high])
            sentences = [(low + s, low + e) for s, e in found]
            closed = sentences if high >= d.end else sentences[:-1]
            candidates = [e for _, e in closed if new < e <= limit]
            if candidates:
                end = max(candidates)
                starts = sentences if low == new else sentences[1:]
                return end, [s for s, _ in starts if s < end]
            if begin == first:
                return None, []
            stop = min(stop, begin + _LOOKAHEAD)
            back *= 2

    def _token_cut(self, d: _Doc, new: int) -> Generator[Request, Any, tuple[int, int]]:
        """Cut the over-long sentence starting at ``new``: ``(end, length)`` of its first piece."""
        first = bisect_right(d.ends, new)
        room = d.room
        while True:
            end = _cut_point(d, first, room, new)
            length = yield self._measure(d, new, end)
            if length <= self.budget or room <= 1:
                return end, length
            room = max(1, room - (length - self.budget))


def _known_boundary(sentences: list[Span], new: int, limit: int) -> tuple[int | None, list[int]]:
    """``Chunker._boundary`` over a document split up front."""
    last = bisect_right(sentences, limit, key=lambda s: s[1]) - 1
    if last < 0 or sentences[last][1] <= new:
        return None, []
    first = bisect_right(sentences, new - 1, key=lambda s: s[0])
    return sentences[last][1], [s for s, _ in sentences[first : last + 1]]


def _cut_point(d: _Doc, first: int, room: int, new: int) -> int:
    """End of ``room`` tokens from token ``first``, moved back to a line break or space in the
    second half of the piece when there is one."""
    text, ends = d.doc.text, d.ends
    last = min(len(ends), first + room) - 1
    if last < first:
        return d.end
    space = None
    for j in range(last, first + room // 2 - 1, -1):
        pos = ends[j]
        if pos >= d.end:
            continue
        if text[pos] == "\n":
            space = pos
            break
        if space is None and text[pos].isspace():
            space = pos
    end = space if space is not None else min(ends[last], d.end)
    while end > new + 1 and text[end - 1].isspace():
        end -= 1
    return end


def _resolve_budget(counter: TokenCounter, settings: ChunkSettings) -> int:
    """The token budget of one passage; raises ConfigError for settings that cannot work."""
    if settings.max_tokens is not None and settings.max_tokens < 1:
        raise ConfigError(f"chunk max_tokens must be positive, got {settings.max_tokens}")
    if settings.overlap < 0:
        raise ConfigError(f"chunk overlap must be 0 or more tokens, got {settings.overlap}")
    if settings.max_tokens is None:
        budget = min(counter.max_tokens, _DEFAULT_CAP)
    elif settings.max_tokens > counter.max_tokens:
        raise ConfigError(
            f"chunk max_tokens {settings.max_tokens} exceeds the model's limit of "
            f"{counter.max_tokens} tokens"
        )
    else:
        budget = settings.max_tokens
    overhead = counter.overhead
    if budget < overhead + _MIN_ROOM:
        raise ConfigError(
            f"chunk max_tokens {budget} leaves too little room for text after the model's "
            f"{overhead} prompt and special tokens; use at least {overhead + _MIN_ROOM}"
        )
    if settings.enabled and settings.overlap >= budget - overhead:
        raise ConfigError(
            f"chunk overlap {settings.overlap} must be smaller than the {budget - overhead} "
            f"tokens of text a passage of max_tokens {budget} can hold"
        )
    return budget


def _content_bounds(text: str) -> Span:
    """``(start, end)`` of ``text`` without its leading and trailing whitespace."""
    body = text.strip()
    if not body:
        return 0, 0
    start = len(text) - len(text.lstrip())
    return start, start + len(body)


def _skip_space(text: str, pos: int, end: int) -> int:
    """First non-whitespace position at or after ``pos`` (``end`` if none before it)."""
    while pos < end and text[pos].isspace():
        pos += 1
    return pos
