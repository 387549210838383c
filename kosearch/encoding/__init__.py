"""Models: registry, loading and devices, the encoder, precision, worker processes, the ONNX
query export and runtime, the reranker."""

from __future__ import annotations
