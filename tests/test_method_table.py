"""benchmarks/method_table.py: its methods come from the registry (a method another module
adds appears without a change), and the tuned static weights become a row once given."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from polytask.balancing import METHODS

PATH = Path(__file__).parents[1] / "benchmarks" / "method_table.py"


@pytest.fixture(scope="module")
def table():  # the benchmark is a script, not a package module
    spec = importlib.util.spec_from_file_location("method_table", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["method_table"] = module
    spec.loader.exec_module(module)
    return module


def test_every_registered_method_that_runs_on_defaults_is_in_the_table(table, monkeypatch) -> None:
    args = table.parse(["--quick"])
    assert table.methods_of(args, "competing") == [m for m in METHODS if m != "weights"]
    monkeypatch.setitem(METHODS, "new_method", METHODS["ew"])  # another helper's addition
    assert table.methods_of(args, "competing")[-1] == "new_method"
    assert table.methods_of(table.parse(["--methods", "ew,uw"]), "fashion") == ["ew", "uw"]


def test_tuned_weights_become_the_weights_row(table, monkeypatch) -> None:
    args = table.parse(["--methods", "ew"])
    cfg, _, _ = table._competing(table.parse(["--quick", "--competing-rows", "20"]))
    assert table.with_weights(cfg, "competing") is cfg  # none yet: no weights row
    monkeypatch.setitem(table.TUNED_WEIGHTS, "competing", {"a": 1.0, "b": 0.01})
    assert table.methods_of(args, "competing") == ["ew", "weights"]
    tuned = table.with_weights(cfg, "competing").balancing
    assert tuned.method == "weights" and tuned.options == {"weights": {"a": 1.0, "b": 0.01}}


def test_quick_and_full_sizes(table) -> None:
    quick, full = table.parse(["--quick"]), table.parse([])
    assert (quick.seeds, full.seeds) == (1, 3)
    assert quick.fashion_rows < full.fashion_rows and quick.competing_epochs < full.competing_epochs
    assert table.parse(["--quick", "--seeds", "2"]).seeds == 2  # a flag beats --quick
