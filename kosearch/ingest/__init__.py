"""Reading corpora into Documents and packing Documents into Passages that fit the model.

    corpus       CorpusReader: stream Documents from sources; empty texts, duplicate ids, digest
    formats      per-format record readers (JSONL, CSV/TSV, Parquet, folders) and detect_format
    records      record (dict) -> Document, and the id/text field checks
    jsonl        read_jsonl / read_lines: JSON Lines with errors of the caller's class
    chunk        Chunker: pack Documents into Passages of whole sentences within a token budget
    plan_driver  run the chunker's per-document plans with batched Kiwi and tokenizer calls
    sentences    SentenceSplitter: Korean sentence spans from Kiwi
    tokens       TokenCounter: token counts and offsets as the model sees them
"""

from __future__ import annotations
