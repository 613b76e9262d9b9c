"""Scoring runs: metrics per task on labelled rows."""

from polytask.evaluation.scoring import higher_is_better, raw_outputs, score, task_losses

__all__ = ["higher_is_better", "raw_outputs", "score", "task_losses"]
