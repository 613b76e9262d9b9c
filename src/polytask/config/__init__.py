"""The run configuration: the schema (:mod:`.schema`), reading and validating it
(:mod:`.loading`), and the flat keys that CLI flags, API keywords and scikit-learn
parameters set (:mod:`.keys`)."""

from polytask.config.keys import flatten
from polytask.config.loading import (
    format_validation_error,
    load_config,
    load_yaml,
    parse_config,
    parse_saved_config,
    parse_task_spec,
    validate_options,
)
from polytask.config.schema import (
    BalancingConfig,
    DataConfig,
    FeaturesConfig,
    MlflowConfig,
    ModelConfig,
    RunConfig,
    SamplingConfig,
    SourceConfig,
    Strict,
    TaskConfig,
    TrackingConfig,
    TrainingConfig,
)

__all__ = [
    "BalancingConfig",
    "DataConfig",
    "FeaturesConfig",
    "MlflowConfig",
    "ModelConfig",
    "RunConfig",
    "SamplingConfig",
    "SourceConfig",
    "Strict",
    "TaskConfig",
    "TrackingConfig",
    "TrainingConfig",
    "flatten",
    "format_validation_error",
    "load_config",
    "load_yaml",
    "parse_config",
    "parse_saved_config",
    "parse_task_spec",
    "validate_options",
]
