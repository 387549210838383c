"""Models: registry, loading and devices, the encoder, precision, worker processes, ONNX query runtime, reranker."""
