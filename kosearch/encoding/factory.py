"""Which encoder an index gets: the passage encoder of a build, the query encoder of a load.

The one place that turns settings into a loaded :class:`~kosearch.encoding.encoder.Encoder`,
and that checks an encoder against the model an index was built with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from kosearch.errors import ModelMismatchError

if TYPE_CHECKING:
    from kosearch.encoding.encoder import Encoder
    from kosearch.settings import IndexSettings


class ModelIdentity(Protocol):
    """What an index records of its model (``ModelInfo`` in the manifest)."""

    name: str
    dim: int
    fingerprint: str
    max_tokens: int
    query_prompt: str
    passage_prompt: str


def load_encoder(
    model: str | None,
    settings: IndexSettings | None = None,
    *,
    device: str | None = None,
    query_prompt: str | None = None,
    passage_prompt: str | None = None,
) -> Encoder:
    """A sentence-transformers encoder for ``model`` (None = ``$KOSEARCH_MODEL``, else the
    registry default).

    With ``settings`` (a build or an update), its device, prompts, batch size, precision and
    processes are used; without, fp32 with the given device and prompts.
    """
    from kosearch.encoding.encoder import SentenceTransformerEncoder
    from kosearch.encoding.registry import default_model

    if settings is not None:
        device = settings.device
        query_prompt = settings.query_prompt
        passage_prompt = settings.passage_prompt
    return SentenceTransformerEncoder(
        model or default_model(),
        device=device,
        batch_size=settings.batch_size if settings is not None else 32,
        query_prompt=query_prompt,
        passage_prompt=passage_prompt,
        precision=settings.precision if settings is not None else None,
        processes=settings.processes if settings is not None else None,
    )


def load_query_encoder(info: ModelIdentity, backend: str, device: str | None) -> Encoder:
    """The query encoder of an index whose model is ``info``, checked against it.

    ``backend`` is ``torch``, ``onnx`` or ``auto`` (see
    :func:`kosearch.encoding.onnx_export.load_query_encoder`).
    """
    from kosearch.encoding.onnx_export import load_query_encoder as load_for_backend

    encoder: Encoder = load_for_backend(info, backend, device, lambda: load_encoder(
        info.name, device=device, query_prompt=info.query_prompt,
        passage_prompt=info.passage_prompt,
    ))
    check_encoder(info, encoder)
    return encoder


def check_encoder(info: ModelIdentity, encoder: Encoder) -> None:
    """Refuse an encoder whose model or dimension differs from the index's model ``info``."""
    if encoder.dim != info.dim:
        raise ModelMismatchError(
            f"the index was built with {info.name} (dim {info.dim}) but the query model "
            f"{encoder.name} has dim {encoder.dim}; query with the index's model"
        )
    if encoder.fingerprint != info.fingerprint:
        raise ModelMismatchError(
            f"the index was built with {info.name} but the query model is {encoder.name} "
            "(different weights); query with the index's model or rebuild the index"
        )
