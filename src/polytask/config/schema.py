"""The run configuration: one validated schema for the YAML file, the CLI flags and the API.

Every key is declared once (here, or for ``data`` in :mod:`polytask.config.data`), with its
default, its help and (where it has one) its CLI flag and API keyword (see
:mod:`polytask.config.keys`); task, balancer and architecture options are declared next
to their code and validated through :func:`~polytask.config.loading.validate_options`. An
unknown key is an error that names the closest known key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator

from polytask.config.data import DataConfig as DataConfig
from polytask.config.fields import Strict, flag
from polytask.config.modifiers import BalancingModifiers
from polytask.config.reserved import reserved_head_name
from polytask.config.table_defaults import AUTO, Auto
from polytask.config.tune import TuneConfig


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
        if "." in self.name or reserved_head_name(self.name):
            safe = self.name.replace(".", "_") + ("_" if reserved_head_name(self.name) else "")
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
    include: list[str] | None = Field(
        None,
        json_schema_extra=flag(
            "--features",
            "use only these comma-separated columns as features",
            "COLS",
            keyword="features",
        ),
    )
    drop: list[str] = Field(
        default_factory=list,
        json_schema_extra=flag(
            "--drop", "columns never to use as features", "COLS", extend=True, keyword="drop"
        ),
    )
    #: override inferred types
    numeric: list[str] = Field(
        default_factory=list,
        json_schema_extra=flag(
            "--numeric", "treat these columns as numeric (overrides inference)", "COLS", extend=True
        ),
    )
    categorical: list[str] = Field(
        default_factory=list,
        json_schema_extra=flag(
            "--categorical",
            "treat these columns as categorical (overrides inference)",
            "COLS",
            extend=True,
        ),
    )
    boolean: list[str] = Field(default_factory=list)
    #: free-text columns, encoded by ``model.text`` (inference finds most of them)
    text: list[str] = Field(
        default_factory=list,
        json_schema_extra=flag(
            "--text",
            "free-text columns, tokenized and encoded (model.text sets the encoder)",
            "COLS",
            extend=True,
        ),
    )
    #: image columns: paths to .png/.jpg/.npy files or arrays (inference finds most)
    image: list[str] = Field(
        default_factory=list,
        json_schema_extra=flag(
            "--image",
            "image columns: paths (relative to the data file) to .png/.jpg/.npy files",
            "COLS",
            extend=True,
        ),
    )
    #: IDs with millions of values: column -> buckets (a stable hash, no vocabulary)
    hash_buckets: dict[str, PositiveInt] = Field({}, json_schema_extra={"keyword": "hash_buckets"})
    multi_hot: list[str] = Field(
        [], json_schema_extra=flag("--multi-hot", "category-list columns", "COLS", extend=True)
    )  # lists of categories per cell (Parquet lists or 'a|b' text), embedded as a bag
    max_items: int = Field(50, ge=1, json_schema_extra={"keyword": "max_items"})  # last kept
    #: cyclical columns: column -> period (a number, or hour, minute_of_day, day_of_week,
    #: month); each becomes sin and cos (README "Numeric encodings")
    cyclical: dict[str, str | float] = Field(default_factory=dict)
    #: also treat columns named like hour / minute_of_day / dow / month as cyclical when
    #: their values fit that range (list one in features.numeric to keep it plain)
    infer_cyclical: bool = True
    #: keep at most this many categories per column (the rest share the unknown bucket)
    max_categories: int = Field(1000, ge=1)
    #: categories seen fewer times than this in training share the unknown bucket
    min_category_count: int = Field(1, ge=1)
    #: embedding size per categorical column; None picks one from the vocabulary size
    embedding_dim: int | None = Field(None, ge=1)
    max_embedding_dim: int = Field(16, ge=1)


class ModelConfig(Strict):
    #: how tasks share layers: hard, mmoe, cgc, ple, cross_stitch (README "Architectures")
    architecture: str = Field(
        "hard", json_schema_extra=flag("--architecture", "sharing architecture", "NAME")
    )
    #: widths of the shared trunk's hidden layers (hard); the default expert widths
    #: (mmoe, cgc, ple); each task column's widths (cross_stitch)
    hidden: list[PositiveInt] = Field(
        default_factory=lambda: [256, 128],
        json_schema_extra=flag("--hidden", "widths of the shared layers", "W,W"),
    )
    #: the tabular trunk after the joined inputs: mlp, resnet, ft_transformer, tabm
    #: (README "Tabular trunks"); a run saved without it has the mlp
    trunk: str = Field(
        "mlp",
        json_schema_extra=flag(
            "--trunk", "tabular trunk: mlp, resnet, ft_transformer or tabm", "NAME"
        ),
    )
    #: options of the chosen trunk, declared with its code (resnet: n_blocks,
    #: d_hidden_factor, residual_dropout; ft_transformer: d_token, n_blocks, heads,
    #: attention_dropout, ffn_factor, ffn_dropout, residual_dropout; tabm: k)
    trunk_options: dict[str, Any] = Field(default_factory=dict)
    #: how numeric columns enter the network: periodic (the default, chosen on
    #: benchmarks/tabular_quality.py, RESULTS.md "Issue 16"), standard, piecewise (README
    #: "Numeric encodings"); a run saved without it has standard (config.loading.SAVED_BEFORE)
    numeric_encoding: str = Field(
        "periodic",
        json_schema_extra=flag(
            "--numeric-encoding", "numeric encoding: standard, piecewise or periodic", "NAME"
        ),
    )
    #: options of the chosen encoding, declared with its code (piecewise: bins, width,
    #: shared, relu; periodic: frequencies, sigma, width)
    numeric_encoding_options: dict[str, Any] = Field(default_factory=dict)
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


class BalancingConfig(BalancingModifiers):
    """``method`` plus that method's options as further keys; ``jacobian`` is read by the
    trainer for gradient-level methods; ``ema`` and ``every`` modify any method."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _method_alone(cls, data: Any) -> Any:
        """``balancing: uw`` (or the API's ``balancing="uw"``) is ``{method: uw}``."""
        return {"method": data} if isinstance(data, str) else data

    method: str = Field(
        "ew", json_schema_extra=flag("--balancing", "how task losses become one update", "NAME")
    )
    #: where gradient-level methods take the task gradients: the shared parameters, or
    #: the shared representation (cheaper; with mgda this is MGDA-UB)
    jacobian: Literal["parameters", "representation"] = "parameters"
    #: every this many steps, and at least 4 times an epoch, log the task weights and the
    #: pairwise cosine of the task gradients to the history (0: never)
    log_every: int = Field(100, ge=0)

    @property
    def options(self) -> dict[str, Any]:
        """What polytask.balancing.get takes besides the name (modifiers if not default)."""
        return {**(self.model_extra or {}), **self.modifiers()}


