"""The command line: parses arguments and calls the library. Nothing else lives here."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import polytask
from polytask import io
from polytask.errors import PolytaskError

EXAMPLES = """examples:
  polytask demo
  polytask train --data patients.csv --task hospdead:binary --task slos:regression \\
      --drop id --out runs/patients
  polytask train --config run.yaml --epochs 50 --out runs/patients
  polytask evaluate runs/patients --data new_patients.csv --json
  polytask predict runs/patients --data new_patients.csv --output predictions.csv --keep id
  polytask serve runs/patients --port 8000
  polytask export runs/patients --format onnx --output model.onnx
"""

TASK_HELP = (
    "a task as COLUMN:KIND[:OPTION=VALUE...]; KIND is regression, binary, multiclass, "
    "multilabel (labels separated by '|'), count, segmentation or dense_regression (the "
    "column holds paths to mask/map files); repeat for each task. Examples: "
    "hospdead:binary, outcome:binary:positive=died, slos:regression:transform=log1p"
)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _ints(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got '{value}'"
        ) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="polytask",
        description="Train one neural network for several prediction tasks at once.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"polytask {polytask.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_FlagParser)
    sub.required = True

    t = sub.add_parser(
        "train",
        help="train a multi-task model from a table",
        description="Train one multi-task model. Every column that is not a task's label is a "
        "feature unless --features or --drop says otherwise. Flags override their own key "
        "of the --config file.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--config", metavar="FILE", help="YAML config (the full form; see README)")
    t.add_argument(
        "--data", metavar="FILE", help="training data: CSV, Parquet or .npz (arrays, e.g. images)"
    )
    t.add_argument("--task", metavar="SPEC", action="append", help=TASK_HELP)
    t.add_argument("--out", metavar="RUN_DIR", help="run directory to create (required)")
    t.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint (in RUN_DIR.partial), "
        "with its saved config",
    )
    t.add_argument("--validation", metavar="FILE", help="explicit validation data")
    t.add_argument("--test", metavar="FILE", help="explicit test data")
    t.add_argument(
        "--features",
        metavar="COLS",
        type=_csv,
        help="use only these comma-separated columns as features",
    )
    t.add_argument("--drop", metavar="COLS", type=_csv, help="columns never to use as features")
    t.add_argument(
        "--categorical",
        metavar="COLS",
        type=_csv,
        help="treat these columns as categorical (overrides inference)",
    )
    t.add_argument(
        "--numeric",
        metavar="COLS",
        type=_csv,
        help="treat these columns as numeric (overrides inference)",
    )
    t.add_argument(
        "--text",
        metavar="COLS",
        type=_csv,
        help="free-text columns, tokenized and encoded (model.text sets the encoder)",
    )
    t.add_argument(
        "--image",
        metavar="COLS",
        type=_csv,
        help="image columns: paths (relative to the data file) to .png/.jpg/.npy files",
    )
    t.add_argument("--epochs", type=int, metavar="N", help="maximum epochs (default 100)")
    t.add_argument("--batch-size", type=int, metavar="N", help="batch size (default 256)")
    t.add_argument("--lr", type=float, metavar="X", help="learning rate (default 0.002)")
    t.add_argument(
        "--patience",
        type=int,
        metavar="N",
        help="early stopping: epochs without validation improvement (default 10)",
    )
    t.add_argument("--seed", type=int, metavar="N", help="seed for splits, init and shuffling")
    t.add_argument(
        "--hidden", type=_ints, metavar="W,W", help="widths of the shared layers (default 256,128)"
    )
    t.add_argument(
        "--balancing",
        metavar="NAME",
        help="how task losses become one update (default ew): "
        + ", ".join(_balancing_methods())
        + "; options go in the config's balancing section",
    )
    t.add_argument("--architecture", metavar="NAME", help="sharing architecture (default hard)")
    t.add_argument("--device", metavar="NAME", help="auto (default), cpu or cuda")
    t.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR")
    t.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    t.add_argument(
        "--affinity-every",
        type=int,
        default=None,
        metavar="N",
        help="measure task affinity (TAG lookahead) every N steps into the history and the "
        "report (training.affinity_every; default 0: off)",
    )
    t.add_argument("--no-report", action="store_true", help="skip writing RUN_DIR/report.html")
    t.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="log per-epoch task metrics and balancer weights to TensorBoard files in DIR",
    )
    t.add_argument(
        "--mlflow",
        metavar="URI",
        help="log the run to MLflow, e.g. sqlite:///mlflow.db or file:./mlruns",
    )

    e = sub.add_parser(
        "evaluate",
        help="score a trained run on labelled data",
        description="Score each task whose label column is in the data.",
    )
    e.add_argument("run", metavar="RUN_DIR")
    e.add_argument("--data", metavar="FILE", required=True, help="CSV, Parquet or .npz with labels")
    e.add_argument(
        "--json",
        action="store_true",
        help='print only {task: {metric: value, ..., "n": rows}} as JSON',
    )

    pr = sub.add_parser(
        "predict",
        help="predict every task for new rows",
        description="Write one row per input row, in input order: each task's "
        "prediction and probabilities. The format follows --output's suffix.",
    )
    pr.add_argument("run", metavar="RUN_DIR")
    pr.add_argument("--data", metavar="FILE", required=True, help="CSV, Parquet or .npz to predict")
    pr.add_argument("--output", metavar="FILE", required=True, help="a .csv or .parquet file")
    pr.add_argument(
        "--keep",
        metavar="COLS",
        type=_csv,
        help="input columns to copy into the output (e.g. an id)",
    )
    pr.add_argument("--overwrite", action="store_true", help="replace an existing output file")

    d = sub.add_parser(
        "demo",
        help="train on the bundled SUPPORT2 hospital data",
        description="Train in-hospital death (binary), length of stay "
        "(regression) and functional outcome (multiclass) on SUPPORT2 and "
        "print test metrics next to a gradient-boosting baseline.",
    )
    d.add_argument(
        "--out", metavar="RUN_DIR", help="where to save the run (default: a new folder under runs/)"
    )
    d.add_argument("--epochs", type=int, metavar="N", help="maximum epochs (default 100)")
    d.add_argument("--seed", type=int, default=0, metavar="N")
    d.add_argument("--no-baseline", action="store_true", help="skip the gradient-boosting baseline")
    d.add_argument("--overwrite", action="store_true")
    d.add_argument("--quiet", action="store_true")
    _compare_parser(sub)
    _report_parser(sub)
    _serve_parser(sub)
    _export_parser(sub)
    return p


class _FlagParser(argparse.ArgumentParser):
    """A parser that remembers its ``add_argument`` calls, so that another subcommand can
    take the same flags (argparse has no public way to list a parser's flags)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.flag_calls: list[tuple[tuple[Any, ...], dict[str, Any], str]] = []
        super().__init__(*args, **kwargs)  # (which adds --help)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.option_strings:
            self.flag_calls.append((args, kwargs, action.dest))
        return action


def _share_flags(source: _FlagParser, target: argparse.ArgumentParser, skip: set[str]) -> None:
    """Give ``target`` the flags of ``source`` except ``skip`` (by dest): one definition for
    both, as argparse's ``parents=`` does, but after ``source`` is complete."""
    for args, kwargs, dest in source.flag_calls:
        if dest not in skip and dest != "help":
            target.add_argument(*args, **kwargs)


def _compare_parser(sub: Any) -> None:
    from polytask.architectures import ARCHITECTURES

    c = sub.add_parser(
        "compare",
        help="does sharing help? single-task baselines vs multi-task variants",
        description="Train one single-task model per task and each multi-task variant "
        "(--methods x --architectures) over --seeds seeds with the same encoder, budget and "
        "splits; print per-task test metrics (mean ± std), Δm% against the single-task "
        "models, mean rank, time per epoch and parameters, and a verdict per task for the "
        "variant chosen on validation. Writes results.md/.csv/.json and report.html to "
        "--out; rerunning resumes, keeping finished runs. Takes the train flags.",
    )
    _share_flags(
        sub.choices["train"],
        c,
        skip={"out", "overwrite", "balancing", "architecture", "affinity_every", "resume"},
    )
    c.set_defaults(balancing=None, architecture=None)
    c.add_argument(
        "--out", metavar="DIR", required=True, help="comparison folder to create or resume"
    )
    c.add_argument(
        "--methods",
        type=_csv,
        metavar="M,M",
        help="balancing methods to compare (default: the config's, ew); e.g. ew,uw,famo,upgrad",
    )
    c.add_argument(
        "--architectures",
        type=_csv,
        metavar="A,A",
        help=f"architectures to compare (default: the config's, hard): {', '.join(ARCHITECTURES)}",
    )
    c.add_argument(
        "--seeds",
        type=int,
        default=3,
        metavar="N",
        help="seeds per model (default 3); seed s draws split and initialisation s",
    )
    c.add_argument(
        "--affinity-every",
        type=int,
        default=10,
        metavar="N",
        help="measure task affinity every N steps in the multi-task runs (default 10; 0: off)",
    )
    c.add_argument(
        "--overwrite",
        action="store_true",
        help="replace finished runs in --out whose config differs (otherwise an error)",
    )


def _report_parser(sub: Any) -> None:
    r = sub.add_parser(
        "report",
        help="write an HTML report of a run or a comparison",
        description="Write one self-contained HTML file (plots embedded) and the plots as PNG "
        "files beside it: metrics, learning curves, task weights, gradient conflict, task "
        "affinity, and for a comparison the table and verdicts.",
    )
    r.add_argument("source", metavar="RUN_OR_COMPARE_DIR")
    r.add_argument(
        "--output",
        metavar="FILE",
        help="the HTML file (default: DIR/report.html; plots go to FILE's name + _plots/)",
    )
    r.add_argument("--overwrite", action="store_true", help="replace an existing --output")


def _serve_parser(sub: Any) -> None:
    s = sub.add_parser(
        "serve",
        help="serve predictions over HTTP (POST /predict)",
        description='Serve a run over HTTP: POST /predict with {"records": [...]}, GET '
        "/health, GET /metadata, API docs at /docs. Needs pip install 'polytask[serve]'.",
    )
    s.add_argument("run", metavar="RUN_DIR")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    s.add_argument(
        "--max-rows", type=int, metavar="N", help="most records per request (default 10000)"
    )
    s.add_argument(
        "--threads", type=int, default=1, metavar="N", help="torch threads per request (default 1)"
    )


def _export_parser(sub: Any) -> None:
    x = sub.add_parser(
        "export",
        help="export a run as an ONNX graph plus its preprocessing as JSON",
        description="Write one ONNX graph (inputs numeric and categorical, one output per "
        "task) and FILE's name + .preprocessing.json, which says how to build the inputs "
        "from raw records and decode the outputs (docs/onnx.md). Needs pip install "
        "'polytask[export]'.",
    )
    x.add_argument("run", metavar="RUN_DIR")
    x.add_argument("--format", choices=["onnx"], default="onnx", help="onnx (the only one)")
    x.add_argument("--output", metavar="FILE", required=True, help="the .onnx file to write")
    x.add_argument("--overwrite", action="store_true", help="replace existing output files")


def _balancing_methods() -> list[str]:
    from polytask.balancing import METHODS

    return list(METHODS)


# -- commands --------------------------------------------------------------------------------


def cmd_train(a: argparse.Namespace) -> int:
    from polytask.analysis.affinity import TaskAffinity
    from polytask.api import resume, train_run
    from polytask.training.distributed import launched_as_rank_zero

    if a.resume:
        a.out = _resume_out(a)
        cfg = _train_only_flags(a, _train_config(a, base=_saved_config(a.out)))
        every = cfg.training.affinity_every
        callbacks = [TaskAffinity(every)] if every else []
        model = resume(a.out, cfg, overwrite=a.overwrite, verbose=not a.quiet, callbacks=callbacks)
    else:
        if not a.out:
            raise PolytaskError("train needs --out RUN_DIR (where to save the run)")
        cfg = _train_only_flags(a, _train_config(a))
        every = cfg.training.affinity_every
        callbacks = [TaskAffinity(every)] if every else []
        model = train_run(
            cfg, out=a.out, overwrite=a.overwrite, verbose=not a.quiet, callbacks=callbacks
        )
    if not launched_as_rank_zero():  # torchrun: process 0 reports
        return 0
    _print_metrics(
        model.metrics.get("test") or model.metrics.get("validation") or {},
        "test" if "test" in model.metrics else "validation",
    )
    if cfg.training.report:  # the HTML file only: the run stays a flat folder of files
        _report_or_warn(a.out, plots=False)
    print(f"saved run to {a.out}")
    return 0


def _train_only_flags(a: argparse.Namespace, cfg: Any) -> Any:
    if a.affinity_every is not None:
        cfg.training.affinity_every = a.affinity_every
    if a.no_report:
        cfg.training.report = False
    return cfg


def _report_or_warn(folder: str, plots: bool = True) -> None:
    """The report is extra: the run (or comparison) is saved even if writing it fails."""
    from polytask.evaluation.report import write_report

    try:
        write_report(folder, plots=plots)
    except (PolytaskError, OSError, ValueError) as err:
        warnings.warn(
            f"the report could not be written ({err}); try: polytask report {folder}",
            UserWarning,
            stacklevel=2,
        )


def _resume_out(a: argparse.Namespace) -> str:
    """--resume RUN_DIR (or RUN_DIR.partial); a different --out is an error."""
    from polytask.run_dir import run_of_partial

    out = run_of_partial(Path(a.resume))
    if a.out and Path(a.out) != out:
        raise PolytaskError(f"--out '{a.out}' and --resume '{a.resume}' name different runs")
    return str(out)


def _saved_config(out: str) -> Any:
    from polytask.training.staging import saved_config

    return saved_config(Path(out))[0]


def _train_config(a: argparse.Namespace, base: Any = None) -> Any:
    """The run config from --config (or ``base``) and the train flags (train and compare
    share them)."""
    from polytask.api import build_config
    from polytask.config import MlflowConfig

    cfg = build_config(
        a.config or base,
        a.task,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        patience=a.patience,
        seed=a.seed,
        device=a.device,
        hidden=a.hidden,
        architecture=a.architecture,
    )
    if a.balancing:
        cfg.balancing = type(cfg.balancing).model_validate(
            {**cfg.balancing.model_dump(), "method": a.balancing}
        )
    if a.data:
        cfg.data.path = a.data
    if a.validation:
        cfg.data.validation = a.validation
    if a.test:
        cfg.data.test = a.test
    fc = cfg.features
    if a.features:
        fc.include = a.features
    if a.drop:
        fc.drop = [*fc.drop, *a.drop]
    if a.categorical:
        fc.categorical = [*fc.categorical, *a.categorical]
    if a.numeric:
        fc.numeric = [*fc.numeric, *a.numeric]
    if a.text:
        fc.text = [*fc.text, *a.text]
    if a.image:
        fc.image = [*fc.image, *a.image]
    if a.tensorboard:
        cfg.tracking.tensorboard = a.tensorboard
    if a.mlflow:
        old = cfg.tracking.mlflow
        cfg.tracking.mlflow = MlflowConfig(**{**(old.model_dump() if old else {}), "uri": a.mlflow})
    return cfg


def cmd_compare(a: argparse.Namespace) -> int:
    from rich.console import Console

    from polytask.compare import compare, make_spec
    from polytask.evaluation.terminal import print_table

    spec = make_spec(_train_config(a), a.methods, a.architectures, a.seeds, a.affinity_every)
    progress = None if a.quiet else Console(stderr=True, highlight=False).print
    comparison = compare(spec, a.out, overwrite=a.overwrite, progress=progress, report=False)
    print_table(comparison)
    if not a.no_report:
        _report_or_warn(a.out)
    print(f"saved the comparison to {a.out} (results.md, results.csv, results.json, report.html)")
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    from polytask.evaluation.report import write_report

    path = write_report(a.source, a.output, overwrite=a.overwrite)
    print(f"wrote {path}")
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from polytask.api import load

    model = load(a.run)
    result = model.evaluate(a.data)
    if a.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        if not result:
            print("no task's label column is in the data; nothing to score", file=sys.stderr)
        _print_metrics(result, Path(a.data).name)
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from polytask.api import load

    out = Path(a.output)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise PolytaskError(f"--output '{out}' must end in .csv or .parquet")
    if out.exists() and not a.overwrite:
        raise PolytaskError(f"output file '{out}' already exists; pass --overwrite to replace it")
    model = load(a.run)
    dense = [t.name for t in model.tasks if t.dense]
    arrays_out = out.with_suffix(".npz")
    if dense and arrays_out.exists() and not a.overwrite:
        raise PolytaskError(
            f"output file '{arrays_out}' (per-pixel predictions) already exists; pass "
            "--overwrite to replace it"
        )
    preds = model.predict(a.data, keep=a.keep)
    if dense:
        import numpy as np

        arrays: dict[str, Any] = {name: np.stack(preds.pop(name).to_list()) for name in dense}
        _write_atomic(arrays_out, lambda tmp: np.savez_compressed(tmp, **arrays), ".npz")
        print(f"wrote per-pixel predictions of {', '.join(dense)} to {arrays_out}", file=sys.stderr)
    _write_table_atomic(preds, out)
    print(f"wrote {len(preds)} rows to {out}", file=sys.stderr)
    return 0


def _write_atomic(out: Path, write: Any, suffix: str = "") -> None:
    """``write(tmp_path)`` then rename onto ``out`` (see :mod:`polytask.io`); a failure
    leaves ``out`` untouched."""
    try:
        io.write_with(out, write, suffix)
    except OSError as err:
        raise PolytaskError(
            f"cannot write '{out}' ({err.strerror or err}); choose a writable --output"
        ) from None


def _write_table_atomic(df: Any, out: Path) -> None:
    parquet = out.suffix.lower() == ".parquet"
    try:
        _write_atomic(
            out,
            lambda tmp: df.to_parquet(tmp, index=False) if parquet else df.to_csv(tmp, index=False),
        )
    except (ValueError, TypeError) as err:  # e.g. pyarrow on a column of mixed types
        raise PolytaskError(
            f"cannot write '{out}' as Parquet ({str(err).splitlines()[0]}); write a .csv "
            "instead, or drop mixed-type --keep columns"
        ) from None


def cmd_serve(a: argparse.Namespace) -> int:
    from polytask.serving.server import serve

    serve(a.run, host=a.host, port=a.port, max_rows=a.max_rows, threads=a.threads)
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from polytask.serving.onnx_export import export_onnx

    result = export_onnx(a.run, a.output, overwrite=a.overwrite)
    check = (
        f"onnxruntime matches PyTorch within {result.max_error:.1e} (relative)"
        if result.max_error is not None
        else "not checked (onnxruntime is not installed)"
    )
    print(
        f"wrote {result.graph} (ONNX opset {result.opset}, {result.exporter} exporter) and "
        f"{result.spec}; {check}",
        file=sys.stderr,
    )
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from polytask.demo import run_demo

    run_demo(
        out=a.out,
        epochs=a.epochs,
        seed=a.seed,
        baseline=not a.no_baseline,
        overwrite=a.overwrite,
        verbose=not a.quiet,
    )
    return 0


def _print_metrics(result: dict[str, dict[str, Any]], split: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"metrics ({split})")
    table.add_column("task")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("n", justify="right")
    for task, metrics in result.items():
        for i, (name, value) in enumerate((k, v) for k, v in metrics.items() if k != "n"):
            table.add_row(
                task if i == 0 else "",
                name,
                "-" if value is None else f"{value:.4f}",
                str(metrics.get("n", "")) if i == 0 else "",
            )
    Console().print(table)


COMMANDS = {"train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict, "demo": cmd_demo}
COMMANDS.update(compare=cmd_compare, report=cmd_report)
COMMANDS.update(serve=cmd_serve, export=cmd_export)


def _one_line_warnings() -> None:
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _one_line_warnings()
    try:
        return COMMANDS[args.command](args)
    except PolytaskError as err:
        line = str(err).replace("\r", "\\r").replace("\n", "\\n")  # a name can't break it
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # training saves a checkpoint first and says so
        print(str(err) or "interrupted", file=sys.stderr)
        return getattr(err, "exit_code", 130)


if __name__ == "__main__":
    raise SystemExit(main())
