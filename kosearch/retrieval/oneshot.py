"""The helper process of one-shot queries (``python -m kosearch.retrieval.oneshot``): the
analysis server of :mod:`kosearch.lexical.analysis_server` (Kiwi, for BM25 terms and
highlights) with the query encoder of :mod:`kosearch.encoding.remote` beside it, so that a
lingering helper spares later one-shot queries both Kiwi's and the query model's start-up.

It lives here because it is the one module that joins the two layers; the query side joins
them in :func:`kosearch.operations.search_directory`.
"""

from __future__ import annotations

MODULE = "kosearch.retrieval.oneshot"


def main() -> None:
    """Run the analysis server with an :class:`~kosearch.encoding.remote.EncoderHost`."""
    from kosearch.encoding.remote import EncoderHost
    from kosearch.lexical.analysis_server import main as serve

    serve(EncoderHost())


if __name__ == "__main__":
    main()
