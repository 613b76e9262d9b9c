"""``polytask export``: the network as one ONNX graph, its preprocessing as JSON beside it.

The graph takes the preprocessed arrays (``numeric`` float32 N x D, ``categorical`` int64
N x C; an input whose width would be 0 is left out) and has one output per task, named
after the task, holding the raw outputs ``MultiTaskModel.predict_raw`` gives (logits,
standardised values, log rates). ``FILE.preprocessing.json`` says how to turn a raw
record into those arrays and each output into the columns ``predict`` writes; its
format is specified in docs/onnx.md and implemented in numpy by
:mod:`polytask.serving.onnx_decode`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from polytask import io
from polytask.api import load
from polytask.architectures import MultiTaskNet
from polytask.errors import PolytaskError
from polytask.features.preprocess import MISSING, UNKNOWN, Preprocessor
from polytask.model import MultiTaskModel
from polytask.serving.extras import missing_extra
from polytask.serving.onnx_images import image_input_names, image_spec, random_images
from polytask.serving.onnx_text import (
    check_text,
    random_ids,
    text_input_names,
    text_spec,
    tokenizer_files,
)
from polytask.serving.tabular import check_tabular
from polytask.tasks import Task
from polytask.values import FALSE_WORDS, TRUE_WORDS
from polytask.version import __version__

SPEC_FORMAT = "polytask-onnx-preprocessing"
SPEC_VERSION = 1
#: rows of random inputs on which onnxruntime is checked against PyTorch after export
CHECK_ROWS = 64
#: |onnx - torch| <= CHECK_TOLERANCE * max(1, |torch|) on those rows, else export fails
CHECK_TOLERANCE = 1e-4
INPUT_NAMES = ("numeric", "categorical")


@dataclass
class ExportResult:
    graph: Path
    spec: Path
    exporter: str  # "dynamo" (torch.export) or "torchscript" (the fallback)
    opset: int
    #: largest |onnx - torch| / max(1, |torch|) over CHECK_ROWS random rows (None:
    #: onnxruntime is not installed, nothing was checked)
    max_error: float | None


def spec_path(graph: str | Path) -> Path:
    """Where the preprocessing JSON of ``graph`` goes: ``model.onnx`` ->
    ``model.preprocessing.json``."""
    return Path(graph).with_suffix(".preprocessing.json")


def output_names(tasks: list[Task]) -> list[str]:
    """Graph output names: each task's name with characters other than letters, digits
    and ``_`` replaced by ``_``; made unique, and never an input's name."""
    names: list[str] = []
    for t in tasks:
        base = re.sub(r"\W", "_", t.name, flags=re.ASCII) or "task"
        if base[0].isdigit():
            base = f"t_{base}"
        name, k = base, 2
        while name in names or name in INPUT_NAMES:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


# -- the graph ---------------------------------------------------------------------------------


