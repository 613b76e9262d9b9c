"""The run configuration: one validated schema for the YAML file, the CLI flags and the API.

Every key is declared here once (task, balancer and architecture options are declared
next to their code and validated through :func:`validate_options`). An unknown key is an
error that names the closest known key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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


def _mapping_without_duplicates(loader: _Yaml12Loader, node: yaml.MappingNode) -> Any:
    """A key given twice is an error (PyYAML would keep the last one silently)."""
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *defaults' may be overridden
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: construct_mapping says so
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark
            )
    return loader.construct_mapping(node, deep=True)


_Yaml12Loader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Strict):
    #: the data file (CSV, Parquet or .npz); the splits not given below are drawn from it
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
    def _columns_are_several(self) -> TaskConfig:
        # whether a kind reads several columns is the kind's to say (polytask.tasks.make_task)
        if self.columns is not None and len(self.columns) < 2:
            raise ValueError(f"task '{self.name}': 'columns' needs at least two 0/1 columns")
        if "." in self.name or _reserved_head_name(self.name):
            safe = self.name.replace(".", "_") + ("_" if _reserved_head_name(self.name) else "")
            raise ValueError(
                f"task name '{self.name}' cannot name a network head (it holds '.' or is a "
                f"reserved word); rename the task, e.g. COLUMN:KIND:name={safe} or "
                f"name: {safe} in the config"
            )
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
    #: free-text columns, encoded by ``model.text`` (inference finds most of them)
    text: list[str] = Field(default_factory=list)
    #: image columns: paths to .png/.jpg/.npy files or arrays (inference finds most)
    image: list[str] = Field(default_factory=list)
    #: keep at most this many categories per column (the rest share the unknown bucket)
    max_categories: int = Field(1000, ge=1)
    #: categories seen fewer times than this in training share the unknown bucket
    min_category_count: int = Field(1, ge=1)
    #: embedding size per categorical column; None picks one from the vocabulary size
    embedding_dim: int | None = Field(None, ge=1)
    max_embedding_dim: int = Field(16, ge=1)


class ModelConfig(Strict):
    #: how tasks share layers: hard, mmoe, cgc, ple, cross_stitch (README "Architectures")
    architecture: str = "hard"
    #: widths of the shared trunk's hidden layers (hard); the default expert widths
    #: (mmoe, cgc, ple); each task column's widths (cross_stitch)
    hidden: list[PositiveInt] = Field(default_factory=lambda: [256, 128])
    activation: Literal["relu", "gelu", "silu", "tanh", "elu"] = "relu"
    dropout: float = Field(0.3, ge=0, lt=1)
    norm: Literal["layer", "batch", "none"] = "layer"
    #: hidden widths of each task head (empty: a linear head on the shared representation)
    head_hidden: list[PositiveInt] = Field(default_factory=list)
    #: options of the chosen architecture, declared with its code (e.g. mmoe: experts,
    #: expert_hidden; cgc: shared_experts, task_experts, expert_hidden; ple: those and
    #: levels; cross_stitch: init)
    options: dict[str, Any] = Field(default_factory=dict)
    #: tokenizer and encoder of text columns (see polytask.encoders.text.TextOptions)
    text: dict[str, Any] = Field(default_factory=dict)
    #: conv encoder of image columns (see polytask.encoders.cnn.ImageEncoderOptions)
    image: dict[str, Any] = Field(default_factory=dict)


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
    seed: int = Field(0, ge=0, lt=2**64)
    device: str = "auto"
    eval_batch_size: int = Field(8192, ge=1)
    progress: bool = True
    #: with a run directory: also write a checkpoint every this many optimiser steps
    #: (checkpoints are always written at each epoch end; None: only there and by time)
    checkpoint_every: int | None = Field(None, ge=1)
    #: ... and when this many seconds passed since the last one (None: not by time)
    checkpoint_seconds: float | None = Field(300.0, gt=0)
    #: measure task affinity (TAG lookahead) every this many steps into the history and
    #: the report (0: off)
    affinity_every: int = Field(0, ge=0)
    #: with a run directory, write report.html into it at the end (CLI train)
    report: bool = True


class MlflowConfig(Strict):
    #: the tracking store: a SQLite file (sqlite:///mlflow.db) or a folder (file:./mlruns)
    uri: str = Field("sqlite:///mlflow.db", min_length=1)
    experiment: str = Field("polytask", min_length=1)
    #: the run's name in MLflow (None: MLflow picks one)
    run_name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _uri_alone(cls, data: Any) -> Any:
        return {"uri": data} if isinstance(data, str) else data


class TrackingConfig(Strict):
    """Optional experiment tracking (the ``tracking`` extra): per-epoch task losses,
    metrics, balancer weights and gradient cosines, the config, and final metrics."""

    #: write TensorBoard event files to this folder (one folder per run)
    tensorboard: str | None = Field(None, min_length=1)
    #: log to MLflow: a mapping {uri, experiment, run_name}, or just the store URI
    mlflow: MlflowConfig | None = None


class SourceConfig(Strict):
    """One data source of a multi-source model: its own data, tasks and features."""

    name: str = Field(min_length=1)
    data: DataConfig = Field(default_factory=DataConfig)
    tasks: list[TaskConfig] = Field(min_length=1)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)


class SamplingConfig(Strict):
    """How a multi-source model picks the source of each training batch: with
    probability proportional to n_s^(1/temperature) for a source of n_s rows."""

    #: proportional (temperature 1), uniform (every source alike) or temperature
    method: Literal["proportional", "uniform", "temperature"] = "proportional"
    #: for method temperature: 1 is proportional, larger values move towards uniform
    temperature: float = Field(2.0, gt=0)


class RunConfig(Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    tasks: list[TaskConfig] = Field(default_factory=list)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    #: tasks that come with their own data (a table for one, images for another): each
    #: source has its own encoder; the shared layers and the heads sit on top
    sources: list[SourceConfig] = Field(default_factory=list)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    balancing: BalancingConfig = Field(default_factory=BalancingConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _tasks_from_sources(self) -> RunConfig:
        if not self.sources:
            return self
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError("two sources have the same name; source names must differ")
        combined = [t for s in self.sources for t in s.tasks]
        if self.tasks and [t.name for t in self.tasks] != [t.name for t in combined]:
            raise ValueError(
                "with sources, give each task under its source, not in the top-level tasks"
            )
        if self.data.path:
            raise ValueError("with sources, give each source its data, not data.path")
        object.__setattr__(self, "tasks", combined)
        return self

    @property
    def multi_source(self) -> bool:
        return bool(self.sources)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> dotted keys: ``{"training.lr": 0.002, "tasks.0.kind": "binary"}``.
    A list holding mappings is indexed; other lists and values stay as they are. One
    flattener for everything that names config keys (tracking's parameters, a resumed
    run's conflicts)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    out.update(flatten(item, f"{name}.{i}."))
                else:
                    out[f"{name}.{i}"] = item
        else:
            out[name] = value
    return out


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
    path = _one_line(".".join(str(p) for p in loc))
    if e["type"] == "extra_forbidden":
        key = str(loc[-1])
        hint = did_you_mean(key, _fields_at(model, loc))
        known = ", ".join(_fields_at(model, loc))
        return PolytaskError(f"{where}: unknown key '{path}'{hint}; known keys: {known}")
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    shown = (
        f" (got {_one_line(repr(e['input']))})"
        if "input" in e and not isinstance(e["input"], dict)
        else ""
    )
    return PolytaskError(
        f"{where}: '{path}': {msg}{shown}; fix this value"
        if path
        else f"{where}: {msg}; fix the config"
    )


def _one_line(text: str, limit: int = 120) -> str:
    """Control characters escaped (a key or value can't break the message's line), and
    at most ``limit`` characters."""
    if any(not c.isprintable() for c in text):
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reserved_head_name(name: str) -> bool:
    """Names a torch ModuleDict of task heads can't hold (its own attributes: 'type',
    'train', 'keys', ...)."""
    from torch import nn

    return hasattr(nn.ModuleDict(), name)


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
        problem = getattr(err, "problem", None)
        why = f" ({_one_line(problem)})" if isinstance(problem, str) else ""
        raise PolytaskError(
            f"config file '{p}' is not valid YAML{at}{why}; fix its syntax"
        ) from None
    except RecursionError:
        raise PolytaskError(
            f"config file '{p}' is nested too deeply to be a config; fix its structure"
        ) from None
    if data is None:
        raise PolytaskError(f"config file '{p}' is empty; see the README for an example")
    cfg = parse_config(data, where=f"config '{p.name}'")
    # relative data paths are relative to the config file's folder
    for dc in (cfg.data, *(source.data for source in cfg.sources)):
        for key in ("path", "validation", "test"):
            value = getattr(dc, key)
            if value and not Path(value).is_absolute():
                setattr(dc, key, str((p.parent / value).resolve()))
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
