"""Highlights: the sentence(s) of each hit that best answer its query, and the matched words.

The query and the passage go through the index's own BM25 analyzer (Kiwi morphemes; a dense-only
index gets the default one), so a word is highlighted exactly when it yields a BM25 term of the
query: ``서울에서는`` lights up ``서울`` for the query ``서울 날씨``. The best sentence is the one
whose matched terms weigh most (BM25 idf when the index has BM25, else 1 per term), ties to the
earlier; a best sentence shorter than :data:`MIN_CHARS` is joined with its neighbour. A hit
matching no term gets its first sentence and no spans. (bench/snippets.py measures the choice:
on KorQuAD dev the idf-weighted sentence holds the answer span for 0.808 of the questions, the
first sentence for 0.307, the dense model's choice for 0.767, idf + dense for 0.810.)

Only the returned hits are analyzed, never the candidates, and of each hit only the parts that
can hold the best sentence: the passage is cut into rough sentences at sentence-final punctuation
and line breaks (shorter ones joined to their neighbour), each rough sentence is scored by the
query terms found in it as plain substrings, and only the best :data:`ROUGH_CANDIDATES` go to Kiwi
(one batched call for all hits; analyses are cached per text), which then picks the sentence and
the matched morphemes as above. Kiwi reads about a third of each passage so, and the choice holds
the answer about as often as analyzing whole passages did (bench/snippets.py). Offsets are into
the hit's own text: text that is not in NFC (decomposed Hangul jamo) is normalized for Kiwi and
the offsets mapped back.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kosearch.types import Highlights, Hit

if TYPE_CHECKING:
    from kosearch.lexical.analyzers import Located, MorphemeAnalyzer

MIN_CHARS = 40
"""A best sentence shorter than this many characters is joined with the next (or previous)."""
CACHE_SIZE = 2048
"""Text analyses a :class:`Highlighter` keeps (about 2 KB each)."""
ROUGH_CANDIDATES = 1
"""Rough sentences of a hit that Kiwi analyzes (the best by plain substring matches)."""

_BREAK = re.compile(r"\s+")
_TERMINALS = frozenset(".!?。！？…‼⁇⁈⁉\"'”’」』)]}》〉")
_HANGUL_MEDIALS = range(0x1160, 0x1200)  # conjoining vowels and finals: NFC joins them leftwards

#: The weight of each query term (the BM25 idf), given the terms; None weighs every term 1.
Weights = Callable[[list[str]], list[float]]


class Highlighter:
    """Computes :class:`~kosearch.types.Highlights` with one analyzer, caching passage analyses.

    Args:
        analyzer: A Kiwi analyzer (anything with ``tokenize`` and ``locate``), ideally the
            index's BM25 analyzer so that the highlighted words are the BM25 terms.
        cache_size: Passage analyses kept, least recently used dropped first.

    Example:
        >>> from kosearch.lexical.analyzers import MorphemeAnalyzer
        >>> h = Highlighter(MorphemeAnalyzer(num_workers=1))
        >>> text = "부산은 맑다. 서울에서는 비가 온다고 하니 우산을 챙기세요."
        >>> h.highlight("서울 날씨", [text])[0].spans
        ((8, 10),)
    """

    def __init__(self, analyzer: MorphemeAnalyzer, cache_size: int = CACHE_SIZE) -> None:
        self.analyzer = analyzer
        self._cache: OrderedDict[str, Located] = OrderedDict()
        self._cache_size = cache_size

    def highlight(self, query: str, texts: Sequence[str],
                  weights: Weights | None = None) -> list[Highlights]:
        """The highlights of each of ``texts`` for ``query``."""
        terms = self.analyzer.tokenize_queries([_nfc(query)[0]])[0]  # the BM25 query terms
        unique = list(dict.fromkeys(terms))
        weight = dict(zip(unique, weights(unique) if weights else [1.0] * len(unique)))
        normal = [_nfc(text) for text in texts]
        parts = [rough_candidates(norm, weight) for norm, _ in normal]
        located = iter(self._locate([norm[lo:hi] for (norm, _), found in zip(normal, parts)
                                     for lo, hi in found]))
        return [_highlights(text, norm, where, [(lo, hi, next(located)) for lo, hi in found],
                            weight)
                for text, (norm, where), found in zip(texts, normal, parts)]

    def _locate(self, texts: list[str]) -> list[Located]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for text, loc in zip(missing, self.analyzer.locate(missing)):
            self._cache[text] = loc
        out = []
        for text in texts:
            self._cache.move_to_end(text)
            out.append(self._cache[text])
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out


def highlight_hits(highlighter: Highlighter, queries: Sequence[str],
                   results: Sequence[list[Hit]], weights: Weights | None = None) -> list[list[Hit]]:
    """``results`` (one hit list per query) with each hit's ``highlights`` filled in."""
    out = []
    for query, hits in zip(queries, results, strict=True):
        found = highlighter.highlight(query, [h.text for h in hits], weights) if hits else []
        out.append([dataclasses.replace(h, highlights=x) for h, x in zip(hits, found)])
    return out


