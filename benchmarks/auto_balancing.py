"""Issue 15, point 2: balancing: auto on the competing-tasks problem (tests/
test_balancing_training.py: task b is 100 times larger and starves a under ew) and on
SUPPORT2 (its choice and race in the run's report).

    PYTHONPATH=src python benchmarks/auto_balancing.py OUT [ROWS EPOCHS BUDGET] [competing|support2]

(defaults 1500 rows, 30 epochs, a race of 40 entrant-epochs; SUPPORT2: 5 epochs, 20)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import polytask
from polytask.datasets.support2 import SUPPORT2_FEATURES, SUPPORT2_TASKS, load_support2
from polytask.datasets.synthetic import COMPETING_TASKS, competing_tasks
from polytask.evaluation.report import write_report

COMMON = dict(hidden=[64, 3], head_hidden=[32], dropout=0.0, norm="none",
              patience=None, lr=3e-3, weight_decay=0.0, batch_size=32, seed=0)  # fmt: skip


def _r2(model: polytask.MultiTaskModel) -> dict[str, float]:
    return {t: round(m["r2"], 4) for t, m in model.metrics["test"].items()}


def main(out: Path, rows: int, epochs: int, budget: int, which: list[str]) -> None:
    if "support2" not in which:
        competing(out, rows, epochs, budget)
    if "competing" not in which:
        support2(out)


def competing(out: Path, rows: int, epochs: int, budget: int) -> None:
    df = competing_tasks(rows, seed=0)
    common = COMMON | {"epochs": epochs}
    for name, bal in (("ew", "ew"), ("auto", {"method": "auto", "auto_budget": budget})):
        t = time.perf_counter()
        m = polytask.fit(
            df, COMPETING_TASKS, balancing=bal, out=out / f"competing-{name}", **common
        )
        seconds = round(time.perf_counter() - t, 1)
        chosen = m.config.balancing.model_dump()
        row = {"problem": "competing", "run": name, "seconds": seconds, "chosen": chosen}
        print(json.dumps(row | {"test_r2": _r2(m)}), flush=True)


def support2(out: Path) -> None:
    s2 = load_support2()[[*SUPPORT2_FEATURES, "hospdead", "slos", "sfdm2"]]
    t = time.perf_counter()
    run = out / "support2-auto"
    m = polytask.fit(s2, SUPPORT2_TASKS, balancing={"method": "auto", "auto_budget": 20},
                     epochs=5, patience=None, out=run)  # fmt: skip
    page = write_report(run, plots=False).read_text()
    race = json.loads((run / "race.json").read_text())
    print(json.dumps({"problem": "support2", "seconds": round(time.perf_counter() - t, 1),
                      "race_seconds": race["seconds"], "winner": race["winner"],
                      "rounds": [[(r["entrant"], r["score"]) for r in rnd["results"]]
                                 for rnd in race["rounds"]],
                      "in_report": "Balancing: the auto race" in page,
                      "test": m.metrics["test"]}), flush=True)  # fmt: skip


if __name__ == "__main__":
    args = sys.argv[1:]
    sizes = [int(a) for a in args[1:] if a.isdigit()] or [1500, 30, 40]
    main(Path(args[0]), *sizes, which=args[1:])
