"""kosearch: semantic and hybrid search over Korean document collections.

Importing this package is cheap: torch, sentence-transformers, faiss and kiwipiepy load only
when an index is built, loaded or searched. Every name a public signature uses is here, in
``__all__``; ``Index``, ``Encoder``, ``Reranker`` and the operations load on first access.
"""

from __future__ import annotations

import logging
from importlib import import_module
from typing import TYPE_CHECKING, Any

from kosearch._version import __version__
from kosearch.errors import (
    ConfigError,
    CorpusError,
    DatasetError,
    FilterError,
    IndexFormatError,
    IndexNotFoundError,
    KosearchError,
    MissingDependencyError,
    ModelLoadError,
    ModelMismatchError,
)
from kosearch.settings import ChunkSettings, Fields, Fusion, IndexSettings, SearchOptions
from kosearch.types import Document, Highlights, Hit, Metric, Mode, Passage, UpdateReport

if TYPE_CHECKING:
    from kosearch.encoding.encoder import Encoder
    from kosearch.encoding.rerank import Reranker
    from kosearch.index import Index
    from kosearch.operations import IndexingResult, index_directory, search_directory
    from kosearch.train.finetune import FinetuneResult, finetune

__all__ = [
    "ChunkSettings",
    "ConfigError",
    "CorpusError",
    "DatasetError",
    "Document",
    "Encoder",
    "Fields",
    "FinetuneResult",
    "FilterError",
    "Fusion",
    "Highlights",
    "Hit",
    "Index",
    "IndexFormatError",
    "IndexNotFoundError",
    "IndexSettings",
    "IndexingResult",
    "KosearchError",
    "Metric",
    "MissingDependencyError",
    "Mode",
    "ModelLoadError",
    "ModelMismatchError",
    "Passage",
    "Reranker",
    "SearchOptions",
    "UpdateReport",
    "__version__",
    "finetune",
    "index_directory",
    "search_directory",
]

# name -> the module that defines it; imported on first access (they pull in numpy, faiss...)
_LAZY = {
    "Index": "kosearch.index",
    "Encoder": "kosearch.encoding.encoder",
    "Reranker": "kosearch.encoding.rerank",
    "IndexingResult": "kosearch.operations",
    "index_directory": "kosearch.operations",
    "search_directory": "kosearch.operations",
    "finetune": "kosearch.train.finetune",
    "FinetuneResult": "kosearch.train.finetune",
}

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kosearch' has no attribute {name!r}")
