"""The training loop."""

from polytask.training.callbacks import Callback
from polytask.training.trainer import Trainer, TrainingDiverged, TrainResult, resolve_device

__all__ = ["Callback", "TrainResult", "Trainer", "TrainingDiverged", "resolve_device"]
