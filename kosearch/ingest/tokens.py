"""Token counts and token offsets of texts as the embedding model sees them.

:class:`TokenCounter` wraps the model's fast (Rust) tokenizer: content tokens of a text, the
character span of each token, and the exact length of ``prompt + text`` with the special tokens.
The chunker measures every passage with it, so nothing is silently truncated by the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kosearch.errors import ConfigError

if TYPE_CHECKING:
    import tokenizers

Span = tuple[int, int]
"""Character ``(start, end)`` of a token or a sentence in a text."""


class TokenCounter:
    """Counts tokens the way the model sees them, from its fast (Rust) ``tokenizers.Tokenizer``.

    The tokenizer is copied, and truncation and padding are switched off on the copy, so the
    counts are never capped and the caller's tokenizer is left untouched.

    Attributes:
        max_tokens: The model's maximum sequence length, special tokens included.
        prompt: The text the model puts before every passage (e.g. ``"passage: "``).
        overhead: Tokens every passage pays for the prompt and the special tokens, measured as
            ``full_length(["가"]) - count(["가"])``.

    Example:
        >>> counter = TokenCounter.from_file("model/tokenizer.json", max_tokens=512,
        ...                                  prompt="passage: ")
        >>> counter.count(["안녕하세요."])
        [2]
    """

    def __init__(
        self, tokenizer: tokenizers.Tokenizer, *, max_tokens: int, prompt: str = ""
    ) -> None:
        if max_tokens < 1:
            raise ConfigError(f"the model's max_tokens must be positive, got {max_tokens}")
        copy = type(tokenizer).from_str(tokenizer.to_str())
        copy.no_truncation()
        copy.no_padding()
        self._tokenizer = copy
        self.max_tokens = max_tokens
        self.prompt = prompt
        self.overhead = max(0, self.full_length(["가"])[0] - self.count(["가"])[0])

    @classmethod
    def from_file(cls, path: str, *, max_tokens: int, prompt: str = "") -> TokenCounter:
        """Load a ``tokenizer.json`` file (see ``__init__`` for the arguments)."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)), max_tokens=max_tokens, prompt=prompt)

    def count(self, texts: Sequence[str]) -> list[int]:
        """Content tokens of each text: no special tokens, no prompt."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def spans(self, text: str) -> list[Span]:
        """Character ``(start, end)`` of each content token of ``text``, in order."""
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)

    def spans_batch(self, texts: Sequence[str]) -> list[list[Span]]:
        """``spans`` of many texts in one batched call."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [list(e.offsets) for e in encodings]

    def full_length(self, texts: Sequence[str]) -> list[int]:
        """Exact tokens the model sees for ``prompt + text``, special tokens included."""
        prompted = [self.prompt + text for text in texts]
        return [len(e.ids) for e in self._tokenizer.encode_batch(prompted)]

    def full_length_with_spans(self, texts: Sequence[str]) -> list[tuple[int, list[Span]]]:
        """``full_length`` and the content-token ``spans`` of each text, from one encoding of
        ``prompt + text``; spans are relative to ``text`` (a token straddling the prompt and
        the text starts at 0)."""
        shift = len(self.prompt)
        out: list[tuple[int, list[Span]]] = []
        for e in self._tokenizer.encode_batch([self.prompt + text for text in texts]):
            pairs = zip(e.offsets, e.special_tokens_mask, strict=True)
            spans = [(max(0, a - shift), b - shift) for (a, b), sp in pairs if not sp and b > shift]
            out.append((len(e.ids), spans))
        return out
