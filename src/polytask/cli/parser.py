"""The argument parser. ``train``'s (and ``compare``'s) config flags are generated from
the schema (:data:`polytask.config.keys.FLAGS`): each flag's type, help, key and default
come from its field, so a default is written once. A config flag's value lands in the
namespace under its key (``training.epochs``); :func:`config_flags` collects them."""

from __future__ import annotations

import argparse
from collections.abc import Collection
from typing import Any

from polytask.cli.static import defaults as static_defaults
from polytask.cli.static import registry
from polytask.config.keys import FLAGS, Flag
from polytask.version import __version__

EXAMPLES = """examples:
  polytask demo
  polytask train --data patients.csv --task hospdead:binary --task slos:regression \\
      --drop id --out runs/patients
  polytask train --config run.yaml --epochs 50 --out runs/patients
  polytask evaluate runs/patients --data new_patients.csv --json
  polytask predict runs/patients --data new_patients.csv --output predictions.csv --keep id
  polytask explain runs/patients --data patients.csv --split test --repeats 5
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


def _choices(path: str) -> str:
    """The registry's names for keys whose values are a registry's (listed in --help)."""
    if path == "balancing.method":
        methods = registry("polytask.balancing", "METHODS")
        race = "auto (a short race of methods on validation picks one)"
        return ", ".join(methods) + f", {race}; options go in the config's balancing section"
    if path == "model.architecture":
        return ", ".join(registry("polytask.architectures", "ARCHITECTURES"))
    return ""


def _help(flag: Flag) -> str:
    """The field's help, its registry's choices, its key and the schema's default."""
    choices = _choices(flag.path)
    text = f"{flag.help}: {choices}" if choices else flag.help
    if flag.kind is bool:
        return f"{text} ({flag.path}: false)"
    default = flag.default
    if isinstance(default, list):
        default = ",".join(map(str, default)) if default else None
    shown = f"; default {default}" if flag.show_default and default is not None else ""
    return f"{text} ({flag.path}{shown})"


def add_config_flags(parser: argparse.ArgumentParser, skip: Collection[str] = ()) -> None:
    """One flag per schema field that declares one, except the keys in ``skip``."""
    for flag in FLAGS.values():
        if flag.path in skip:
            continue
        if flag.kind is bool:
            parser.add_argument(
                flag.name, dest=flag.path, action="store_false", default=None, help=_help(flag)
            )
            continue
        kind: Any = (_ints if flag.item is int else _csv) if flag.kind is list else flag.kind
        parser.add_argument(
            flag.name, dest=flag.path, type=kind, metavar=flag.metavar, help=_help(flag)
        )


def config_flags(a: argparse.Namespace) -> dict[str, Any]:
    """{key: value} for each config flag given on the command line (an empty text or
    list, as in ``--drop ""``, is not given)."""
    values = {p: getattr(a, p, None) for p in FLAGS}
    return {p: v for p, v in values.items() if v is not None and v != "" and v != []}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="polytask",
        description="Train one neural network for several prediction tasks at once.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"polytask {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from polytask.cli.tune import add_tune

    for add in (_train, add_tune, _evaluate, _predict, _demo, _compare, _report, _serve, _export):
        add(sub)
    _explain(sub)
    return p


def _run_flags(t: argparse.ArgumentParser) -> None:
    """The flags of train and compare that are not config keys."""
    t.add_argument("--config", metavar="FILE", help="YAML config (the full form; see README)")
    t.add_argument("--task", metavar="SPEC", action="append", help=TASK_HELP)
    t.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")


def _train(sub: Any) -> None:
    t = sub.add_parser(
        "train",
        help="train a multi-task model from a table",
        description="Train one multi-task model. Every column that is not a task's label is a "
        "feature unless --features or --drop says otherwise. Flags override their own key "
        "of the --config file.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _run_flags(t)
    t.add_argument("--out", metavar="RUN_DIR", help="run directory to create (required)")
    t.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint (in RUN_DIR.partial), "
        "with its saved config",
    )
    t.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR")
    add_config_flags(t)


def _corrections(p: argparse.ArgumentParser) -> None:
    """The flags of predict and evaluate that set the corrections fitted after training."""
    p.add_argument(
        "--coverage",
        type=float,
        metavar="C",
        help="coverage of regression and count tasks' conformal intervals (TASK_lower, "
        "TASK_upper), e.g. 0.8 (default: each task's intervals option, 0.9)",
    )
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="class probabilities without the temperature fitted on validation",
    )


