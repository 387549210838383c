"""The names of the files and folders of an index directory, defined here and nowhere else.

An index directory holds::

    manifest.json      what the index was built from (kosearch.storage.manifest)
    vectors.faiss      the FAISS index (kosearch.storage.vectors)
    passages.parquet   the passage table, row-aligned with the vectors (kosearch.storage.passages)
    passages.arrow     the same rows as an uncompressed Arrow IPC file, memory-mapped when the
                       index is served (optional: an index without it reads the Parquet)
    embeddings.npy     the original vectors, kept only beside a lossy (PQ, SQ8) FAISS index
    lexical/           the BM25 index, when built (kosearch.lexical.bm25)

A run that writes the index ``idx`` keeps its scratch files in ``idx.partial`` beside it
(kosearch.build.checkpoint).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CHECKPOINT_SUFFIX",
    "EMBEDDINGS_FILE",
    "LEXICAL_DIR",
    "MANIFEST_FILE",
    "PASSAGES_ARROW_FILE",
    "PASSAGES_FILE",
    "VECTORS_FILE",
    "is_index",
]

MANIFEST_FILE = "manifest.json"
VECTORS_FILE = "vectors.faiss"
PASSAGES_FILE = "passages.parquet"
PASSAGES_ARROW_FILE = "passages.arrow"  # the Parquet's rows for serving (memory-mapped)
EMBEDDINGS_FILE = "embeddings.npy"
LEXICAL_DIR = "lexical"  # the BM25 part of an index directory
CHECKPOINT_SUFFIX = ".partial"  # appended to the index directory's name for a run's scratch files


def is_index(directory: str | os.PathLike[str]) -> bool:
    """Whether ``directory`` holds an index (its manifest), without reading it."""
    return (Path(directory) / MANIFEST_FILE).is_file()
