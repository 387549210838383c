"""The query encoder of a lingering helper process: encoding one-shot queries without loading
onnxruntime, the tokenizer or the ONNX session in the query's own process.

A one-shot ``kosearch query`` spends about 0.8 s opening the ONNX query encoder (tokenizer
0.4 s, session 0.4 s) for a dozen tokens of work. The lingering analysis server
(:mod:`kosearch.lexical.analysis_server`) that Kiwi already lives in can hold that encoder too:
:class:`EncoderHost` loads the export a query asked for once that query's session is over, and
encodes later queries' texts (``{"op": "encode", "encoder": <export directory>, "texts":
[...]}``); :class:`RemoteQueryEncoder` stands in for the local encoder on the query side.

The vectors are the same, bit for bit: the host runs the same :class:`OnnxQueryEncoder` with the
same settings (one thread, the same batches), and float32 values travel as JSON numbers, which
round-trip exactly. Anything that goes wrong makes the query load its own encoder, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the helper must start without numpy
    import numpy as np
    from numpy.typing import NDArray

    from kosearch.encoding.onnx_runtime import OnnxQueryEncoder

log = logging.getLogger(__name__)

MAX_ENCODERS = 2
"""How many query encoders (~150 MB each) a helper keeps; the least recently asked goes."""


def encoder_spec(directory: str, name: str, query_prompt: str,
                 passage_prompt: str) -> dict[str, str]:
    """What a query asks the host to load: an export directory and how to report it."""
    return {"directory": directory, "name": name, "query_prompt": query_prompt,
            "passage_prompt": passage_prompt}


class EncoderHost:
    """The query-encoder part of a lingering helper (an
    :class:`~kosearch.lexical.analysis_server.Host`)."""

    def __init__(self) -> None:
        self._encoders: dict[str, OnnxQueryEncoder] = {}
        self._wanted: dict[str, dict[str, str]] = {}

    def first(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{"encoder": {directory, fingerprint, dim}}`` when the asked encoder is loaded;
        else ``{"encoder": None}``, and it is loaded after the session."""
        spec = request.get("encoder")
        if not isinstance(spec, dict) or not isinstance(spec.get("directory"), str):
            return {}
        directory = spec["directory"]
        encoder = self._encoders.pop(directory, None)
        if encoder is None:
            self._wanted[directory] = {k: str(v) for k, v in spec.items()}
            return {"encoder": None}
        self._encoders[directory] = encoder  # the most recently asked last
        return {"encoder": {"directory": directory, "fingerprint": encoder.fingerprint,
                            "dim": encoder.dim, "query_prompt": encoder.query_prompt}}

    def handle(self, op: str, asked: dict[str, Any]) -> Any:
        """Encode ``asked["texts"]`` as queries with the encoder ``asked["encoder"]``."""
        if op != "encode":
            raise KeyError(op)
        vectors = self._encoders[asked["encoder"]].encode_queries(list(asked["texts"]))
        return vectors.tolist()

    def prepare(self) -> None:
        """Load the encoders asked for since the last call (failures are skipped)."""
        from kosearch.encoding.onnx_runtime import OnnxQueryEncoder

        wanted, self._wanted = self._wanted, {}
        for directory, spec in wanted.items():
            try:
                self._encoders[directory] = OnnxQueryEncoder(
                    directory, name=spec["name"], query_prompt=spec["query_prompt"],
                    passage_prompt=spec["passage_prompt"])
            except Exception as e:  # noqa: BLE001 - the query loads its own then
                log.debug("the helper cannot load the query encoder %s (%s)", directory, e)
        while len(self._encoders) > MAX_ENCODERS:
            del self._encoders[next(iter(self._encoders))]


class RemoteQueryEncoder:
    """An :class:`~kosearch.encoding.encoder.Encoder` whose queries a helper encodes.

    Args:
        ask: sends a request (``ask("encode", texts, encoder=directory)``) and returns its
            result, ``None`` if the helper failed (:meth:`ChildAnalysis.ask
            <kosearch.lexical.child_analysis.ChildAnalysis.ask>`).
        directory: the export directory the helper encodes with.
        info: the index's model (name, dim, fingerprint, max tokens, prompts).
        local: loads this process's own query encoder, used where the helper fails.
    """

    precision = "fp32"

    def __init__(self, ask: Callable[..., Any], directory: str, info: Any,
                 local: Callable[[], Any]) -> None:
        self._ask = ask
        self.directory = directory
        self.name = info.name
        self.dim = int(info.dim)
        self.fingerprint = info.fingerprint
        self.max_tokens = int(info.max_tokens)
        self.query_prompt = info.query_prompt
        self.passage_prompt = info.passage_prompt
        self._load_local = local
        self._local: Any = None

    def __repr__(self) -> str:
        return f"RemoteQueryEncoder(name={self.name!r}, directory={self.directory!r})"

    @property
    def local(self) -> Any:
        """This process's own encoder, loaded on first use."""
        if self._local is None:
            self._local = self._load_local()
        return self._local

    def encode_queries(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Encode queries with the helper; with the local encoder if it fails."""
        items = list(texts)
        if self._local is None and items:
            result = self._ask("encode", items, encoder=self.directory)
            vectors = _as_vectors(result, len(items), self.dim)
            if vectors is not None:
                return vectors
            log.debug("the helper did not encode the queries; loading the query encoder here")
        return self.local.encode_queries(items)

    def encode_passages(self, texts: Sequence[str], **options: Any) -> NDArray[np.float32]:
        """Passages are encoded here (a search never needs it)."""
        return self.local.encode_passages(texts, **options)


def _as_vectors(result: Any, count: int, dim: int) -> NDArray[np.float32] | None:
    """``result`` as a ``(count, dim)`` float32 array, or ``None`` if it is not one."""
    import numpy as np

    try:
        vectors = np.asarray(result, dtype=np.float32)
    except (TypeError, ValueError):
        return None
    return vectors if vectors.shape == (count, dim) else None