class _Graph(nn.Module):
    """The network on the graph's inputs: ``numeric`` and ``categorical`` where their
    width is not 0 (an empty one is made inside), then one token-id input per text
    column and one image input per image column."""

    def __init__(self, net: MultiTaskNet, numeric: bool, categorical: bool):
        super().__init__()
        self.net = net
        self.has = (numeric, categorical)

    def outputs(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net.forward_list(*inputs))

    def forward(self, *given: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rest = list(given)
        n = given[0].shape[0]
        num = rest.pop(0) if self.has[0] else torch.zeros((n, 0), dtype=torch.float32)
        cat = rest.pop(0) if self.has[1] else torch.zeros((n, 0), dtype=torch.int64)
        return self.outputs(num, cat, *rest)


def _random_inputs(pre: Preprocessor, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs the graph can take: standard-normal numeric values, valid category codes."""
    rng = np.random.default_rng(seed)
    inputs: dict[str, np.ndarray] = {}
    if pre.numeric_width:
        inputs["numeric"] = rng.standard_normal((rows, pre.numeric_width)).astype(np.float32)
    if pre.categorical:
        inputs["categorical"] = np.stack(
            [rng.integers(0, c.cardinality, rows) for c in pre.categorical], axis=1
        ).astype(np.int64)
    for name, col in zip(text_input_names(pre), pre.text, strict=True):
        inputs[name] = random_ids(col, rows, rng)
    inputs.update(zip(image_input_names(pre), random_images(pre, rows, rng), strict=True))
    return inputs


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' progress lines and warnings (e.g. torchvision not installed) off."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _dynamo(graph: _Graph, args: tuple, names: list[str], outputs: list[str], path: Path) -> str:
    batch = torch.export.Dim("batch", min=1)
    tokens = torch.export.Dim("tokens", min=1, max=4096)
    shapes = tuple({0: batch, 1: tokens} if n.startswith("text_") else {0: batch} for n in names)
    with _quiet():
        program = torch.onnx.export(
            graph,
            args,
            input_names=names,
            output_names=outputs,
            dynamic_shapes=(shapes,),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        assert program is not None  # dynamo=True returns the program
        program.save(str(path))
    return "dynamo"


def _torchscript(
    graph: _Graph, args: tuple, names: list[str], outputs: list[str], path: Path
) -> str:
    axes = {n: {0: "batch", 1: "tokens"} if n.startswith("text_") else {0: "batch"} for n in names}
    with _quiet():
        torch.onnx.export(
            graph,
            args,
            str(path),
            input_names=names,
            output_names=outputs,
            dynamic_axes={**axes, **{n: {0: "batch"} for n in outputs}},
            dynamo=False,
        )
    return "torchscript"


def _export(graph: _Graph, example: dict[str, np.ndarray], outputs: list[str], path: Path) -> str:
    """Write the graph to ``path`` with the dynamo exporter, or the TorchScript one where
    dynamo fails; returns which one wrote it. A graph with a transformers text encoder
    tries TorchScript first: dynamo traces transformers' Python for minutes (a 2-layer
    BERT: 66 s against 9.6 s, this 2-core machine, loaded), for the same graph."""
    names = list(example)
    args = tuple(torch.from_numpy(example[n]) for n in names)
    ways = [_dynamo, _torchscript]
    if any(n.startswith("text_") for n in names):
        ways.reverse()
    try:
        return ways[0](graph, args, names, outputs, path)
    except ImportError as err:
        raise missing_extra("export", err) from None
    except Exception as first_error:  # the exporters raise many types; try the other
        try:
            return ways[1](graph, args, names, outputs, path)
        except Exception as err:
            raise PolytaskError(
                f"ONNX export failed ({type(first_error).__name__}: "
                f"{str(first_error).splitlines()[0] if str(first_error) else ''}; then "
                f"{type(err).__name__}); please report it"
            ) from None


# -- the preprocessing spec --------------------------------------------------------------------


def _task_spec(task: Task, output: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "task": task.name,
        "kind": task.kind,
        "output": output,
        "width": task.output_size,
        "columns": list(task.decode(np.zeros((1, task.raw_width), dtype=np.float32))),
    }
    entry.update(task.onnx_decoding() or {})
    return entry


def preprocessing_spec(
    model: MultiTaskModel, graph_name: str, exporter: str, opset: int, outputs: list[str]
) -> dict[str, Any]:
    """The JSON written beside the graph (docs/onnx.md specifies every key)."""
    pre = model.preprocessor
    j, indicator = 0, sum(c.slots for c in pre.numeric)
    numeric = []
    for col in pre.numeric:
        numeric.append(
            {
                "name": col.name,
                "type": col.kind,
                "column": j,
                "median": col.median,
                "mean": col.mean,
                "std": col.std,
                "indicator_column": indicator if col.indicator else None,
                "period": col.period,
            }
        )
        j += col.slots
        indicator += col.indicator
    inputs = []
    if pre.numeric_width:
        inputs.append({"name": "numeric", "dtype": "float32", "shape": ["N", pre.numeric_width]})
    if pre.categorical:
        inputs.append(
            {"name": "categorical", "dtype": "int64", "shape": ["N", len(pre.categorical)]}
        )
    text = text_spec(pre)
    inputs += [{"name": t["input"], "dtype": "int64", "shape": ["N", "L"]} for t in text]
    images = image_spec(pre)
    inputs += [
        {"name": f["input"], "dtype": "float32", "shape": ["N", len(f["mean"]), *f["shape"][:2]]}
        for f in images
    ]
    return {
        "format": SPEC_FORMAT,
        "version": SPEC_VERSION,
        "polytask_version": __version__,
        "graph": graph_name,
        "exporter": exporter,
        "opset": opset,
        "inputs": inputs,
        "numeric": {"width": pre.numeric_width, "features": numeric},
        "boolean_words": {"true": sorted(TRUE_WORDS), "false": sorted(FALSE_WORDS)},
        "categorical": {
            "unknown_code": UNKNOWN,
            "missing_code": MISSING,
            "first_code": 2,
            "features": [
                {"name": c.name, "column": i, "categories": list(c.vocab)}
                for i, c in enumerate(pre.categorical)
            ],
        },
        "text": {"features": text},
        "images": {"features": images},
        "outputs": [_task_spec(t, o) for t, o in zip(model.tasks, outputs, strict=True)],
    }


# -- checking and writing ----------------------------------------------------------------------


def _check_against_torch(
    path: Path, graph: _Graph, pre: Preprocessor, outputs: list[str]
) -> float | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    inputs = _random_inputs(pre, CHECK_ROWS, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(outputs, inputs)
    num = torch.from_numpy(inputs.get("numeric", np.zeros((CHECK_ROWS, 0), np.float32)))
    cat = torch.from_numpy(inputs.get("categorical", np.zeros((CHECK_ROWS, 0), np.int64)))
    names = [*text_input_names(pre), *image_input_names(pre)]
    extra = [torch.from_numpy(inputs[n]) for n in names]
    with torch.inference_mode():
        want = [o.numpy() for o in graph.outputs(num, cat, *extra)]
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        if g.shape != w.shape:
            raise PolytaskError(f"ONNX export is wrong (output shape {g.shape} != {w.shape})")
        worst = max(worst, float(np.max(np.abs(g - w) / np.maximum(1.0, np.abs(w)), initial=0)))
    if not worst <= CHECK_TOLERANCE:
        raise PolytaskError(
            f"ONNX export does not match PyTorch (relative error {worst:.2g} > "
            f"{CHECK_TOLERANCE}); please report it"
        )
    return worst


def _opset(path: Path) -> int:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def export_onnx(
    model: MultiTaskModel | str | Path, path: str | Path, overwrite: bool = False
) -> ExportResult:
    """Write ``model`` (or the run at that path) as an ONNX graph at ``path`` and its
    preprocessing at :func:`spec_path`; neither file is replaced unless ``overwrite``.
    onnxruntime, where installed, is checked against PyTorch before anything is written."""
    target = Path(path)
    if target.suffix.lower() != ".onnx":
        raise PolytaskError(f"`output` '{target}' must end in .onnx")
    spec_file = spec_path(target)
    if not isinstance(model, MultiTaskModel):
        model = load(model)
    tokenizers = tokenizer_files(model.preprocessor)
    for f in (target, spec_file, *(target.parent / n for n in tokenizers)):
        if f.exists() and not overwrite:
            raise PolytaskError(f"'{f}' already exists; pass `overwrite=True` to replace it")
        if f.is_dir():
            raise PolytaskError(f"'{f}' is a folder; choose another `output`")
    try:
        import onnx  # noqa: F401  (the dynamo exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise missing_extra("export", err) from None
    check_tabular(model, "export")
    check_text(model.preprocessor)
    for task in model.tasks:
        if task.onnx_decoding() is None:
            raise PolytaskError(
                f"cannot export task '{task.name}' ({task.kind}): the ONNX decoder does not "
                "know its kind; use polytask predict or polytask serve"
            )
    outputs = output_names(model.tasks)
    pre = model.preprocessor
    graph = _Graph(copy.deepcopy(model.net).cpu(), bool(pre.numeric_width), bool(pre.categorical))
    graph.eval()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
            tmp_graph = Path(tmp) / target.name
            exporter = _export(graph, _random_inputs(pre, 2), outputs, tmp_graph)
            max_error = _check_against_torch(tmp_graph, graph, pre, outputs)
            opset = _opset(tmp_graph)
            spec = preprocessing_spec(model, target.name, exporter, opset, outputs)
            tmp_spec = Path(tmp) / spec_file.name
            tmp_spec.write_text(io.to_json(spec), "utf-8")
            for name, text in tokenizers.items():
                (Path(tmp) / name).write_text(text, "utf-8")
            io.move_into_place(tmp_graph, target)
            io.move_into_place(tmp_spec, spec_file)
            for name in tokenizers:
                io.move_into_place(Path(tmp) / name, target.parent / name)
    except OSError as err:
        raise PolytaskError(
            f"cannot write '{target}' ({err.strerror or err}); choose a writable `output`"
        ) from None
    return ExportResult(target, spec_file, exporter, opset, max_error)
