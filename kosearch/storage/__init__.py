"""The index on disk: file layout, manifest, FAISS vectors and ANN types, the passage table,
atomic writes."""
