"""The command line: parses arguments and calls the library. Nothing else lives here."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import polytask
from polytask.errors import PolytaskError

EXAMPLES = """examples:
  polytask demo
  polytask train --data patients.csv --task hospdead:binary --task slos:regression \\
      --drop id --out runs/patients
  polytask train --config run.yaml --epochs 50 --out runs/patients
  polytask evaluate runs/patients --data new_patients.csv --json
  polytask predict runs/patients --data new_patients.csv --output predictions.csv --keep id
"""

TASK_HELP = (
    "a task as COLUMN:KIND[:OPTION=VALUE...]; KIND is regression, binary, multiclass, "
    "multilabel (labels separated by '|') or count; repeat for each task. Examples: "
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
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
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
    t.add_argument("--data", metavar="FILE", help="training data, CSV or Parquet")
    t.add_argument("--task", metavar="SPEC", action="append", help=TASK_HELP)
    t.add_argument("--out", metavar="RUN_DIR", required=True, help="run directory to create")
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

    e = sub.add_parser(
        "evaluate",
        help="score a trained run on labelled data",
        description="Score each task whose label column is in the data.",
    )
    e.add_argument("run", metavar="RUN_DIR")
    e.add_argument("--data", metavar="FILE", required=True, help="CSV or Parquet with labels")
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
    pr.add_argument("--data", metavar="FILE", required=True, help="CSV or Parquet to predict")
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
    return p


def _balancing_methods() -> list[str]:
    from polytask.balancing import METHODS

    return list(METHODS)


# -- commands --------------------------------------------------------------------------------


def cmd_train(a: argparse.Namespace) -> int:
    from polytask.api import build_config, train_run

    cfg = build_config(
        a.config,
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
    model = train_run(cfg, out=a.out, overwrite=a.overwrite, verbose=not a.quiet)
    _print_metrics(
        model.metrics.get("test") or model.metrics.get("validation") or {},
        "test" if "test" in model.metrics else "validation",
    )
    print(f"saved run to {a.out}")
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
    preds = model.predict(a.data, keep=a.keep)
    _write_table_atomic(preds, out)
    print(f"wrote {len(preds)} rows to {out}", file=sys.stderr)
    return 0


def _write_table_atomic(df: Any, out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
        os.close(fd)
    except OSError as err:
        raise PolytaskError(
            f"cannot write '{out}' ({err.strerror or err}); choose a writable --output"
        ) from None
    try:
        if out.suffix.lower() == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
        os.replace(tmp, out)
    except OSError as err:
        raise PolytaskError(
            f"cannot write '{out}' ({err.strerror or err}); choose a writable --output"
        ) from None
    except (ValueError, TypeError) as err:  # e.g. pyarrow on a column of mixed types
        raise PolytaskError(
            f"cannot write '{out}' as Parquet ({str(err).splitlines()[0]}); write a .csv "
            "instead, or drop mixed-type --keep columns"
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
