"""Issue 15, points 1-2: polytask tune on SUPPORT2 (40 trials, --jobs 2, within 10
minutes), the tuned config against the default on test over 3 split seeds, a 3-task
Pareto study, and balancing: auto on SUPPORT2.

    PYTHONPATH=src python benchmarks/tune_support2.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import polytask
from polytask.config import parse_config
from polytask.datasets.support2 import SUPPORT2_FEATURES, SUPPORT2_TASKS, load_support2
from polytask.metrics.delta_m import delta_m

EPOCHS = 5


def main(out: Path) -> None:
    df = load_support2()[[*SUPPORT2_FEATURES, "hospdead", "slos", "sfdm2"]]
    base = dict(epochs=EPOCHS, patience=None, seed=0)
    t0 = time.perf_counter()
    res = polytask.tune(None, SUPPORT2_TASKS, out=out / "study", trials=40, timeout=600,
                        jobs=2, data=df, **base)  # fmt: skip
    wall = time.perf_counter() - t0
    import optuna

    study = optuna.load_study(study_name="polytask", storage=f"sqlite:///{out}/study/study.db")
    states = [t.state.name for t in study.trials]
    secs = [t.duration.total_seconds() for t in study.trials if t.duration]
    pids = {t.user_attrs.get("pid") for t in study.trials}
    summary = {
        "wall_seconds": round(wall, 1),
        "finished": res.trials,
        "states": {s: states.count(s) for s in set(states)},
        "trial_seconds_mean": round(sum(secs) / len(secs), 2),
        "processes": len(pids - {None}),
        "best_values": res.best_values,
    }
    print(json.dumps(summary), flush=True)
    best = res.best_config.to_dict()
    default = polytask.build_config(None, SUPPORT2_TASKS, **base).to_dict()
    rows = {}
    for seed in (0, 1, 2):
        for name, cfg in (("default", default), ("tuned", best)):
            c = json.loads(json.dumps(cfg))
            c["training"]["seed"] = seed
            model = polytask.api.train_run(parse_config(c), df, verbose=False)
            rows[(name, seed)] = model.metrics["test"]
            tasks = polytask.api.build_tasks(parse_config(c))
        dm = delta_m(rows[("tuned", seed)], rows[("default", seed)],
                     {t.name: dict(t.headline) for t in tasks}).value  # fmt: skip
        print(json.dumps({"seed": seed, "delta_m_tuned_vs_default": dm,
                          "default": rows[("default", seed)], "tuned": rows[("tuned", seed)]}),
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1]))
