"""Metrics: scoring a network on a split, Δm against single-task models, and per-task
verdicts over seeds. Below training: the trainer scores with them."""
