"""Issue 15, point 2: balancing: auto on the competing-tasks problem (tests/
test_balancing_training.py: task b is 100 times larger and starves a under ew) and on
SUPPORT2 (its choice and race in the run's report).

    PYTHONPATH=src python benchmarks/auto_balancing.py OUT_DIR
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

COMMON = dict(hidden=[64, 3], head_hidden=[32], dropout=0.0, norm="none", epochs=60,
              patience=None, lr=3e-3, weight_decay=0.0, batch_size=32, seed=0)  # fmt: skip


def _r2(model: polytask.MultiTaskModel) -> dict[str, float]:
    return {t: round(m["r2"], 4) for t, m in model.metrics["test"].items()}


def main(out: Path) -> None:
    df = competing_tasks(3000, seed=0)
    for name, bal in (("ew", "ew"), ("auto", {"method": "auto", "auto_budget": 60})):
        t = time.perf_counter()
        m = polytask.fit(
            df, COMPETING_TASKS, balancing=bal, out=out / f"competing-{name}", **COMMON
        )
        seconds = round(time.perf_counter() - t, 1)
        chosen = m.config.balancing.model_dump()
        row = {"problem": "competing", "run": name, "seconds": seconds, "chosen": chosen}
        print(json.dumps(row | {"test_r2": _r2(m)}), flush=True)
    single = polytask.fit(df.drop(columns=["b"]), [COMPETING_TASKS[0]], **COMMON)
    print(json.dumps({"problem": "competing", "run": "single-task a", "test_r2": _r2(single)}))
    s2 = load_support2()[[*SUPPORT2_FEATURES, "hospdead", "slos", "sfdm2"]]
    t = time.perf_counter()
    run = out / "support2-auto"
    m = polytask.fit(s2, SUPPORT2_TASKS, balancing={"method": "auto", "auto_budget": 40},
                     epochs=20, out=run)  # fmt: skip
    page = write_report(run, plots=False).read_text()
    race = json.loads((run / "race.json").read_text())
    print(json.dumps({"problem": "support2", "seconds": round(time.perf_counter() - t, 1),
                      "race_seconds": race["seconds"], "winner": race["winner"],
                      "rounds": [[(r["entrant"], r["score"]) for r in rnd["results"]]
                                 for rnd in race["rounds"]],
                      "in_report": "Balancing: the auto race" in page,
                      "test": m.metrics["test"]}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