def _evaluate(sub: Any) -> None:
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
    _corrections(e)


def _predict(sub: Any) -> None:
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
    _corrections(pr)


def _demo(sub: Any) -> None:
    demo = static_defaults("polytask.demo", "run_demo")
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
    d.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help=f"maximum epochs (default {FLAGS['training.epochs'].default}; early stopping "
        "may end sooner)",
    )
    d.add_argument(
        "--seed",
        type=int,
        default=demo["seed"],
        metavar="N",
        help=f"seed for the split, initialisation and shuffling (default {demo['seed']})",
    )
    d.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the gradient-boosting baseline (it trains one model per task)",
    )
    d.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR")
    d.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")


def _compare(sub: Any) -> None:
    defaults = static_defaults("polytask.evaluation.layout", "make_spec")
    c = sub.add_parser(
        "compare",
        help="does sharing help? single-task baselines vs multi-task variants",
        description="Train one single-task model per task and each multi-task variant "
        "(--methods x --architectures) over --seeds seeds with the same encoder, budget and "
        "splits; print per-task test metrics (mean ± std), Δm% against the single-task "
        "models, mean rank, time per epoch and parameters, and a verdict per task for the "
        "variant chosen on validation. Writes results.md/.csv/.json and report.html to "
        "OUT; rerunning resumes, keeping finished runs. Takes the train flags.",
    )
    _run_flags(c)
    skip = {"balancing.method", "model.architecture", "training.affinity_every", "training.report"}
    add_config_flags(c, skip=skip)
    c.add_argument("--no-report", action="store_true", help="skip writing OUT/report.html")
    c.add_argument(
        "--out",
        metavar="OUT",
        required=True,
        help="comparison folder to create or resume (results.md/.csv/.json, report.html, runs/)",
    )
    c.add_argument(
        "--methods",
        type=_csv,
        metavar="M,M",
        help="balancing methods to compare (default: the config's, ew); e.g. ew,uw,famo,upgrad; "
        "also auto (the race) and tuned_weights (the tuned weighted sum)",
    )
    c.add_argument(
        "--architectures",
        type=_csv,
        metavar="A,A",
        help="architectures to compare (default: the config's, hard): "
        + _choices("model.architecture"),
    )
    c.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help=f"how many seeds each model is trained with (default {defaults['seeds']}): "
        "runs use seeds --seed, --seed + 1, ..., each drawing its own split and "
        "initialisation (--seed alone sets the first)",
    )
    c.add_argument(
        "--affinity-every",
        type=int,
        metavar="N",
        help="measure task affinity every N steps in the multi-task runs (default "
        f"{defaults['affinity_every']}; 0: off)",
    )
    c.add_argument(
        "--overwrite",
        action="store_true",
        help="replace finished runs in --out whose config differs (otherwise an error)",
    )


def _report(sub: Any) -> None:
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


def _serve(sub: Any) -> None:
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
    s.add_argument(
        "--max-wait-ms",
        type=float,
        metavar="MS",
        help="under concurrent load, wait up to MS for other requests to share a forward "
        "pass (default 1.0; 0: never)",
    )
    s.add_argument(
        "--max-batch", type=int, metavar="N", help="most records per forward pass (default 256)"
    )


def _export(sub: Any) -> None:
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


def _explain(sub: Any) -> None:
    x = sub.add_parser(
        "explain",
        help="permutation importance of each feature for each task",
        description="Shuffle each feature column in turn (a text or image column is one "
        "group) and score every task again with its headline metric: the drop, as mean "
        "and spread over --repeats shuffles, is the feature's importance for the task. "
        "Saved into the run as importance.json; its report (RUN_DIR/report.html, written "
        "again now if train wrote it) draws one chart per task.",
    )
    x.add_argument("run", metavar="RUN_DIR")
    x.add_argument("--data", metavar="FILE", required=True, help="CSV or Parquet with labels")
    x.add_argument(
        "--split",
        choices=["all", "train", "validation", "test"],
        default="all",
        help="rows of FILE to use: all (default), or the run's own split of FILE drawn "
        "again as training drew it (FILE must be the table it trained on)",
    )
    x.add_argument(
        "--repeats", type=int, default=5, metavar="N", help="shuffles per feature (default 5)"
    )
    x.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the shuffles")
    x.add_argument("--json", action="store_true", help="print the result as JSON")
    x.add_argument(
        "--overwrite", action="store_true", help="replace the run's existing importance.json"
    )
