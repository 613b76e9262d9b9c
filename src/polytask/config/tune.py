"""The ``tune:`` section of a run config: what ``polytask tune`` searches and optimises.

``space`` entries override the default search space (:mod:`polytask.tuning.space`) key by
key; ``null`` removes a default entry. A key is a config key (``training.lr``), a method's
option under ``balancing.METHOD.OPTION`` (sampled only when that method is drawn), or
``balancing.weights`` (one log-scale weight per task for the weighted sum)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt, model_validator

from polytask.config.fields import Strict


class ParamSpec(Strict):
    """One searched key: ``choices`` (any values), or a range ``low``..``high`` (integers
    when both are integers; ``log: true`` samples on a log scale)."""

    choices: list[Any] | None = Field(None, min_length=1)
    low: float | None = None
    high: float | None = None
    log: bool = False

    @model_validator(mode="after")
    def _one_form(self) -> ParamSpec:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give choices: [...] or both low and high")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high))


class TuneConfig(Strict):
    #: delta_m (Δm on validation against the default config; lower is better), loss (the
    #: summed validation task losses), TASK.METRIC (one validation metric), or pareto (one
    #: objective per task: its headline metric; a Pareto front, no pruning)
    objective: str = "delta_m"
    #: epochs of each trial (None: training.epochs); short trials are the point
    epochs: PositiveInt | None = None
    #: stop trials whose per-epoch validation value is worse than the median of earlier
    #: trials at the same epoch (median), or never (none)
    pruner: Literal["median", "none"] = "median"
    #: trials that run to the end before pruning starts
    startup_trials: int = Field(5, ge=0)
    #: seed of the sampler (TPE)
    seed: int = Field(0, ge=0)
    #: overrides of the default search space: key -> {choices} or {low, high, log}; null
    #: removes a default key
    space: dict[str, ParamSpec | None] = Field(default_factory=dict)


#: balancing sections that ``compare --methods`` takes by name beside the methods: the
#: race of ``balancing: auto`` (polytask.auto), and the tuned weighted sum (the race of
#: static weightings alone: ew and weighted sums on the tasks' loss scale)
BALANCING_PRESETS: dict[str, dict[str, Any]] = {
    "auto": {"method": "auto"},
    "tuned_weights": {"method": "auto", "auto_methods": [], "auto_weights": 4},
}
