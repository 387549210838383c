"""Lexical retrieval: analyzers (Kiwi morphemes, bigrams), the BM25 index and its format, the
query-analysis child process."""