def rough_candidates(text: str, weight: dict[str, float]) -> list[tuple[int, int]]:
    """The :data:`ROUGH_CANDIDATES` rough sentences of ``text`` whose plain-substring matches of
    the query terms weigh most (the earlier on ties), in text order."""
    units = rough_sentences(text)
    if len(units) <= ROUGH_CANDIDATES:
        return units
    lowered = text.lower()
    scores = [sum(w for term, w in weight.items() if term in lowered[lo:hi]) for lo, hi in units]
    best = sorted(range(len(units)), key=lambda i: (-scores[i], i))[:ROUGH_CANDIDATES]
    out: list[tuple[int, int]] = []
    for i in sorted(best):  # each with the next one, which a short best sentence may join
        lo, hi = units[i][0], units[min(i + 1, len(units) - 1)][1]
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def rough_sentences(text: str) -> list[tuple[int, int]]:
    """``text`` cut at whitespace after sentence-final punctuation and at line breaks, each
    piece shorter than :data:`MIN_CHARS` joined to the next (the last to the previous)."""
    cuts = [0] + [m.end() for m in _BREAK.finditer(text)
                  if "\n" in m.group() or (m.start() > 0 and text[m.start() - 1] in _TERMINALS)]
    pieces = [t for t in (_strip(text, a, b) for a, b in zip(cuts, [*cuts[1:], len(text)]))
              if t[0] < t[1]]
    units: list[tuple[int, int]] = []
    pending: tuple[int, int] | None = None
    for lo, hi in pieces:
        if pending is not None:
            lo = pending[0]
        pending = (lo, hi) if hi - lo < MIN_CHARS else None
        if pending is None:
            units.append((lo, hi))
    if pending is not None:
        if units:
            units[-1] = (units[-1][0], pending[1])
        else:
            units.append(pending)
    return units


def _highlights(text: str, norm: str, where: _Origin | None,
                parts: list[tuple[int, int, Located]], weight: dict[str, float]) -> Highlights:
    """Pick the sentence(s) of ``norm`` (``text`` in NFC), given the analyses of some of its
    parts (their offsets and Kiwi's analysis), and map the offsets to ``text``."""
    best: tuple[float, int, int, list[tuple[int, int]]] | None = None
    for offset, end, loc in parts:
        sentences = sentence_spans(norm[offset:end], loc.sentence_starts)
        if not sentences:
            continue
        scores = sentence_scores(loc, sentences, weight)
        lo, hi = snippet_bounds(sentences, scores)
        if best is None or max(scores) > best[0]:
            matched = [(s, e) for term, s, e in loc.terms if term in weight and s < hi and e > lo]
            best = (max(scores), lo + offset, hi + offset,
                    [(max(s, lo) + offset, min(e, hi) + offset) for s, e in matched])
    if best is None:
        return Highlights(snippet="", start=0, end=0)
    _, lo, hi, found = best
    spans = _merge(found)
    if where is not None:
        lo, hi = where.span(lo, hi)
        spans = _merge([where.span(s, e) for s, e in spans])
    spans = [t for t in (_strip(text, s, e) for s, e in spans) if t[0] < t[1]]
    return Highlights(snippet=text[lo:hi], start=lo, end=hi, spans=tuple(spans))


def sentence_scores(loc: Located, sentences: list[tuple[int, int]],
                    weight: dict[str, float]) -> list[float]:
    """Per sentence, the summed weight of the distinct query terms it holds."""
    scores = []
    for lo, hi in sentences:
        found = {term for term, s, _ in loc.terms if lo <= s < hi and term in weight}
        scores.append(sum(weight[t] for t in found))
    return scores


def snippet_bounds(sentences: list[tuple[int, int]], scores: Sequence[float]) -> tuple[int, int]:
    """The best-scoring sentence (the earliest on ties), joined with its neighbour when shorter
    than :data:`MIN_CHARS`."""
    best = max(range(len(sentences)), key=lambda i: (scores[i], -i))
    lo, hi = sentences[best]
    if hi - lo < MIN_CHARS and len(sentences) > 1:
        if best + 1 < len(sentences):
            hi = sentences[best + 1][1]
        else:
            lo = sentences[best - 1][0]
    return lo, hi


def sentence_spans(text: str, starts: list[int]) -> list[tuple[int, int]]:
    """Whitespace-trimmed sentence spans from Kiwi's sentence starts, keeping only the starts
    after whitespace or sentence-final punctuation (Kiwi also splits before an emoji or after
    Hanja), so that the spans cover every non-space character."""
    cuts = [0] + [p for p in starts if 0 < p < len(text)
                  and (text[p - 1].isspace() or text[p - 1] in _TERMINALS)]
    cuts = sorted(set(cuts)) + [len(text)]
    return [t for t in (_strip(text, a, b) for a, b in zip(cuts, cuts[1:])) if t[0] < t[1]]


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted spans with overlapping and touching ones merged (``샀`` is ``사`` and ``었``)."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        elif s < e:
            out.append((s, e))
    return out


@dataclasses.dataclass(frozen=True)
class _Origin:
    """For each character of an NFC text, the span of the original text it came from."""

    lo: list[int]
    hi: list[int]

    def span(self, start: int, end: int) -> tuple[int, int]:
        return self.lo[start], self.hi[end - 1] if end > start else self.lo[start]


def _nfc(text: str) -> tuple[str, _Origin | None]:
    """``text`` in NFC, and where each of its characters came from (None: unchanged).

    Normalizes segment by segment, a segment being a starter with the marks and conjoining
    jamo that follow it; if that differs from normalizing the whole text (it never should),
    the text is analyzed as it is.
    """
    if unicodedata.is_normalized("NFC", text):
        return text, None
    cuts = [i for i, c in enumerate(text)
            if i == 0 or (unicodedata.combining(c) == 0 and ord(c) not in _HANGUL_MEDIALS)]
    parts, lo, hi = [], [], []
    for a, b in zip(cuts, [*cuts[1:], len(text)]):
        part = unicodedata.normalize("NFC", text[a:b])
        parts.append(part)
        lo += [a] * len(part)
        hi += [b] * len(part)
    norm = "".join(parts)
    if norm != unicodedata.normalize("NFC", text):
        return text, None
    return norm, _Origin(lo, hi)
