"""Real kosearch HTTP servers on free ports, for the search page's browser test.

    python tests/pageserver.py --api-key KEY

Builds in-memory indexes of :data:`DOCS` with the fake encoder and serves them on 127.0.0.1, on
ports the system picks: a hybrid one without an API key, and a dense-only one that needs
``KEY``. Prints ``ports <open> <keyed>`` on stdout once both sockets listen (connections made
before uvicorn starts wait in the backlog), then serves until terminated. A separate process,
so that the test process keeps pytest-socket's ban on sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import TYPE_CHECKING

from fakes import SAMPLE_DOCS, HashEncoder

from kosearch.types import Document

if TYPE_CHECKING:
    from kosearch.index import Index

#: The sample documents plus one whose title and text are markup, to show they stay text.
DOCS = [
    *SAMPLE_DOCS,
    Document("xss", "보안 점검: <script>window.pwned = 1</script> 한강 <b>굵게</b>",
             "<img src=x onerror=\"window.pwned = 1\">", {"category": "<i>x</i>"}),
]


def build_index(*, lexical: bool = True) -> Index:
    from kosearch.index import Index

    return Index.build(DOCS, encoder=HashEncoder(), lexical=lexical)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-key", required=True)
    args = parser.parse_args()
    import uvicorn

    from kosearch.serving.app import create_app

    servers, ports = [], []
    # each app owns its index (and its search thread); the second one is dense-only
    for key, lexical in ((None, True), (args.api_key, False)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        index = build_index(lexical=lexical)
        index.search("서울", 1)  # load what a first search loads (Kiwi) before serving
        config = uvicorn.Config(create_app(index, api_key=key), log_level="warning",
                                access_log=False)
        servers.append(uvicorn.Server(config).serve(sockets=[sock]))
        ports.append(str(sock.getsockname()[1]))
    print("ports", *ports, flush=True)

    async def serve_all() -> None:
        await asyncio.gather(*servers)

    asyncio.run(serve_all())
    sys.exit(0)


if __name__ == "__main__":
    main()
