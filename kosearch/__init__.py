"""kosearch: semantic and hybrid search over Korean document collections.

Importing this package is cheap: torch, sentence-transformers, faiss and kiwipiepy load only
when an index is built, loaded or searched.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from kosearch._version import __version__  # noqa: E402
from kosearch.errors import (  # noqa: E402
    ConfigError,
    CorpusError,
    DatasetError,
    IndexFormatError,
    IndexNotFoundError,
    KosearchError,
    MissingDependencyError,
    ModelLoadError,
    ModelMismatchError,
)
from kosearch.types import Document, Hit, Metric, Passage  # noqa: E402

if TYPE_CHECKING:
    from kosearch.index import Index

__all__ = [
    "ConfigError",
    "CorpusError",
    "DatasetError",
    "Document",
    "Hit",
    "Index",
    "IndexFormatError",
    "IndexNotFoundError",
    "KosearchError",
    "Metric",
    "MissingDependencyError",
    "ModelLoadError",
    "ModelMismatchError",
    "Passage",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    # Index pulls in faiss and pyarrow; load it on first access only.
    if name == "Index":
        from kosearch.index import Index

        return Index
    raise AttributeError(f"module 'kosearch' has no attribute {name!r}")
