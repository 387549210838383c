"""Corpus readers (JSONL, CSV, Parquet, folders) to Documents, and chunking Documents into Passages."""
