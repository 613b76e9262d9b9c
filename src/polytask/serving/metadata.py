"""What ``GET /metadata`` answers: the model's tasks, outputs and expected features."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from polytask.model import MultiTaskModel
from polytask.serving.payload import (
    BOOLEAN_HELP,
    CATEGORY_HELP,
    ITEMS_HELP,
    NUMERIC_HELP,
    TEXT_HELP,
    output_columns,
)
from polytask.tasks import Task
from polytask.version import __version__

Label = str | int | float | bool


class FeatureInfo(BaseModel):
    name: str
    type: Literal["numeric", "boolean", "categorical", "text", "multi_hot"]
    accepts: str = Field(description="the values a record may hold for this feature")
    categories: list[str] | None = Field(
        None, description="categorical: the categories seen in training"
    )


class TaskInfo(BaseModel):
    name: str
    kind: str
    label_columns: list[str] = Field(description="the training table's label column(s)")
    outputs: list[str] = Field(description="the keys this task adds to each prediction")
    classes: list[Label] | None = Field(
        None, description="binary [negative, positive]; multiclass/multilabel in output order"
    )
    positive: Label | None = Field(None, description="binary: the positive class")
    threshold: float | None = Field(
        None, description="binary/multilabel: probability at or above which a class is on"
    )
    separator: str | None = Field(None, description="multilabel: joins the predicted labels")
    units: str | None = Field(None, description="regression/count: what the prediction is in")


class Limits(BaseModel):
    max_rows: int = Field(description="most records in one request (more: 422)")
    max_body_bytes: int = Field(description="largest request body in bytes (more: 413)")


class Metadata(BaseModel):
    polytask_version: str = Field(description="the version serving this model")
    trained_with: str | None = Field(None, description="the version that trained it")
    tasks: list[TaskInfo]
    features: list[FeatureInfo] = Field(description="every key a record must carry")
    limits: Limits


class Health(BaseModel):
    status: Literal["ok"]


def task_info(task: Task) -> TaskInfo:
    return TaskInfo(
        name=task.name,
        kind=task.kind,
        label_columns=list(task.columns),
        outputs=output_columns(task),
        **task.serving_info(),
    )


def model_metadata(model: MultiTaskModel, max_rows: int, max_body_bytes: int) -> Metadata:
    pre = model.preprocessor
    features = [
        FeatureInfo(
            name=c.name,
            type=c.kind,  # type: ignore[arg-type]
            accepts=NUMERIC_HELP if c.kind == "numeric" else BOOLEAN_HELP,
        )
        for c in pre.numeric
    ]
    features += [
        FeatureInfo(name=c.name, type="categorical", accepts=CATEGORY_HELP, categories=c.vocab)
        for c in pre.categorical
    ]
    features += [
        FeatureInfo(name=c.name, type="text", accepts=TEXT_HELP) for c in getattr(pre, "text", [])
    ]
    features += [
        FeatureInfo(name=c.name, type="multi_hot", accepts=ITEMS_HELP, categories=c.vocab or None)
        for c in getattr(pre, "bags", [])
    ]
    return Metadata(
        polytask_version=__version__,
        trained_with=model.info.get("polytask_version"),
        tasks=[task_info(t) for t in model.tasks],
        features=features,
        limits=Limits(max_rows=max_rows, max_body_bytes=max_body_bytes),
    )
