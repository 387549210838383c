"""The search pipeline: candidates per retriever, fusion, reranking, grouping to documents, hits."""
