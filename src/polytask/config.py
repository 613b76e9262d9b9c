"""The run configuration: one validated schema for the YAML file, the CLI flags and the API.

Every key is declared here once (task, balancer and architecture options are declared
next to their code and validated through :func:`validate_options`). An unknown key is an
error that names the closest known key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    ValidationError,
    model_validator,
)

from polytask.errors import PolytaskError, did_you_mean


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false are booleans, so values such as
    ``positive: yes`` or ``positive: on`` stay the text the user wrote."""


_Yaml12Loader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Strict):
    #: the data file (CSV or Parquet); the splits not given below are drawn from it
    path: str | None = None
    validation: str | None = None
    test: str | None = None
    validation_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)

    @model_validator(mode="after")
    def _fractions(self) -> DataConfig:
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError("validation_fraction + test_fraction must leave >= 10% to train")
        return self


class TaskConfig(BaseModel):
    """One task: ``name``, ``kind``, its label ``column`` (or ``columns`` for multilabel
    0/1 columns), and the kind's own options as further keys (e.g. ``positive: yes``)."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    kind: str
    column: str | None = None
    columns: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_from_column(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data and data.get("column"):
            data = {**data, "name": data["column"]}
        return data

    @model_validator(mode="after")
    def _columns_only_for_multilabel(self) -> TaskConfig:
        if self.columns is not None and self.kind != "multilabel":
            raise ValueError(
                f"task '{self.name}': 'columns' (several label columns) is for multilabel "
                "tasks; use 'column' for one label column"
            )
        if self.columns is not None and len(self.columns) < 2:
            raise ValueError(f"task '{self.name}': 'columns' needs at least two 0/1 columns")
        return self

    @property
    def label_columns(self) -> list[str]:
        if self.columns:
            return list(self.columns)
        return [self.column or self.name]

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class FeaturesConfig(Strict):
    #: use only these columns as features (default: every column that is not a label)
    include: list[str] | None = None
    drop: list[str] = Field(default_factory=list)
    #: override inferred types
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    boolean: list[str] = Field(default_factory=list)
    #: keep at most this many categories per column (the rest share the unknown bucket)
    max_categories: int = Field(1000, ge=1)
    #: categories seen fewer times than this in training share the unknown bucket
    min_category_count: int = Field(1, ge=1)
    #: embedding size per categorical column; None picks one from the vocabulary size
    embedding_dim: int | None = Field(None, ge=1)
    max_embedding_dim: int = Field(16, ge=1)


class ModelConfig(Strict):
    architecture: str = "hard"
    #: widths of the shared trunk's hidden layers
    hidden: list[PositiveInt] = Field(default_factory=lambda: [256, 128])
    activation: Literal["relu", "gelu", "silu", "tanh", "elu"] = "relu"
    dropout: float = Field(0.3, ge=0, lt=1)
    norm: Literal["layer", "batch", "none"] = "layer"
    #: hidden widths of each task head (empty: a linear head on the shared representation)
    head_hidden: list[PositiveInt] = Field(default_factory=list)
    #: options of the chosen architecture
    options: dict[str, Any] = Field(default_factory=dict)


class BalancingConfig(BaseModel):
    """``method`` plus that method's options as further keys; ``jacobian`` is read by the
    trainer for gradient-level methods."""

    model_config = ConfigDict(extra="allow")

    method: str = "ew"
    #: where gradient-level methods take the task gradients: the shared parameters, or
    #: the shared representation (cheaper; with mgda this is MGDA-UB)
    jacobian: Literal["parameters", "representation"] = "parameters"
    #: every this many steps, log the task weights and the pairwise cosine of the task
    #: gradients to the history (0: never)
    log_every: int = Field(100, ge=0)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainingConfig(Strict):
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    #: learning-rate schedule over epochs
    schedule: Literal["cosine", "constant", "plateau"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    #: clip the gradient norm to this value (None: no clipping)
    grad_clip: float | None = Field(None, gt=0)
    #: stop after this many epochs without improvement on validation (None: never)
    patience: int | None = Field(10, ge=1)
    min_delta: float = Field(0.0, ge=0)
    #: "loss" (sum of validation task losses) or "TASK.METRIC", e.g. "hospdead.auroc"
    monitor: str = "loss"
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = Field(8192, ge=1)
    progress: bool = True


class RunConfig(Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    tasks: list[TaskConfig] = Field(default_factory=list)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    balancing: BalancingConfig = Field(default_factory=BalancingConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# -- validation with errors a person can act on ----------------------------------------------


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Known keys of the (nested) model that holds the location ``loc``."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        nested = [a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not nested:
            return []
        current = nested[0]
    return list(getattr(current, "model_fields", {}))


def format_validation_error(
    err: ValidationError, model: type[BaseModel], where: str = "config"
) -> PolytaskError:
    e = err.errors()[0]
    loc = tuple(e["loc"])
    path = ".".join(str(p) for p in loc)
    if e["type"] == "extra_forbidden":
        key = str(loc[-1])
        hint = did_you_mean(key, _fields_at(model, loc))
        known = ", ".join(_fields_at(model, loc))
        return PolytaskError(f"{where}: unknown key '{path}'{hint}; known keys: {known}")
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    shown = f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict) else ""
    return PolytaskError(
        f"{where}: '{path}': {msg}{shown}; fix this value"
        if path
        else f"{where}: {msg}; fix the config"
    )


def validate_options(model: type[BaseModel], options: dict[str, Any], where: str) -> Any:
    try:
        return model(**options)
    except ValidationError as err:
        raise format_validation_error(err, model, where) from None


def parse_config(data: dict[str, Any], where: str = "config") -> RunConfig:
    if not isinstance(data, dict):
        raise PolytaskError(f"{where}: expected a mapping of keys (data, tasks, training, ...)")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise format_validation_error(err, RunConfig, where) from None


def load_config(path: str | Path) -> RunConfig:
    p = Path(path)
    if not p.is_file():
        raise PolytaskError(f"config file '{p}' does not exist; check the path")
    try:
        data = load_yaml(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise PolytaskError(f"config file '{p}' is not valid YAML{at}; fix its syntax") from None
    if data is None:
        raise PolytaskError(f"config file '{p}' is empty; see the README for an example")
    cfg = parse_config(data, where=f"config '{p.name}'")
    # relative data paths are relative to the config file's folder
    for key in ("path", "validation", "test"):
        value = getattr(cfg.data, key)
        if value and not Path(value).is_absolute():
            setattr(cfg.data, key, str((p.parent / value).resolve()))
    return cfg


def parse_task_spec(spec: str) -> dict[str, Any]:
    """``COLUMN:KIND[:OPTION=VALUE...]`` -> a task mapping for :class:`TaskConfig`."""
    parts = spec.split(":")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise PolytaskError(
            f"task spec '{spec}' is not COLUMN:KIND[:OPTION=VALUE...]; "
            "e.g. --task hospdead:binary or --task slos:regression:transform=log1p"
        )
    column, kind = parts[0], parts[1]
    out: dict[str, Any] = {"name": column, "column": column, "kind": kind}
    for opt in parts[2:]:
        if "=" not in opt:
            raise PolytaskError(
                f"task spec '{spec}': option '{opt}' is not OPTION=VALUE; "
                f"e.g. {column}:{kind}:positive=yes"
            )
        key, value = opt.split("=", 1)
        key = key.strip()
        if key in ("kind", "columns"):
            raise PolytaskError(f"task spec '{spec}': '{key}' cannot be set as an option")
        out[key] = value
    return out
