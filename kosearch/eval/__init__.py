"""Evaluation: datasets (BEIR, STS), metrics, runners and run files."""
