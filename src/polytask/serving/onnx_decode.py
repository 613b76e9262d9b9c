"""A reference client for an exported model, in numpy: raw records -> the graph's inputs
(:func:`encode`), the graph's outputs -> prediction columns (:func:`decode`).

It reads only the ``.preprocessing.json`` written beside the graph and follows
docs/onnx.md step by step, so it doubles as that document's executable form for clients
in other languages. :class:`OnnxPredictor` runs the graph with onnxruntime in between.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Record = Mapping[str, Any]
#: numeric text: optional sign, digits with an optional decimal point, optional exponent
DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
#: the largest float32: a standardised value beyond it would reach the network as inf
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: numeric text that means infinity, which counts as missing
INFINITY = re.compile(r"[+-]?(inf|infinity)", re.ASCII | re.IGNORECASE)


def load_spec(path: str | Path) -> dict[str, Any]:
    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    if spec.get("format") != "polytask-onnx-preprocessing" or spec.get("version") != 1:
        raise ValueError(f"'{path}' is not a version 1 polytask ONNX preprocessing file")
    return spec


# -- raw values ---------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """numpy scalars as Python values."""
    return value.item() if isinstance(value, np.generic) else value


def is_missing(value: Any) -> bool:
    """null, NaN, or text that is empty or only whitespace."""
    value = _plain(value)
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def category_key(value: Any) -> str:
    """A present value as the text its category is stored under: booleans as true/false,
    whole numbers without a decimal part (2.0 -> "2"), other numbers in their shortest
    round-trip form (Python's repr: 0.1, 1e-05, inf), text with surrounding whitespace
    removed."""
    value = _plain(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value).strip()


def number_of(value: Any, feature: Mapping[str, Any], row: int) -> float:
    """A numeric feature's value as a float; NaN where missing (infinity is missing)."""
    value = _plain(value)
    if is_missing(value):
        return math.nan
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        try:
            x = float(value)
        except OverflowError:  # an integer beyond the double range
            raise ValueError(
                f"record {row}: numeric feature '{feature['name']}' cannot take {value} (too large)"
            ) from None
    else:
        text = str(value).strip()
        if INFINITY.fullmatch(text):
            return math.nan
        if not DECIMAL.fullmatch(text):
            raise ValueError(
                f"record {row}: numeric feature '{feature['name']}' cannot take {value!r}"
            )
        x = float(text)
    return x if math.isfinite(x) else math.nan


def boolean_of(value: Any, feature: Mapping[str, Any], row: int, words: Mapping) -> float:
    """A boolean feature's value as 1.0 / 0.0; NaN where missing."""
    if is_missing(value):
        return math.nan
    key = category_key(value).lower()
    if key in words["true"]:
        return 1.0
    if key in words["false"]:
        return 0.0
    raise ValueError(f"record {row}: boolean feature '{feature['name']}' cannot take {value!r}")


# -- encode -----------------------------------------------------------------------------------


def load_tokenizers(spec: Mapping[str, Any], folder: str | Path) -> dict[str, Any]:
    """Each text input's tokenizer (Hugging Face ``tokenizers``), read from the file the
    spec names in ``folder`` (the graph's folder)."""
    from tokenizers import Tokenizer

    return {
        f["input"]: Tokenizer.from_file(str(Path(folder) / f["tokenizer"]))
        for f in spec.get("text", {}).get("features", [])
    }


def token_ids(texts: Sequence[Any], feature: Mapping[str, Any], tokenizer: Any) -> np.ndarray:
    """A text input: each text (a missing one is the empty text) tokenized with the
    model's special tokens, cut to ``max_length`` tokens, and padded with ``pad_id`` to
    the longest in the batch: int64 (N, L)."""
    strings = ["" if is_missing(t) else str(_plain(t)) for t in texts]
    tokenizer.no_padding()
    tokenizer.enable_truncation(feature["max_length"])
    encoded = [e.ids for e in tokenizer.encode_batch(strings, add_special_tokens=True)]
    longest = max([len(e) for e in encoded] + [1])
    ids = np.full((len(strings), longest), feature["pad_id"], dtype=np.int64)
    for i, row in enumerate(encoded):
        ids[i, : len(row)] = row
    return ids


def _numeric_input(records: Sequence[Record], spec: Mapping[str, Any]) -> np.ndarray:
    """The ``numeric`` input: each feature standardised, missing values imputed."""
    n = len(records)
    num = np.zeros((n, spec["numeric"]["width"]), dtype=np.float32)
    words = {k: set(v) for k, v in spec["boolean_words"].items()}
    for f in spec["numeric"]["features"]:
        for row, record in enumerate(records):
            raw = record[f["name"]]
            x = boolean_of(raw, f, row, words) if f["type"] == "boolean" else number_of(raw, f, row)
            missing = math.isnan(x)
            if f.get("period"):  # cyclical: sin and cos in columns column, column + 1
                angle = 2 * math.pi * (f["median"] if missing else x) / f["period"]
                num[row, f["column"]], num[row, f["column"] + 1] = math.sin(angle), math.cos(angle)
                if f["indicator_column"] is not None:
                    num[row, f["indicator_column"]] = 1.0 if missing else 0.0
                continue
            # in double precision, then rounded once to float32
            v = ((f["median"] if missing else x) - f["mean"]) / f["std"]
            if not abs(v) <= FLOAT32_MAX:
                raise ValueError(
                    f"record {row}: numeric feature '{f['name']}' is too large for float32"
                )
            num[row, f["column"]] = v
            if f["indicator_column"] is not None:
                num[row, f["indicator_column"]] = 1.0 if missing else 0.0
    return num


def encode(
    records: Sequence[Record],
    spec: Mapping[str, Any],
    tokenizers: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """The graph's inputs for ``records`` (each a mapping of feature name to raw value);
    ``tokenizers`` by input name for a graph with text inputs (:func:`load_tokenizers`)."""
    n = len(records)
    text_features = spec.get("text", {}).get("features", [])
    for row, record in enumerate(records):
        for f in [*text_features, *spec.get("images", {}).get("features", [])]:
            if f["name"] not in record:
                raise ValueError(f"record {row} lacks feature '{f['name']}'")
        for group in ("numeric", "categorical"):
            for f in spec[group]["features"]:
                if f["name"] not in record:
                    raise ValueError(f"record {row} lacks feature '{f['name']}'")
    inputs: dict[str, np.ndarray] = {}
    names = {i["name"] for i in spec["inputs"]}
    if "numeric" in names:
        inputs["numeric"] = _numeric_input(records, spec)
    if "categorical" in names:
        cat_spec = spec["categorical"]
        cat = np.zeros((n, len(cat_spec["features"])), dtype=np.int64)
        for f in cat_spec["features"]:
            codes = {c: cat_spec["first_code"] + i for i, c in enumerate(f["categories"])}
            for row, record in enumerate(records):
                raw = record[f["name"]]
                if is_missing(raw):
                    cat[row, f["column"]] = cat_spec["missing_code"]
                else:
                    key = category_key(raw)
                    cat[row, f["column"]] = codes.get(key, cat_spec["unknown_code"])
        inputs["categorical"] = cat
    for f in text_features:
        if tokenizers is None or f["input"] not in tokenizers:
            raise ValueError(f"text feature '{f['name']}' needs its tokenizer ({f['tokenizer']})")
        texts = [record[f["name"]] for record in records]
        inputs[f["input"]] = token_ids(texts, f, tokenizers[f["input"]])
    for f in spec.get("images", {}).get("features", []):
        inputs[f["input"]] = image_inputs(records, f)
    return inputs


def image_inputs(records: Sequence[Mapping[str, Any]], feature: Mapping[str, Any]) -> np.ndarray:
    """An image input: each record's array (H x W or H x W x C; 8-bit integers scaled by
    1/255), standardised per channel; a missing image (None) is all zeros."""
    shape = tuple(feature["shape"])
    channels = shape[2] if len(shape) == 3 else 1
    out = np.zeros((len(records), channels, shape[0], shape[1]), dtype=np.float32)
    mean = np.asarray(feature["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(feature["std"], dtype=np.float32)[:, None, None]
    for row, record in enumerate(records):
        value = record[feature["name"]]
        if value is None:
            continue
        a = np.asarray(value)
        if a.shape != shape:
            raise ValueError(
                f"record {row}: image '{feature['name']}' has shape {a.shape}, not {shape}"
            )
        x = a.astype(np.float32) / np.float32(255.0 if a.dtype == np.uint8 else 1.0)
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
        out[row] = (x - mean) / std
    return out


# -- decode -----------------------------------------------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def decode(outputs: Mapping[str, np.ndarray], spec: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Prediction columns, as ``MultiTaskModel.predict`` names them, from the graph's
    outputs by output name. Every formula runs in float64 on the float32 outputs."""
    columns: dict[str, np.ndarray] = {}
    for o in spec["outputs"]:
        name, kind = o["task"], o["kind"]
        if kind == "segmentation":  # (N, classes, H, W): the class of each pixel
            columns[name] = np.asarray(outputs[o["output"]]).argmax(axis=1).astype(np.int64)
            continue
        z = np.asarray(outputs[o["output"]], dtype=np.float64).reshape(-1, o["width"])
        if kind == "regression":
            y = z[:, 0] * o["std"] + o["mean"]
            columns[name] = np.expm1(y) if o["log1p"] else y
            columns.update(_intervals(name, columns[name], o))
        elif kind == "count":
            columns[name] = np.exp(z[:, 0])
            columns.update(_intervals(name, columns[name], o))
        elif kind == "binary":
            p = _sigmoid(z[:, 0] / o.get("temperature", 1.0))
            labels = np.array([o["negative"], o["positive"]], dtype=object)
            columns[name] = labels[(p >= o["threshold"]).astype(int)]
            columns[f"{name}_proba"] = p
        elif kind == "multiclass":
            z = z / o.get("temperature", 1.0)
            e = np.exp(z - z.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
            columns[name] = np.array(o["classes"], dtype=object)[p.argmax(axis=1)]
            for i, c in enumerate(o["classes"]):
                columns[f"{name}_proba_{c}"] = p[:, i]
        elif kind == "multilabel":
            p = _sigmoid(z)
            on = p >= o["threshold"]
            classes = o["classes"]
            columns[name] = np.array(
                [
                    o["separator"].join(c for c, v in zip(classes, row, strict=True) if v)
                    for row in on
                ],
                dtype=object,
            )
            if o["indicator_columns"]:
                for i, c in enumerate(classes):
                    columns[f"{name}_{c}"] = on[:, i].astype(int)
            for i, c in enumerate(classes):
                columns[f"{name}_proba_{c}"] = p[:, i]
        else:
            raise ValueError(f"unknown task kind '{kind}' in the preprocessing file")
    return columns


def _intervals(name: str, y: np.ndarray, o: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """``TASK_lower`` and ``TASK_upper``: y ± interval_radius (None: unbounded), the lower
    end no lower than ``floor`` where one is given; nothing without ``interval_radius``."""
    if "interval_radius" not in o:
        return {}
    q = np.inf if o["interval_radius"] is None else float(o["interval_radius"])
    lower = y - q
    if o.get("floor") is not None:
        lower = np.maximum(lower, o["floor"])
    return {f"{name}_lower": lower, f"{name}_upper": y + q}


class OnnxPredictor:
    """Predictions from an exported graph with onnxruntime, without torch:
    ``OnnxPredictor("model.onnx").predict(records)`` -> ``{column: array}``."""

    def __init__(self, graph: str | Path, spec: str | Path | None = None):
        import onnxruntime as ort

        graph = Path(graph)
        self.spec = load_spec(spec or graph.with_suffix(".preprocessing.json"))
        self.session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        self.outputs = [o["output"] for o in self.spec["outputs"]]
        self.tokenizers = load_tokenizers(self.spec, graph.parent)

    def raw(self, records: Sequence[Record]) -> dict[str, np.ndarray]:
        """The graph's outputs by output name."""
        values = self.session.run(self.outputs, encode(records, self.spec, self.tokenizers))
        return dict(zip(self.outputs, values, strict=True))

    def predict(self, records: Sequence[Record]) -> dict[str, np.ndarray]:
        return decode(self.raw(records), self.spec)
