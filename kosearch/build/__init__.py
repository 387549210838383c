"""Building and updating indexes: the run pipeline, the index writer, checkpoints and
the run lifecycle."""
