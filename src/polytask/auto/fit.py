"""How the race trains an entrant: the run's prepared data and network factory, the
entrant's balancing section, a few epochs, scored on the validation split."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polytask.architectures import MultiTaskNet
from polytask.auto.race import AutoOptions, check, race
from polytask.balancing import METHODS
from polytask.balancing import get as get_balancer
from polytask.config import BalancingConfig, RunConfig
from polytask.errors import PolytaskError
from polytask.metrics.delta_m import headline_of
from polytask.prepare import PreparedData
from polytask.tasks import Task
from polytask.training import Trainer

Network = Callable[[RunConfig], MultiTaskNet]


def entrant_config(cfg: RunConfig, balancing: dict[str, Any], epochs: int | None) -> RunConfig:
    """The run's config with an entrant's balancing (the run's jacobian, log_every and
    modifiers kept) and, for the race, ``epochs`` epochs without early stopping."""
    b = cfg.balancing
    section = {"jacobian": b.jacobian, "log_every": b.log_every, **b.modifiers(), **balancing}
    update: dict[str, Any] = {"balancing": BalancingConfig.model_validate(section)}
    if epochs is not None:
        update["training"] = cfg.training.model_copy(
            update={"epochs": epochs, "patience": None, "progress": False}
        )
        update["balancing"] = update["balancing"].model_copy(update={"log_every": 0})
    return cfg.model_copy(update=update)


def _fit_short(
    cfg: RunConfig, prepared: PreparedData, tasks: list[Task], network: Network
) -> Callable[[dict[str, Any], int], dict[str, Any]]:
    train, val = prepared.tables["train"], prepared.split("validation")
    if val is None:
        raise PolytaskError(
            "`balancing.method: auto` races methods on the validation split, but it has no "
            "rows; give --validation FILE or keep the default split"
        )

    def fit(balancing: dict[str, Any], epochs: int) -> dict[str, Any]:
        c = entrant_config(cfg, balancing, epochs)
        balancer = get_balancer(c.balancing.method, **c.balancing.options)
        trainer = Trainer(
            network(c), tasks, balancer, c.training, verbose=False,
            jacobian=c.balancing.jacobian, log_every=0,
        )  # fmt: skip
        result = trainer.fit(train, val)  # type: ignore[arg-type]
        best = next(r for r in result.history if r["epoch"] == result.best_epoch)
        return {
            "validation": best["validation"]["metrics"],
            "losses": best["validation"]["loss"],
            "seconds": round(result.seconds, 3),
            "epochs_run": result.epochs_run,
        }

    return fit


def check_auto(cfg: RunConfig) -> AutoOptions:
    """The auto options checked before any work (unknown options, unknown methods)."""
    opts = check(cfg.balancing.model_extra or {}, METHODS)
    for m in opts.auto_methods:
        get_balancer(m)
    return opts


def resolve(
    cfg: RunConfig, prepared: PreparedData, tasks: list[Task], network: Network
) -> tuple[RunConfig, dict[str, Any]]:
    """Race the methods; the config with the winner's balancing, and the race record."""
    opts = check_auto(cfg)
    names = [t.name for t in tasks]
    record = race(
        opts,
        names,
        headline_of(tasks),
        cfg.training.seed,
        _fit_short(cfg, prepared, tasks, network),
    )
    return entrant_config(cfg, record["winner"]["balancing"], None), record
