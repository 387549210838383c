"""Loading Kiwi (kiwipiepy), the Korean morphological analyzer: which dictionaries, and when.

Kiwi is the slowest thing a hybrid query loads. Its multi-word dictionary (proper nouns of
several words, from Wikipedia and Namuwiki titles) alone takes about 0.9 s of a ~1.8 s load on
this project's 2-core machine, and BM25 does not need it: on KorQuAD dev, BM25 over Kiwi
morphemes scores nDCG@10 0.9473 without it and 0.9467 with it. So new indexes load only the
default dictionary (:data:`DEFAULT_DICTS`, ~0.8 s); indexes built before this choice recorded no
dictionaries and keep Kiwi's own defaults (:data:`LEGACY_DICTS`), because the terms of a query
must come from the same analysis as the passages'.

Kiwi's load ends with its first analysis (about 0.3 s to construct, 0.4 s more for the first
call); :class:`KiwiLoader` does both, on first use or in a background thread from
:meth:`~KiwiLoader.start` on. Kiwi holds the GIL for nearly all of that, so a thread only
overlaps it with work that releases the GIL (an onnxruntime session, torch kernels); a one-shot
query analyzes in a child process instead (:mod:`kosearch.lexical.child_analysis`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from kosearch.errors import ConfigError, MissingDependencyError
from kosearch.lazy import Lazy

EXTRA_DICTS = frozenset({"multi", "typo"})
"""Kiwi's optional dictionaries: multi-word proper nouns, and common typos."""
DEFAULT_DICTS: tuple[str, ...] = ()
"""What new indexes load beside the default dictionary: nothing."""
LEGACY_DICTS: tuple[str, ...] = ("multi", "typo")
"""What ``Kiwi()`` loads by default; the analysis of indexes that recorded no dictionaries."""


def check_dicts(dicts: Collection[str]) -> tuple[str, ...]:
    """``dicts`` as a sorted tuple, or :class:`ConfigError` naming an unknown one."""
    if isinstance(dicts, str):
        dicts = [dicts]
    unknown = sorted(set(dicts) - EXTRA_DICTS)
    if unknown:
        raise ConfigError(
            f"unknown Kiwi dictionaries {unknown}; choose from: {', '.join(sorted(EXTRA_DICTS))}."
        )
    return tuple(sorted(set(dicts)))


class KiwiLoader:
    """One Kiwi, made on first :meth:`get`, or in the background from :meth:`start` on.

    Args:
        num_workers: passed to ``Kiwi`` (its threads for batched calls).
        dicts: optional dictionaries to load besides the default one (see :data:`EXTRA_DICTS`).
        purpose: what needs Kiwi, for the error when kiwipiepy is missing.
        kiwi: an existing ``kiwipiepy.Kiwi`` made with ``dicts``, to share instead of loading.

    Example:
        >>> loader = KiwiLoader(num_workers=1)
        >>> loader.start()                      # returns at once; Kiwi loads meanwhile
        >>> loader.get().tokenize("한국어")[0].form
        '한국어'
    """

    def __init__(
        self,
        *,
        num_workers: int | None = None,
        dicts: Collection[str] = DEFAULT_DICTS,
        purpose: str = "Korean text analysis",
        kiwi: Any = None,
    ) -> None:
        self.num_workers = num_workers
        self.dicts = check_dicts(dicts)
        self._purpose = purpose
        self._kiwi: Lazy[Any] = (
            Lazy(self._load, name="kiwi") if kiwi is None else Lazy.of(kiwi, name="kiwi")
        )

    def start(self) -> None:
        """Begin loading in a background thread, unless loading has begun or is done."""
        self._kiwi.start()

    @property
    def done(self) -> bool:
        """Whether Kiwi is loaded."""
        return self._kiwi.done

    def get(self) -> Any:
        """The Kiwi instance, waiting for a background load or loading it now.

        Raises:
            MissingDependencyError: kiwipiepy is not installed.
        """
        return self._kiwi.get()

    def _load(self) -> Any:
        try:
            from kiwipiepy import Kiwi
        except ImportError as e:
            raise MissingDependencyError(
                f"{self._purpose} needs the kiwipiepy package: pip install kiwipiepy"
            ) from e
        kiwi = Kiwi(
            num_workers=self.num_workers,
            load_multi_dict="multi" in self.dicts,
            load_typo_dict="typo" in self.dicts,
        )
        kiwi.tokenize("한국어")  # Kiwi finishes loading on its first analysis (~0.4 s)
        return kiwi
