"""SUPPORT2: is in-hospital death calibrated, and do length-of-stay intervals cover?

For each split seed, the demo's model (hospdead binary, slos regression on a log scale,
sfdm2 multiclass) is trained on its train split; after training polytask fits a
temperature per class task and split-conformal intervals per regression task on the
validation split. On the test split this prints hospdead's ECE (15 equal-width bins)
and Brier score without and with the temperature, and the empirical coverage and mean
width of slos's 90% conformal intervals, next to the obvious alternative: a normal
interval ŷ ± 1.645·σ (σ the standard deviation of the validation residuals, in days).
"ECE floor" is the ECE a perfectly calibrated model with the same test probabilities
would show on as many rows (labels drawn from those probabilities, mean of 200 draws):
below it, a lower ECE is sampling noise, not better calibration. Run alone:

    python benchmarks/calibration_coverage.py [--seeds 5] [--coverage 0.9]
        [--hospdead loss=focal] [--set model.numeric_encoding=standard ...]

``--hospdead`` adds options to the hospdead task (``loss=focal``, ``pos_weight=balanced``):
losses that trade calibration for the rare class, the case a temperature is for.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

from polytask.api import build_config, train_run
from polytask.datasets import SUPPORT2_FEATURES, SUPPORT2_TASKS, load_support2
from polytask.features.splits import split_frame
from polytask.tasks.calibration import ece

sys.path.insert(0, str(Path(__file__).parent))
from tabular_quality import dotted, merge  # a script beside its helpers


def ece_floor(p: np.ndarray, draws: int = 200) -> float:
    """Mean ECE of labels drawn from ``p`` itself: a calibrated model's sampling noise."""
    rng = np.random.default_rng(0)
    return float(np.mean([ece(p, (rng.random(len(p)) < p).astype(int)) for _ in range(draws)]))


def one_seed(df, seed: int, coverage: float, hospdead: str, overrides: dict) -> dict[str, float]:  # type: ignore[no-untyped-def]
    tasks = [
        t + f":{hospdead}" if hospdead and t.startswith("hospdead:") else t for t in SUPPORT2_TASKS
    ]
    base = merge({"features": {"include": SUPPORT2_FEATURES}}, overrides)
    cfg = build_config(base, tasks, seed=seed)
    t0 = time.perf_counter()
    model = train_run(cfg, df, verbose=False)
    seconds = time.perf_counter() - t0
    d = cfg.data
    _, val, test = split_frame(df, d.validation_fraction, d.test_fraction, seed)
    with model.corrections(calibrated=False):
        before = model.evaluate(test)["hospdead"]
        p_test = model.predict(test)["hospdead_proba"].to_numpy(dtype=float)
    labelled = test["hospdead"].notna().to_numpy()
    with model.corrections(coverage=coverage):
        after = model.evaluate(test)
    pred_val, pred_test = model.predict(val)["slos"], model.predict(test)["slos"]
    sigma = float(np.std(val["slos"].to_numpy() - pred_val.to_numpy()))
    half = norm.ppf(0.5 + coverage / 2) * sigma
    y = test["slos"].to_numpy()
    normal_cover = float(np.mean(np.abs(y - pred_test.to_numpy()) <= half))
    return {
        "T": model.tasks[0].temperature.value or 1.0,
        "ece_before": before["ece"],
        "ece_after": after["hospdead"]["ece"],
        "ece_floor": ece_floor(p_test[labelled]),
        "brier_before": before["brier"],
        "brier_after": after["hospdead"]["brier"],
        "auroc": after["hospdead"]["auroc"],
        "coverage": after["slos"]["coverage"],
        "width": after["slos"]["interval_width"],
        "normal_coverage": normal_cover,
        "normal_width": float(np.mean(np.minimum(pred_test, half) + half)),  # lower at 0
        "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--coverage", type=float, default=0.9)
    ap.add_argument("--hospdead", default="", help="options for hospdead, e.g. loss=focal")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    overrides = dotted(args.set)
    df = load_support2()
    rows = []
    head = "seed      T  ECE before  ECE after  ECE floor  Brier before  Brier after"
    head += "  slos coverage  width (days)  normal cover  normal width"
    print(head)
    for seed in range(args.seeds):
        r = one_seed(df, seed, args.coverage, args.hospdead, overrides)
        rows.append(r)
        print(
            f"{seed:>4} {r['T']:>6.3f} {r['ece_before']:>11.4f} {r['ece_after']:>10.4f} "
            f"{r['ece_floor']:>10.4f} "
            f"{r['brier_before']:>13.4f} {r['brier_after']:>12.4f} {r['coverage']:>14.4f} "
            f"{r['width']:>13.2f} {r['normal_coverage']:>13.4f} {r['normal_width']:>13.2f}",
            flush=True,
        )
    m = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    s = {k: float(np.std([r[k] for r in rows])) for k in rows[0]}
    print(
        f"mean over {args.seeds} seeds: hospdead test ECE {m['ece_before']:.4f} ± "
        f"{s['ece_before']:.4f} before -> {m['ece_after']:.4f} ± {s['ece_after']:.4f} with "
        f"the temperature (ratio {m['ece_after'] / m['ece_before']:.2f}; a calibrated "
        f"model's floor {m['ece_floor']:.4f}); Brier "
        f"{m['brier_before']:.4f} -> {m['brier_after']:.4f}; slos {args.coverage:.0%} "
        f"conformal coverage {m['coverage']:.4f} ± {s['coverage']:.4f} (min "
        f"{min(r['coverage'] for r in rows):.4f}, max {max(r['coverage'] for r in rows):.4f}), "
        f"mean width {m['width']:.2f} days; normal interval coverage "
        f"{m['normal_coverage']:.4f}, width {m['normal_width']:.2f} days; "
        f"{m['seconds']:.1f}s training per seed"
    )


if __name__ == "__main__":
    main()
