"""Fine-tuning: adapt an embedding model to a collection with sentence-transformers."""

from __future__ import annotations
