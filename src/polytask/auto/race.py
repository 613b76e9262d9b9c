"""The race behind ``balancing.method: auto``.

Entrants: the methods of ``auto_methods`` (the plain sum ``ew`` always among them) and
``auto_weights`` weighted sums (tuned static weights): weight_t = m_t / L_t, with L_t task
t's validation loss under ``ew`` after the first round (so every task starts on one
scale) and m_t = 1 for the first, drawn log-uniformly in [0.1, 10] (seeded) for the
others. Successive halving: every round trains each survivor from scratch for
``epochs`` epochs, scores it on the validation split by Δm against the round's median
entrant (per headline metric, lower is better), and keeps the best 1/``auto_eta``, until
one is left. Each round spends about ``auto_budget / rounds`` epochs in all (with
``auto_seconds``, the budget in epochs is what that many seconds buy at the first
entrant's pace). The evidence (every entrant's validation scores per round) is the race
record that the run keeps as race.json.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field, PositiveInt

from polytask.config.fields import Strict
from polytask.errors import PolytaskError
from polytask.metrics.delta_m import Headline, delta_m

AUTO = "auto"


class AutoOptions(Strict):
    #: entrant-epochs the whole race may spend
    auto_budget: PositiveInt = 24
    #: or: seconds the race may spend (converted to epochs at the first entrant's pace)
    auto_seconds: float | None = Field(None, gt=0)
    #: the methods raced (with their default options); ew is always added
    auto_methods: list[str] = Field(default_factory=lambda: ["ew", "uw", "dwa", "famo"])
    #: how many weighted sums (tuned static weights) race beside them
    auto_weights: int = Field(3, ge=1)
    #: keep the best 1/eta of the entrants after each round
    auto_eta: int = Field(2, ge=2)


@dataclass
class Entrant:
    name: str
    #: the balancing section the entrant trains with
    balancing: dict[str, Any]
    #: for a weighted sum: its multipliers m_t (weights follow after round 1)
    multipliers: list[float] | None = None


#: trains a config and returns {"validation": metrics, "losses": {task: loss}, "seconds"}
FitShort = Callable[[dict[str, Any], int], dict[str, Any]]


def entrants(opts: AutoOptions, tasks: list[str], seed: int) -> list[Entrant]:
    """ew first (its losses set the weights' scale), the other methods, the weighted sums."""
    methods = ["ew", *[m for m in dict.fromkeys(opts.auto_methods) if m not in ("ew", AUTO)]]
    out = [Entrant(m, {"method": m}) for m in methods]
    rng = np.random.default_rng(seed)
    for i in range(opts.auto_weights):
        mult = [1.0] * len(tasks) if i == 0 else (10 ** rng.uniform(-1, 1, len(tasks))).tolist()
        out.append(Entrant(f"weights#{i + 1}", {"method": "weights"}, [round(m, 4) for m in mult]))
    return out


def _weights(mult: list[float], tasks: list[str], losses: Mapping[str, float]) -> dict[str, float]:
    """m_t / L_t, normalised to sum to the number of tasks (the plain sum's scale)."""
    raw = [m / max(float(losses.get(t, 1.0)), 1e-12) for m, t in zip(mult, tasks, strict=True)]
    total = sum(raw)
    return {t: round(len(tasks) * w / total, 6) for t, w in zip(tasks, raw, strict=True)}


def _scores(results: list[dict[str, Any]], headline: Headline) -> list[float]:
    """Δm of each entrant against the round's per-metric median (inf where undefined)."""
    median: dict[str, dict[str, float]] = {}
    for task, metrics in headline.items():
        for metric in metrics:
            vals = [r["validation"].get(task, {}).get(metric) for r in results]
            vals = [float(v) for v in vals if v is not None and math.isfinite(float(v))]
            if vals:
                median.setdefault(task, {})[metric] = statistics.median(vals)
    out = []
    for r in results:
        d = delta_m(r["validation"], median, headline).value
        out.append(float("inf") if d is None else round(d, 4))
    return out


def _plan(n: int, opts: AutoOptions, pace: float | None) -> tuple[int, int]:
    """(rounds, budget in entrant-epochs)."""
    rounds = max(1, math.ceil(math.log(n, opts.auto_eta))) if n > 1 else 1
    budget = opts.auto_budget
    if opts.auto_seconds is not None and pace:
        budget = max(int(opts.auto_seconds / pace), n)
    return rounds, budget


def race(
    opts: AutoOptions, tasks: list[str], headline: Headline, seed: int, fit: FitShort
) -> dict[str, Any]:
    """Run the race; returns the record (``winner`` holds the balancing section)."""
    field = entrants(opts, tasks, seed)
    started = time.perf_counter()
    rounds_done: list[dict[str, Any]] = []
    rounds, budget = _plan(len(field), opts, None)
    losses: Mapping[str, float] = {}
    while True:
        epochs = max(1, budget // (rounds * len(field)))
        results = []
        for e in field:
            if e.multipliers is not None:
                e.balancing = {
                    "method": "weights",
                    "weights": _weights(e.multipliers, tasks, losses),
                }
            r = fit(dict(e.balancing), epochs)
            results.append({"entrant": e.name, "balancing": e.balancing, **r})
            if not losses and e.name == "ew":
                losses = r["losses"]
                if opts.auto_seconds is not None:  # the budget at ew's pace
                    rounds, budget = _plan(len(field), opts, r["seconds"] / epochs)
                    epochs = max(1, budget // (rounds * len(field)))
        for r, s in zip(results, _scores(results, headline), strict=True):
            r["score"] = s
        rounds_done.append({"epochs": epochs, "results": results})
        keep = max(1, len(field) // opts.auto_eta)
        order = sorted(range(len(field)), key=lambda i: results[i]["score"])
        field = [field[i] for i in sorted(order[:keep])]
        if len(field) == 1:  # the winner trains to the end after the race
            break
    winner = field[0]
    return {
        "options": opts.model_dump(mode="json"),
        "budget_epochs": budget,
        "scale_losses": dict(losses),
        "rounds": rounds_done,
        "winner": {"entrant": winner.name, "balancing": winner.balancing},
        "seconds": round(time.perf_counter() - started, 3),
        "score": "Δm% on validation against the round's median entrant (lower is better)",
    }


def check(options: Mapping[str, Any], methods: Mapping[str, Any]) -> AutoOptions:
    """The auto options validated, every raced method known."""
    from polytask.config import validate_options

    opts: AutoOptions = validate_options(AutoOptions, dict(options), "balancing method 'auto'")
    for m in opts.auto_methods:
        if m != AUTO and m not in methods:
            raise PolytaskError(
                f"`balancing.auto_methods` names '{m}', which is not a balancing method; "
                f"choose from {', '.join(methods)}"
            )
    return opts
