"""The HTTP payloads: request models built from a model's features, JSON-safe predictions.

A request is ``{"records": [{feature: value, ...}, ...]}``. Every record carries every
feature the model was trained on (``null`` for a missing value); extra keys are ignored.
Values are JSON scalars and are converted exactly as ``MultiTaskModel.predict`` converts
table cells, so a record answers as the same row of a DataFrame would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    create_model,
)
from pydantic_core import PydanticCustomError

from polytask.features.images import ImageColumn
from polytask.features.preprocess import NumericColumn, Preprocessor
from polytask.tasks import Task

#: the largest float32; a standardised feature beyond it would reach the network as inf
FLOAT32_MAX = float(np.finfo(np.float32).max)

NUMERIC_HELP = (
    "number or numeric text; null, NaN, infinity or empty text is missing "
    "(imputed with the training median)"
)
BOOLEAN_HELP = "true/false, yes/no, t/f, y/n or 1/0 (any case); null or empty text is missing"
CATEGORY_HELP = (
    "a category (text, number or boolean); a value unseen in training goes to the unknown "
    "bucket; null or empty text is missing"
)


def _scalar(value: Any) -> Any:
    """A JSON scalar passes unchanged (``predict`` converts it); anything else is refused."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise PydanticCustomError(
        "scalar_type",
        "expected a number, text, true/false or null, got {got}",
        {"got": type(value).__name__},
    )


SCALAR_SCHEMA = {"type": ["number", "string", "boolean", "null"]}
TEXT_HELP = "free text; null or empty text is missing"
Category = Annotated[Any, BeforeValidator(_scalar), WithJsonSchema(SCALAR_SCHEMA)]
ITEMS_HELP = (
    "a list of categories (text or numbers), or text with '|' between them; null or [] "
    "is no items; items unseen in training go to the unknown bucket"
)


def _items(value: Any) -> Any:
    """A multi-hot value: a list of JSON scalars, or one scalar (text with '|')."""
    if isinstance(value, list):
        for item in value:
            if not (item is None or isinstance(item, (bool, int, float, str))):
                raise PydanticCustomError(
                    "items_type",
                    "expected a list of text or numbers, got a list holding {got}",
                    {"got": type(item).__name__},
                )
        return value
    return _scalar(value)


IMAGE_HELP = (
    "an image as nested lists of pixel values, H x W or H x W x C as in training (integers "
    "0-255 are 8-bit pixels, scaled by 1/255 as an image file's; other numbers are taken as "
    "they are); null is missing"
)
IMAGE_SCHEMA = {"type": ["array", "null"], "items": {"type": ["array", "number"]}}


def _image(column: ImageColumn) -> Callable[[Any], Any]:
    """A validator: nested lists of the column's shape -> an array, as predict takes."""

    def check(value: Any) -> Any:
        if value is None:
            return None
        try:
            a = np.asarray(value) if isinstance(value, list) else None
        except ValueError:
            a = None  # ragged lists
        if a is None or a.dtype.kind not in "iuf" or a.shape != tuple(column.shape):
            raise PydanticCustomError(
                "image_value",
                "image '{feature}' must be nested lists of numbers of shape {shape}",
                {"feature": column.name, "shape": " x ".join(map(str, column.shape))},
            )
        if a.dtype.kind in "iu" and a.size and a.min() >= 0 and a.max() <= 255:
            return a.astype(np.uint8)
        return a.astype(np.float32)

    return check


ITEMS_SCHEMA = {"anyOf": [{"type": "array", "items": SCALAR_SCHEMA}, SCALAR_SCHEMA]}
Items = Annotated[Any, BeforeValidator(_items), WithJsonSchema(ITEMS_SCHEMA)]


