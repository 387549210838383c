"""Analyzers: texts to index terms for BM25 (Kiwi morphemes; whitespace and character-bigram
baselines), and their JSON config, which a saved index keeps to analyze queries the same way.

Korean glues particles and endings onto words (``서울에서는``, ``먹었어요``), so whitespace
splitting leaves the query ``서울`` unable to match. :class:`MorphemeAnalyzer` runs Kiwi and keeps
content morphemes only.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from importlib import metadata
from typing import Any, NamedTuple, Protocol

from kosearch.errors import ConfigError
from kosearch.lexical.kiwi import DEFAULT_DICTS, LEGACY_DICTS, KiwiLoader

#: The part-of-speech tags Kiwi emits here (no ``W_*`` tags: URL/e-mail extraction is off),
#: without the ``-R``/``-I`` (regular/irregular) suffixes Kiwi appends to conjugating stems.
KIWI_TAGS: frozenset[str] = frozenset(
    "NNG NNP NNB NR NP VV VA VX VCP VCN MM MAG MAJ IC "
    "JKS JKC JKG JKO JKB JKV JKQ JX JC EP EF EC ETN ETM XPN XSN XSV XSA XSM XR "
    "SF SP SS SSO SSC SE SO SW SL SH SN SB UN Z_CODA Z_SIOT "
    "USER0 USER1 USER2 USER3 USER4".split()
)

#: Content morphemes kept for BM25: common/proper/bound nouns, numerals, pronouns, verb and
#: adjective stems, roots, foreign words (lowercased), hanja and numbers.
#: Chosen by measurement on KorQuAD and hand-written particle cases; see bench/lexical.py.
DEFAULT_TAGS: frozenset[str] = frozenset("NNG NNP NNB NR NP VV VA XR SL SH SN".split())

_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$")
_SPACE = re.compile(r"\s+")
_SCRIPT_JOIN = re.compile(r"(?<=[A-Za-z])(?=[가-힣])|(?<=[가-힣])(?=[A-Za-z])")


class Located(NamedTuple):
    """The terms of one text with their character offsets, and where its sentences start."""

    terms: list[tuple[str, int, int]]
    sentence_starts: list[int]


class Analyzer(Protocol):
    """Texts -> one list of index terms each; ``config()`` is JSON that
    :func:`analyzer_from_config` turns back into an equal analyzer."""

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]: ...

    def config(self) -> dict[str, Any]: ...


class MorphemeAnalyzer:
    """Kiwi morpheme analysis, keeping only the morphemes whose tag is in ``tags``.

    Particles (``J*``), endings (``E*``) and punctuation are dropped by the default tags; verbs
    and adjectives yield their stem (``먹었다`` -> ``먹``); every term is lowercased (``GPU`` ->
    ``gpu``).
    Kiwi is created on the first call to :meth:`tokenize`, not at construction.

    Args:
        tags: Kiwi part-of-speech tags to keep (see :data:`KIWI_TAGS`).
        num_workers: Kiwi threads for batched tokenization; ``None`` uses every core.
        kiwi: An existing ``kiwipiepy.Kiwi`` to share (e.g. the chunker's); saves ~300 MB
            and the start-up time. ``num_workers`` is then ignored, and the instance must have
            been made with ``dicts`` (see :mod:`kosearch.lexical.kiwi`).
        dicts: Kiwi's optional dictionaries to load (``multi``, ``typo``); none by default.
            Part of :meth:`config`, since they change the analysis.

    Raises:
        ConfigError: If ``tags`` is empty or holds a tag Kiwi does not know.
        ValueError: If ``num_workers`` is smaller than 1.

    Example:
        >>> MorphemeAnalyzer().tokenize(["서울에서는 GPU를 샀다"])
        [['서울', 'gpu', '사']]
    """

    def __init__(
        self,
        tags: Collection[str] = DEFAULT_TAGS,
        *,
        num_workers: int | None = None,
        kiwi: Any = None,
        dicts: Collection[str] = DEFAULT_DICTS,
    ) -> None:
        tag_set = frozenset(tags)
        unknown = sorted(tag_set - KIWI_TAGS)
        if not tag_set or unknown:
            raise ConfigError(
                f"unknown Kiwi tags {unknown or '(none given)'}; "
                f"choose from: {', '.join(sorted(KIWI_TAGS))}."
            )
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"num_workers must be >= 1 or None, got {num_workers}")
        self._tags = tag_set
        # Kiwi tags conjugating stems as e.g. "VV-R"/"VA-I"; match those without splitting strings.
        self._match = tag_set | {f"{t}-{s}" for t in tag_set for s in ("R", "I")}
        self._loader = KiwiLoader(
            num_workers=-1 if num_workers is None else num_workers, dicts=dicts,
            purpose="Korean lexical search", kiwi=kiwi,  # an existing Kiwi (~300 MB) to share
        )

    @property
    def tags(self) -> frozenset[str]:
        """The part-of-speech tags kept."""
        return self._tags

    @property
    def dicts(self) -> tuple[str, ...]:
        """Kiwi's optional dictionaries this analysis uses (sorted)."""
        return self._loader.dicts

    @property
    def loaded(self) -> bool:
        """Whether Kiwi is loaded (a background load still running counts as not)."""
        return self._loader.done

    def warm_up(self) -> None:
        """Start loading Kiwi in a background thread (~0.9 s), if it is not loaded yet."""
        self._loader.start()

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """Analyze many texts at once (Kiwi spreads a batch over its threads).

        Args:
            texts: The texts; empty strings give empty term lists.

        Returns:
            One list of lowercased morphemes per text, in text order.
        """
        if not texts:
            return []
        keep = self._match
        return [
            [tok.form.lower() for tok in tokens if tok.tag in keep]
            # match_options=0: no URL/e-mail/hashtag/serial extraction, so "naver.com" or
            # "010-1234-5678" split into SL/SN parts that partial queries can match.
            for tokens in self._loader.get().tokenize(list(texts), match_options=0)
        ]

    def tokenize_queries(self, texts: Sequence[str]) -> list[list[str]]:
        """Query terms that do not depend on how the query is spaced or its scripts glued.

        Korean users drop and add spaces (``서울시청역`` / ``서울 시청역``) and glue Latin to
        Hangul (``KB국민은행``), and Kiwi analyzes such spellings differently (``서울시청역``
        vs ``서울``, ``시청``, ``역``; ``kb국민은행`` vs ``kb``, ``국민은행``). So a query's
        terms are those of the query as typed, followed once by every new term of three
        respellings: Kiwi's own spacing (``Kiwi.space`` with the spaces reset), the query
        without spaces, and the query with a space between Latin letters and Hangul.
        Passages are analyzed as before (:meth:`tokenize`), so every index keeps its terms.
        Measured in bench/spacing.py.
        """
        texts = list(texts)
        if not texts:
            return []
        kiwi = self._loader.get()
        respelled = [
            *kiwi.space(texts, reset_whitespace=True),
            *(_SPACE.sub("", t) for t in texts),
            *(_SCRIPT_JOIN.sub(" ", t) for t in texts),
        ]
        every = self.tokenize(texts + respelled)
        out = []
        for i, terms in enumerate(every[: len(texts)]):
            seen = set(terms)
            extra = [t for v in range(1, 4) for t in every[v * len(texts) + i]
                     if not (t in seen or seen.add(t))]
            out.append(terms + extra)
        return out

    def locate(self, texts: Sequence[str]) -> list[Located]:
        """Where the terms of :meth:`tokenize` lie in each text, and where its sentences start.

        The same Kiwi analysis as :meth:`tokenize` (one batched call), keeping each term's
        character offsets in the text and Kiwi's sentence number.

        Returns:
            One :class:`Located` per text: its terms as ``(term, start, end)`` with
            ``text[start:end]`` the surface of the morpheme (``샀`` for the stem ``사``), and the
            offset of each sentence's first token.
        """
        if not texts:
            return []
        keep = self._match
        out: list[Located] = []
        for tokens in self._loader.get().tokenize(list(texts), match_options=0):
            terms: list[tuple[str, int, int]] = []
            starts: list[int] = []
            sentence = -1
            for tok in tokens:
                if tok.sent_position != sentence:
                    sentence = tok.sent_position
                    starts.append(tok.start)
                if tok.tag in keep:
                    terms.append((tok.form.lower(), tok.start, tok.start + tok.len))
            out.append(Located(terms, starts))
        return out

    def config(self) -> dict[str, Any]:
        """``{"name": "kiwi", "tags": [...], "dicts": [...], "kiwipiepy": "<version>"}``."""
        try:
            version: str | None = metadata.version("kiwipiepy")
        except metadata.PackageNotFoundError:
            version = None
        return {"name": "kiwi", "tags": sorted(self._tags), "dicts": list(self.dicts),
                "kiwipiepy": version}


class WhitespaceAnalyzer:
    """Lowercase, split on whitespace, strip punctuation from both ends of each word.

    This is what most BM25 libraries do by default; it is here to show why Korean needs
    :class:`MorphemeAnalyzer` (``서울에서는`` never matches ``서울``).
    """

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """One list of words per text."""
        out: list[list[str]] = []
        for text in texts:
            words = (_EDGE_PUNCT.sub("", w) for w in text.lower().split())
            out.append([w for w in words if w])
        return out

    def config(self) -> dict[str, Any]:
        """``{"name": "whitespace"}``."""
        return {"name": "whitespace"}


class CharBigramAnalyzer:
    """Remove whitespace, then take overlapping character bigrams (no lowercasing).

    The language-agnostic Korean baseline: ``서울 에서`` -> ``서울 울에 에서``; a one-character
    text is one term.
    """

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        """One list of bigrams per text."""
        out: list[list[str]] = []
        for text in texts:
            chars = _SPACE.sub("", text)
            if len(chars) == 1:
                out.append([chars])
            else:
                out.append([chars[i : i + 2] for i in range(len(chars) - 1)])
        return out

    def config(self) -> dict[str, Any]:
        """``{"name": "char_bigram"}``."""
        return {"name": "char_bigram"}


def query_terms(analyzer: Analyzer, queries: Sequence[str]) -> list[list[str]]:
    """The terms a search looks up for each query: the analyzer's ``tokenize_queries`` when
    it has one (Kiwi: robust to spacing), else its ``tokenize``."""
    tokenize = getattr(analyzer, "tokenize_queries", None) or analyzer.tokenize
    return tokenize(queries)


def analyzer_from_config(
    config: Mapping[str, Any], *, num_workers: int | None = None
) -> Analyzer:
    """Rebuild the analyzer described by ``config`` (the output of an analyzer's ``config()``).

    Args:
        config: A mapping with at least ``"name"`` (``kiwi``, ``whitespace`` or ``char_bigram``).
        num_workers: Kiwi threads, for the ``kiwi`` analyzer.

    Returns:
        A fresh analyzer.

    Raises:
        ConfigError: If the name is unknown or the Kiwi tags are invalid.
    """
    name = config.get("name")
    if name == "kiwi":
        tags = config.get("tags")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ConfigError(f"the kiwi analyzer config needs a list of tags, not {tags!r}.")
        # Indexes written before the dictionaries were recorded used Kiwi's defaults.
        dicts = config.get("dicts", list(LEGACY_DICTS))
        if not isinstance(dicts, list) or not all(isinstance(d, str) for d in dicts):
            raise ConfigError(f"the kiwi analyzer config needs a list of dicts, not {dicts!r}.")
        return MorphemeAnalyzer(tags, num_workers=num_workers, dicts=dicts)
    if name == "whitespace":
        return WhitespaceAnalyzer()
    if name == "char_bigram":
        return CharBigramAnalyzer()
    raise ConfigError(f"unknown analyzer {name!r}; choose one of: kiwi, whitespace, char_bigram.")
