"""The command line: parses arguments and calls the library. Nothing else lives here.

Each verb imports the library inside its function, after parsing and the checks that
need no data (:mod:`polytask.cli.checks`): the library imports torch, scipy and
scikit-learn (seconds), which ``--help``, ``--version`` and a mistyped flag must not wait
for. tests/test_cli_startup.py holds it to that.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from polytask import io
from polytask.cli import checks, hints
from polytask.cli.parser import build_parser, config_flags
from polytask.cli.tune import cmd_tune
from polytask.config.keys import FLAGS, set_key, with_flags
from polytask.errors import PolytaskError

# -- commands --------------------------------------------------------------------------------


def cmd_train(a: argparse.Namespace) -> int:
    if a.resume:
        a.out = _resume_out(a)
        cfg = _train_config(a, base=_saved_config(a.out))
    elif not a.out:
        raise PolytaskError("train needs --out RUN_DIR (where to save the run)")
    else:
        cfg = _train_config(a)
    from polytask.analysis.affinity import TaskAffinity  # lazy: see the module's docstring
    from polytask.api import resume, train_run
    from polytask.training.distributed import launched_as_rank_zero

    every = cfg.training.affinity_every
    callbacks = [TaskAffinity(every)] if every else []
    if a.resume:
        model = resume(a.out, cfg, overwrite=a.overwrite, verbose=not a.quiet, callbacks=callbacks)
    else:
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
    _next(a.out)
    return 0


def _next(run: str) -> None:
    """The next command, as it runs from here."""
    cmd = hints.command()
    print(f"next: {cmd} predict {run} --data NEW.csv --output predictions.csv", file=sys.stderr)


def _report_or_warn(folder: str, plots: bool = True) -> bool:
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
        return False
    return True


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
    """The run config from --config (or ``base``), --task and the config flags (train and
    compare share them): each flag sets just its own key (FLAGS, from the schema)."""
    from polytask.config import parse_config
    from polytask.config.build import build_config

    data = build_config(a.config or base, a.task).to_dict()
    for path, value in config_flags(a).items():
        set_key(data, path, value, extend=FLAGS[path].extend)
    cfg = parse_config(data)
    checks.check_run_config(cfg)
    return cfg


def cmd_compare(a: argparse.Namespace) -> int:
    cfg = _train_config(a)
    for name in a.methods or ():
        presets = ("auto", "tuned_weights")  # polytask.config.tune.BALANCING_PRESETS
        methods = (*checks.known("polytask.balancing", "METHODS"), *presets)
        checks.check_name("balancing method", name, methods)
    for name in a.architectures or ():
        architectures = checks.known("polytask.architectures", "ARCHITECTURES")
        checks.check_name("architecture", name, architectures)
    from rich.console import Console

    from polytask.compare import compare, make_spec
    from polytask.evaluation.terminal import print_table

    given = {"seeds": a.seeds, "affinity_every": a.affinity_every}  # None: make_spec's default
    spec = make_spec(
        cfg,
        a.methods,
        a.architectures,
        **{k: v for k, v in given.items() if v is not None},
    )
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
    checks.check_run_and_data(a.run, a.data)
    from polytask.api import evaluate_file, load, streams

    model = load(a.run)
    with model.corrections(not a.no_calibration, a.coverage):
        result = evaluate_file(model, a.data) if streams(model, a.data) else model.evaluate(a.data)
    if a.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        if not result:  # the warning above named each task's missing column
            print("no task's label column is in the data; nothing to score", file=sys.stderr)
        _print_metrics(result, Path(a.data).name)
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    out = Path(a.output)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise PolytaskError(f"--output '{out}' must end in .csv or .parquet")
    if out.exists() and not a.overwrite:
        raise PolytaskError(f"output file '{out}' already exists; pass --overwrite to replace it")
    checks.check_run_and_data(a.run, a.data)
    from polytask.api import load

    model = load(a.run)
    with model.corrections(not a.no_calibration, a.coverage):
        return _predict(a, model, out)


def _predict(a: argparse.Namespace, model: Any, out: Path) -> int:
    from polytask.api import predict_file, streams

    dense = [t.name for t in model.tasks if t.dense]
    arrays_out = out.with_suffix(".npz")
    if dense and arrays_out.exists() and not a.overwrite:
        raise PolytaskError(
            f"output file '{arrays_out}' (per-pixel predictions) already exists; pass "
            "--overwrite to replace it"
        )
    if streams(model, a.data):  # row group by row group, written as it goes
        rows = _stream_out(lambda: predict_file(model, a.data, out, a.keep), out)
        print(f"wrote {rows} rows to {out}", file=sys.stderr)
        return 0
    preds = model.predict(a.data, keep=a.keep)
    if dense:
        import numpy as np

        arrays: dict[str, Any] = {name: np.stack(preds.pop(name).to_list()) for name in dense}
        _write_atomic(arrays_out, lambda tmp: np.savez_compressed(tmp, **arrays), ".npz")
        print(f"wrote per-pixel predictions of {', '.join(dense)} to {arrays_out}", file=sys.stderr)
    _write_table_atomic(preds, out)
    print(f"wrote {len(preds)} rows to {out}", file=sys.stderr)
    return 0


def _stream_out(write: Any, out: Path) -> int:
    try:
        return int(write())
    except OSError as err:
        raise PolytaskError(
            f"cannot write '{out}' ({err.strerror or err}); choose a writable --output"
        ) from None


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
    checks.check_run_and_data(a.run)
    from polytask.serving.server import serve

    batching = {
        k: v
        for k, v in (("max_wait_ms", a.max_wait_ms), ("max_batch", a.max_batch))
        if v is not None
    }
    serve(
        a.run, host=a.host, port=a.port, max_rows=a.max_rows, threads=a.threads, batching=batching
    )
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    checks.check_run_and_data(a.run)
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

    result = run_demo(
        out=a.out,
        epochs=a.epochs,
        seed=a.seed,
        baseline=not a.no_baseline,
        overwrite=a.overwrite,
        verbose=not a.quiet,
    )
    _report_or_warn(result["out"], plots=False)  # as train does: RUN/report.html
    _next(result["out"])
    return 0


def cmd_explain(a: argparse.Namespace) -> int:
    checks.check_run_and_data(a.run, a.data)
    from polytask.analysis.importance import explain

    result = explain(a.run, a.data, a.repeats, a.seed, a.split, overwrite=a.overwrite)
    if a.json:
        print(json.dumps(result, indent=2, allow_nan=False))
    else:
        _print_importance(result)
    print(f"saved importance to {Path(a.run) / 'importance.json'}", file=sys.stderr)
    report, plots = Path(a.run) / "report.html", (Path(a.run) / "report_plots").is_dir()
    if report.is_file() and _report_or_warn(a.run, plots=plots):  # train's: draw it there
        print(f"updated {report} (its importance section)", file=sys.stderr)
    return 0


def _print_importance(result: dict[str, Any], top: int = 8) -> None:
    from rich.console import Console
    from rich.table import Table

    for task, entry in result["tasks"].items():
        arrow = "higher" if entry["higher_is_better"] else "lower"
        table = Table(title=f"{task}: drop of {entry['metric']} ({arrow} is better)")
        for name in ("feature", "mean drop", "std"):
            table.add_column(name, justify="left" if name == "feature" else "right")
        for group, g in list(entry["groups"].items())[:top]:
            cells = [
                "-" if g[k] is None else f"{g[k]:{f}}"
                for k, f in (("mean", "+.4f"), ("std", ".4f"))
            ]
            table.add_row(group, *cells)
        Console().print(table)


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
COMMANDS.update(serve=cmd_serve, export=cmd_export, tune=cmd_tune, explain=cmd_explain)


def _one_line_warnings() -> None:
    """Warnings as one line each, naming flags where the library names config keys."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {hints.as_run(with_flags(str(message)))}", file=sys.stderr)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _one_line_warnings()
    try:
        return COMMANDS[args.command](args)
    except PolytaskError as err:
        line = hints.as_run(with_flags(str(err))).replace("\r", "\\r").replace("\n", "\\n")
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # training saves a checkpoint first and says so
        print(str(err) or "interrupted", file=sys.stderr)
        return getattr(err, "exit_code", 130)


if __name__ == "__main__":
    raise SystemExit(main())
