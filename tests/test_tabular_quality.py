"""benchmarks/tabular_quality.py: its quick mode runs polytask, boosting and the linear
model on the same split of a tiny table and summarises each task against the better
baseline; a variant is a dict merged into the run config."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

PATH = Path(__file__).parents[1] / "benchmarks" / "tabular_quality.py"


@pytest.fixture(scope="module")
def bench():  # the benchmark is a script, not a package module
    spec = importlib.util.spec_from_file_location("tabular_quality", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tabular_quality"] = module
    spec.loader.exec_module(module)
    return module


def test_quick_mode_on_penguins(bench) -> None:
    report = bench.main(["--tables", "penguins", "--quick"])
    run = report["tables"]["penguins"][0]
    assert run["defaults"]["chosen"]["epochs"] == bench.QUICK_EPOCHS  # quick caps epochs
    assert run["defaults"]["chosen"]["batch_size"] == 32  # chosen from 241 training rows
    assert run["headline"] == {"species": "accuracy", "body_mass_g": "r2", "sex": "auroc"}
    # the baselines see the split polytask trained on: species is nearly separable
    assert run["hgb"]["test"]["species"]["accuracy"] > 0.95
    assert run["linear"]["test"]["species"]["accuracy"] > 0.95
    assert run["linear"]["test"]["body_mass_g"]["r2"] > 0.7
    rows = report["summary"][0]["tasks"]
    sex = rows["sex"]
    best = max(sex["means"]["hgb"], sex["means"]["linear"])
    assert sex["margin"] == pytest.approx(sex["means"]["defaults"] - best)
    assert set(report["summary"][0]["seconds"]) == {"defaults", "hgb", "linear"}


def test_variants_merge_into_the_config(bench) -> None:
    merged = bench.merge(
        {"model": {"hidden": [8], "dropout": 0.3}}, bench.dotted(["model.dropout=0.1"])
    )
    assert merged == {"model": {"hidden": [8], "dropout": 0.1}}
    with pytest.raises(SystemExit):
        bench.parse(["--tables", "nope"])