def _in_range(column: NumericColumn) -> Callable[[Any], Any]:
    """A validator: the value, standardised, must fit a float32 (else the model sees inf)."""

    def check(value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return value
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        except ValueError:
            return value  # not a number: the preprocessor says so, naming the record
        if math.isfinite(number) or isinstance(value, int):
            scaled = abs(number - column.mean) / column.std
            if not math.isfinite(scaled) or scaled > FLOAT32_MAX:
                raise PydanticCustomError(
                    "number_too_large",
                    "{value} is too large for feature '{feature}' (the model computes in "
                    "float32); send a smaller number or null",
                    {"value": str(value)[:40], "feature": column.name},
                )
        return value

    return check


def _numeric_type(column: NumericColumn) -> Any:
    return Annotated[
        Any,
        BeforeValidator(_scalar),
        AfterValidator(_in_range(column)),
        WithJsonSchema(SCALAR_SCHEMA),
    ]


def record_model(pre: Preprocessor) -> type[BaseModel]:
    """One record: every feature a required key (the JSON name is the column name)."""
    fields: dict[str, Any] = {}
    for i, col in enumerate(pre.numeric):
        help_ = NUMERIC_HELP if col.kind == "numeric" else BOOLEAN_HELP
        fields[f"f{i}"] = (
            _numeric_type(col),
            Field(alias=col.name, description=f"{col.kind} feature: {help_}"),
        )
    for j, cat in enumerate(pre.categorical):
        shown = ", ".join(repr(v) for v in cat.vocab[:5])
        more = f" (and {len(cat.vocab) - 5} more)" if len(cat.vocab) > 5 else ""
        fields[f"c{j}"] = (
            Category,
            Field(
                alias=cat.name,
                description=f"categorical feature: {CATEGORY_HELP}. Known: {shown}{more}",
                examples=cat.vocab[:3],
            ),
        )
    for k, text in enumerate(getattr(pre, "text", [])):
        fields[f"s{k}"] = (
            Category,
            Field(alias=text.name, description=f"text feature: {TEXT_HELP}"),
        )
    for k, image in enumerate(getattr(pre, "images", [])):
        fields[f"i{k}"] = (
            Annotated[Any, BeforeValidator(_image(image)), WithJsonSchema(IMAGE_SCHEMA)],
            Field(alias=image.name, description=f"image feature: {IMAGE_HELP}"),
        )
    for k, bag in enumerate(getattr(pre, "bags", [])):
        fields[f"b{k}"] = (
            Items,
            Field(alias=bag.name, description=f"multi-hot feature: {ITEMS_HELP}"),
        )
    return create_model(
        "Record",
        __config__=ConfigDict(extra="ignore", title="Record"),
        **fields,
    )


def request_model(pre: Preprocessor, max_rows: int) -> type[BaseModel]:
    """``{"records": [Record, ...]}`` with 1 to ``max_rows`` records."""

    def at_most(value: Any) -> Any:
        if isinstance(value, list) and len(value) > max_rows:
            raise PydanticCustomError(
                "too_many_records",
                "{n} records is more than this server's limit of {limit} per request; "
                "split the batch",
                {"n": len(value), "limit": max_rows},
            )
        return value

    # a model built at run time: a value to mypy, a type to pydantic
    records: Any = Annotated[list[record_model(pre)], BeforeValidator(at_most)]  # type: ignore[misc]
    return create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid", title="PredictRequest"),
        records=(
            records,
            Field(
                min_length=1,
                description=f"1 to {max_rows} records of raw feature values, by column name",
            ),
        ),
    )


def records_frame(records: list[BaseModel], pre: Preprocessor) -> pd.DataFrame:
    """The validated records as the DataFrame ``predict`` takes (one row per record)."""
    rows = [r.model_dump(by_alias=True) for r in records]
    return pd.DataFrame.from_records(rows, columns=pre.columns)


def prediction_model(tasks: list[Task]) -> type[BaseModel]:
    """The documented shape of one prediction: the columns ``predict`` writes."""
    fields: dict[str, Any] = {}
    for t in tasks:
        for k, (column, values) in enumerate(_example_columns(t).items()):
            kind = values.dtype.kind
            typ: Any = float | None if kind == "f" else int if kind in "iub" else Any
            what = _describe_column(t, column, kind)
            if t.dense:
                typ, what = list[Any], "one class id per pixel, as H nested lists of W"
            fields[f"t{len(fields)}_{k}"] = (
                typ,
                Field(alias=column, description=f"{t.name} ({t.kind}): {what}"),
            )
    prediction = create_model("Prediction", __config__=ConfigDict(title="Prediction"), **fields)
    return create_model(
        "PredictResponse",
        __config__=ConfigDict(title="PredictResponse"),
        predictions=(list[prediction], Field(description="one object per record, in order")),
    )


def _describe_column(task: Task, column: str, kind: str) -> str:
    if column != task.name:
        described = task.describe_column(column)
        if described is not None:
            return described
        return "probability" if kind == "f" else "0/1"
    return task.describe_prediction()


def _example_columns(task: Task) -> dict[str, np.ndarray]:
    return task.decode(np.zeros((1, task.raw_width), dtype=np.float32))


def output_columns(task: Task) -> list[str]:
    """The prediction columns ``predict`` writes for ``task``, in order."""
    return list(_example_columns(task))


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a predictions frame as JSON-safe dicts: Python scalars, NaN/inf as None."""
    return json_rows({str(c): frame[c].to_numpy() for c in frame.columns})


def json_rows(columns: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Prediction columns (``MultiTaskModel.predict_columns``) as JSON-safe rows."""
    names = list(columns)
    values = [_json_column(np.asarray(v)) for v in columns.values()]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def _json_column(values: np.ndarray) -> list[Any]:
    if values.dtype.kind == "f":
        out = values.astype(np.float64).tolist()
        if not np.isfinite(values).all():
            out = [v if math.isfinite(v) else None for v in out]
        return out
    if values.dtype.kind in "iub":
        return values.tolist()
    return [_json_value(v) for v in values]


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
