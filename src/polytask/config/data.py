"""The ``data`` section of the run config: where the rows come from, how they are split
and, for tables bigger than memory, how they are streamed."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from polytask.config.fields import Strict, flag


class DataConfig(Strict):
    #: the data file (CSV, Parquet or .npz); the splits not given below are drawn from it
    path: str | None = Field(
        None,
        json_schema_extra=flag(
            "--data", "training data: CSV, Parquet or .npz (arrays, e.g. images)", "FILE"
        ),
    )
    validation: str | None = Field(
        None, json_schema_extra=flag("--validation", "explicit validation data", "FILE")
    )
    test: str | None = Field(None, json_schema_extra=flag("--test", "explicit test data", "FILE"))
    validation_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    #: stream the table instead of reading it into memory (README "Tables bigger than
    #: memory"): auto streams data files larger on disk than ``stream_above_mb``
    streaming: str = Field(
        "auto",
        json_schema_extra=flag(
            "--streaming", "auto | true | false: read the table in row groups", "MODE"
        ),
    )
    stream_above_mb: float = Field(512.0, gt=0)
    #: split rows by a hash of this column (a user or session id) instead of their position
    split_key: str | None = Field(
        None,
        json_schema_extra=flag(
            "--split-key", "split rows by a hash of this column (e.g. a user id)", "COL"
        ),
    )
    #: streamed rows are mixed in windows of at least this many rows
    shuffle_rows: int = Field(262_144, ge=1)
    #: training rows sampled for medians, types and the text tokenizer (streamed tables)
    sample_rows: int = Field(100_000, ge=1)

    @field_validator("streaming", mode="before")
    @classmethod
    def _streaming_words(cls, value: Any) -> Any:
        if isinstance(value, bool):  # YAML's true / false
            return "true" if value else "false"
        value = value.strip().lower() if isinstance(value, str) else value
        if value not in ("auto", "true", "false"):
            raise ValueError(f"streaming is auto, true or false, not {value!r}")
        return value

    @model_validator(mode="after")
    def _fractions(self) -> DataConfig:
        if self.validation_fraction + self.test_fraction >= 0.9:
            raise ValueError("validation_fraction + test_fraction must leave >= 10% to train")
        return self
