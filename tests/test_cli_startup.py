"""The command line answers before it imports the library (issue 17, point 1).

``--help``, ``--version``, each verb's ``--help`` and the mistakes that need no data
(a bad flag, an unknown kind, a missing file or run) are measured in a fresh interpreter,
as a user meets them. The wall-time limits are generous (the machine is shared); what
cannot pass by luck is the second check: torch, pandas and scikit-learn are not in
``sys.modules`` after the command, which is what the seconds were.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "pandas", "sklearn", "scipy", "matplotlib")

#: run ``main(argv)`` for each argv in a fresh interpreter; print, per command, the exit
#: code, its output and the heavy modules imported so far, as JSON lines on stdout
PROBE = """
import contextlib, io, json, sys
from polytask.cli import main
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
    heavy = [m for m in {heavy!r} if m in sys.modules]
    print(json.dumps({{"rc": rc, "heavy": heavy, "out": out.getvalue()}}))
"""

#: seconds for one fresh interpreter; measured 0.25-0.45 s for --help and 0.4-0.7 s for
#: the errors on the 2-core VM at load 4, about 1 s at load 15, against 4.5-8 s (load 4)
#: and 15-17 s (load 15) before (benchmarks/RESULTS.md, issue 17). The limits leave room
#: for a loaded machine; the heavy-module check is what cannot pass by luck.
HELP_LIMIT = 3.0
ERROR_LIMIT = 4.0


def probe(argvs: list[list[str]], cwd: Path) -> tuple[list[dict], float]:
    """The commands' results and the interpreter's wall time, start to exit."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "100"}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), json.dumps(argvs)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )
    seconds = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()], seconds


HELP = [
    ["--help"],
    ["--version"],
    *[[verb, "--help"] for verb in ("train", "evaluate", "predict", "compare", "report")],
    *[[verb, "--help"] for verb in ("serve", "export", "demo")],
]


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"]], ids=" ".join)
def test_help_in_a_fresh_interpreter_is_fast(argv: list[str], tmp_path: Path) -> None:
    [result], seconds = probe([argv], tmp_path)
    assert (result["rc"], result["heavy"]) == (0, []), result["out"]
    assert seconds < HELP_LIMIT, f"{' '.join(argv)} took {seconds:.2f}s"


def test_every_verbs_help_imports_nothing_heavy(tmp_path: Path) -> None:
    results, seconds = probe(HELP, tmp_path)
    for argv, result in zip(HELP, results, strict=True):
        assert (result["rc"], result["heavy"]) == (0, []), (argv, result["out"])
        assert "polytask" in result["out"]
    assert seconds < HELP_LIMIT * 2, f"{len(HELP)} helps took {seconds:.2f}s"
    flat = " ".join(results[2]["out"].split())  # train --help names the registries' names
    assert "hard, mmoe, cgc, ple, cross_stitch, mtan" in flat
    assert "ew, weights, uw" in flat and "upgrad" in flat


def mistakes(tmp_path: Path) -> list[tuple[list[str], str]]:
    data = tmp_path / "t.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    run = ["--data", str(data), "--out", "r"]
    return [
        (["train", "--epohcs", "3"], "unrecognized arguments: --epohcs"),
        (
            ["train", *run, "--task", "a:regresion"],
            "unknown task kind 'regresion' (did you mean 'regression'?)",
        ),
        (
            ["train", *run, "--task", "a:regression", "--balancing", "upgrd"],
            "unknown balancing method 'upgrd' (did you mean 'upgrad'?)",
        ),
        (
            ["train", "--data", "nope.csv", "--task", "a:regression", "--out", "r"],
            "data file 'nope.csv' does not exist",
        ),
        (
            ["predict", "no_run", "--data", str(data), "--output", "p.csv"],
            "run directory 'no_run' does not exist",
        ),
        (["train", *run, "--task", "a:regression", "--epochs", "0"], "'training.epochs'"),
        (["train", *run, "--task", "type:regression"], "task name 'type' cannot name"),
    ]


def test_a_mistake_that_needs_no_data_is_answered_at_once(tmp_path: Path) -> None:
    cases = mistakes(tmp_path)
    [first], seconds = probe([cases[1][0]], tmp_path)  # one alone, timed
    assert (first["rc"], first["heavy"]) == (2, []), first["out"]
    assert seconds < ERROR_LIMIT, f"an unknown kind took {seconds:.2f}s"
    results, _ = probe([argv for argv, _ in cases], tmp_path)
    for (argv, message), result in zip(cases, results, strict=True):
        assert (result["rc"], result["heavy"]) == (2, []), (argv, result["out"])
        assert message in result["out"] and "Traceback" not in result["out"], argv
        assert len(result["out"].strip().splitlines()) <= 2, result["out"]  # usage + error


def test_the_source_read_registries_are_the_imported_ones() -> None:
    from polytask.architectures import ARCHITECTURES
    from polytask.balancing import METHODS
    from polytask.cli import static
    from polytask.evaluation.layout import make_spec
    from polytask.tasks import BUILTIN

    assert static.registry("polytask.balancing", "METHODS") == tuple(METHODS)
    assert static.registry("polytask.architectures", "ARCHITECTURES") == tuple(ARCHITECTURES)
    assert static.registry("polytask.tasks", "KINDS") == tuple(c.kind for c in BUILTIN)
    import inspect

    real = {k: v.default for k, v in inspect.signature(make_spec).parameters.items()}
    read = static.defaults("polytask.evaluation.layout", "make_spec")
    assert read == {k: v for k, v in real.items() if v is not inspect.Parameter.empty}


def test_the_reserved_head_names_are_torchs() -> None:
    from polytask.config.reserved import HEAD_ATTRIBUTES, reserved_head_name

    # in a fresh interpreter: a library imported by another test may add to nn.Module
    # (transformers adds smart_apply), and torch's own attributes are what is reserved
    code = "from torch import nn; print('\\n'.join(dir(nn.ModuleDict())))"
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    names = {n for n in listed.stdout.split() if not (n.startswith("__") and n.endswith("__"))}
    assert names == HEAD_ATTRIBUTES, "regenerate polytask/config/reserved.py for this torch"
    assert reserved_head_name("type") and reserved_head_name("__init__")
    assert not reserved_head_name("species")
