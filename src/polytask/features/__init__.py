"""Reading tables, inferring and fitting feature preprocessing, fast batching."""

from polytask.features.batches import Batch, TensorTable
from polytask.features.io import check_frame, read_table
from polytask.features.preprocess import FeatureTensors, Preprocessor

__all__ = ["Batch", "FeatureTensors", "Preprocessor", "TensorTable", "check_frame", "read_table"]