class TrainingConfig(Strict):
    #: epochs, batch_size, lr and patience: "auto" chooses them from the training split's
    #: rows and features (polytask.config.table_defaults) and states them in the saved config
    epochs: Annotated[int, Field(ge=1)] | Auto = Field(
        AUTO, json_schema_extra=flag("--epochs", "maximum epochs (auto: from the table)", "N")
    )
    batch_size: Annotated[int, Field(ge=1)] | Auto = Field(
        AUTO, json_schema_extra=flag("--batch-size", "batch size (auto: from the table)", "N")
    )
    lr: Annotated[float, Field(gt=0)] | Auto = Field(
        AUTO, json_schema_extra=flag("--lr", "learning rate (auto: from the table)", "X")
    )
    weight_decay: float = Field(0.01, ge=0)
    #: learning-rate schedule over epochs
    schedule: Literal["cosine", "constant", "plateau"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    #: linear warm-up over the first N optimiser steps, for every learning rate
    #: (fine-tuning a pretrained encoder wants a few hundred)
    warmup_steps: int = Field(0, ge=0)
    #: clip the gradient norm to this value (None: no clipping)
    grad_clip: float | None = Field(None, gt=0)
    #: stop after this many epochs without improvement on validation (None: never)
    patience: Annotated[int, Field(ge=1)] | Auto | None = Field(
        AUTO,
        json_schema_extra=flag(
            "--patience",
            "early stopping: epochs without validation improvement (auto: from the table)",
            "N",
        ),
    )
    min_delta: float = Field(0.0, ge=0)
    #: "loss" (sum of validation task losses) or "TASK.METRIC", e.g. "hospdead.auroc"
    monitor: str = "loss"
    seed: int = Field(
        0,
        ge=0,
        lt=2**64,
        json_schema_extra=flag("--seed", "seed for splits, init and shuffling", "N"),
    )
    device: str = Field(
        "auto", json_schema_extra=flag("--device", "where to train: auto, cpu or cuda", "NAME")
    )
    #: mixed precision (polytask.training.precision): auto = bf16 (else fp16) on a GPU
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", json_schema_extra=flag("--precision", "auto, fp32 (off), bf16 or fp16", "NAME")
    )
    eval_batch_size: int = Field(8192, ge=1)
    progress: bool = True
    #: with a run directory: also write a checkpoint every this many optimiser steps
    #: (checkpoints are always written at each epoch end; None: only there and by time)
    checkpoint_every: int | None = Field(None, ge=1)
    #: ... and when this many seconds passed since the last one (None: not by time)
    checkpoint_seconds: float | None = Field(300.0, gt=0)
    #: measure task affinity (TAG lookahead) every this many steps into the history and
    #: the report (0: off)
    affinity_every: int = Field(
        0,
        ge=0,
        json_schema_extra=flag(
            "--affinity-every",
            "measure task affinity (TAG lookahead) every N steps into the history and the "
            "report (0: off)",
            "N",
        ),
    )
    #: with a run directory, write report.html into it at the end (CLI train)
    report: bool = Field(
        True, json_schema_extra=flag("--no-report", "skip writing RUN_DIR/report.html")
    )


class MlflowConfig(Strict):
    #: the tracking store: a SQLite file (sqlite:///mlflow.db) or a folder (file:./mlruns)
    uri: str = Field(
        "sqlite:///mlflow.db",
        min_length=1,
        json_schema_extra=flag(
            "--mlflow",
            "log the run to MLflow, e.g. sqlite:///mlflow.db or file:./mlruns",
            "URI",
            show_default=False,
        ),
    )
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
    tensorboard: str | None = Field(
        None,
        min_length=1,
        json_schema_extra=flag(
            "--tensorboard",
            "log per-epoch task metrics and balancer weights to TensorBoard files in DIR",
            "DIR",
        ),
    )
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
    balancing: BalancingConfig = Field(
        default_factory=BalancingConfig, json_schema_extra={"keyword": "balancing"}
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, json_schema_extra={"keyword": "tracking"}
    )
    #: what ``polytask tune`` searches (polytask.config.tune); ``train`` ignores it
    tune: TuneConfig | None = None

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
        # a config without a tune section saves as before the section existed
        return self.model_dump(mode="json", exclude={"tune"} if self.tune is None else None)
