"""The training loop."""

from polytask.training.trainer import Trainer, TrainingDiverged, TrainResult, resolve_device

__all__ = ["TrainResult", "Trainer", "TrainingDiverged", "resolve_device"]
