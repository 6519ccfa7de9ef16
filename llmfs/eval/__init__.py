"""Evaluation: log-likelihood scoring, perplexity and benchmark tasks (L14)."""
