"""Modifiers that wrap any balancing method (``balancing: {method: mgda, ema: 0.9,
every: 5}``), in one place for every method.

- ``ema``: the weights the model follows are an exponential moving average of the
  method's, w̄_k = ema · w̄_(k-1) + (1 - ema) · w_k per task, starting at the task's first
  weights (CR-MOGM, Zhou et al. 2022, which smooths MGDA-type weights so that their
  stochastic noise does not bias the update). ``ema: 0`` is the method itself.
- ``every``: the weights are recomputed every k-th step and reused, exactly, in between.
  At gradient level a reused step needs no per-task Jacobian: the step weights the
  gradients at the representation and back-propagates once (the chain rule makes that
  the parameter-level Σ c_t g_t too), so it costs about an ordinary step. At loss level
  the method still sees every step (UW's variances, FAMO's logits keep learning); only
  the weights the model follows are held.

The two keys are declared once (:class:`polytask.config.modifiers.BalancingModifiers`,
fields of the schema's balancing section);
:func:`polytask.balancing.get` gives a method with either key a subclass of its class
whose options model has those fields too, so it is checked, printed, saved and restored
like any option. The weights of a loss-level method are the derivatives of its objective
with respect to the task losses (for a weighted sum, its weights), so any objective can
be smoothed or held. Methods that build their direction coordinate by coordinate
(GradDrop; DB-MTL and MoCo at parameter level) have no task weights to smooth: that
combination is an error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pydantic import create_model

from polytask.balancing.base import Balancer, GradientBalancer, LossBalancer, Losses
from polytask.balancing.jacobian import TaskJacobian
from polytask.config.modifiers import MODIFIER_KEYS, BalancingModifiers
from polytask.errors import PolytaskError

#: where a modified method's checkpoint keeps the modifiers' state
STATE_KEY = "modifier"


class HeldWeights:
    """The weights in use per task index, the step count and the two rules."""

    def __init__(self, ema: float, every: int):
        self.ema, self.every = ema, every
        self.step = 0
        self.weights: dict[int, float] = {}

    def due(self) -> bool:
        """A step between recomputations, with weights to reuse."""
        return self.every > 1 and self.step % self.every != 0 and bool(self.weights)

    def reused(self, tasks: list[int]) -> np.ndarray | None:
        if not self.due() or any(t not in self.weights for t in tasks):
            return None
        return np.array([self.weights[t] for t in tasks])

    def take(self, tasks: list[int], fresh: np.ndarray) -> np.ndarray:
        """This step's weights: reused, or the method's ``fresh`` ones averaged in."""
        reused = self.reused(tasks)
        self.step += 1
        if reused is not None:
            return reused
        out = np.empty(len(tasks))
        for i, (t, w) in enumerate(zip(tasks, np.asarray(fresh, dtype=np.float64), strict=True)):
            prev = self.weights.get(t)
            out[i] = w if prev is None else self.ema * prev + (1 - self.ema) * w
            self.weights[t] = float(out[i])
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "weights": {str(k): v for k, v in self.weights.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.weights = {int(k): float(v) for k, v in state["weights"].items()}


class _Modified(Balancer):
    """What the loss and the gradient form share: the held weights and their state."""

    options: Any

    def __init__(self, options: Any = None):
        super().__init__(options)
        self.held = HeldWeights(self.options.ema, self.options.every)
        #: the weights the model followed last step (loss level), by task name
        self.used: dict[str, float] = {}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), STATE_KEY: self.held.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        held = state.pop(STATE_KEY, None)
        if held is not None:
            self.held.load_state_dict(held)
        super().load_state_dict(state)


class GradientModified(_Modified, GradientBalancer):
    def reuses(self, tasks: list[int] | None = None) -> bool:
        return self.held.due() if tasks is None else self.held.reused(tasks) is not None

    def update(
        self,
        jac: TaskJacobian,
        tasks: list[int],
        losses: Losses | None = None,
        level: str = "parameters",
    ) -> np.ndarray | None:
        if self.needs_matrix_at(level):
            raise PolytaskError(no_weights(self.name, level))
        return super().update(jac, tasks, losses, level)

    def _weigh(self, gram_of: Any, tasks: list[int], losses: np.ndarray | None) -> np.ndarray:
        if self.held.reused(tasks) is None:
            coef = self.held.take(tasks, super()._weigh(gram_of, tasks, losses))
        else:
            coef = self.held.take(tasks, np.zeros(len(tasks)))  # reused: fresh not read
        self.last_weights = dict(zip(tasks, coef.tolist(), strict=True))
        return coef


class LossModified(_Modified, LossBalancer):
    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        """The method's objective f on detached copies of the losses (its own parameters
        keep their gradient), plus Σ w̄_t L_t with w_t = ∂f/∂L_t smoothed or held: the
        model's gradient is Σ w̄_t ∇L_t and the value stays f's."""
        leaves = [loss.detach().requires_grad_() for loss in losses]
        with torch.enable_grad():
            objective = super().combine(leaves)
        grads = torch.autograd.grad(objective, leaves, retain_graph=True, allow_unused=True)
        tasks = list(range(len(losses)))
        fresh = np.zeros(len(tasks))
        if self.held.reused(tasks) is None:  # one read-back of the T derivatives
            zero = torch.zeros_like(leaves[0])
            fresh = torch.stack([zero if g is None else g for g in grads]).double().cpu().numpy()
        used = self.held.take(tasks, fresh)
        names = self.task_names or [str(t) for t in tasks]
        self.used = dict(zip(names, used.tolist(), strict=True))
        stacked = torch.stack(losses)
        w = torch.as_tensor(used, dtype=stacked.dtype, device=stacked.device)
        return objective + (w * (stacked - stacked.detach())).sum()

    def weights(self) -> dict[str, float]:
        return dict(self.used) if self.used else super().weights()


def no_weights(name: str, level: str) -> str:
    return (
        f"balancing method '{name}' builds its update coordinate by coordinate at "
        f"jacobian: {level}, so it has no task weights for ema/every to smooth or hold; "
        "drop ema and every, or use another method"
    )


_MODIFIED: dict[type[Balancer], type[Balancer]] = {}


def modified(cls: type[Balancer]) -> type[Balancer]:
    """``cls`` with the modifiers: its options model gains the schema's ``ema`` and
    ``every`` fields (declared on :class:`BalancingModifiers`), its weights go through
    :class:`HeldWeights`."""
    # the matrix at every level, unless the method says otherwise per level (DB-MTL)
    per_level = getattr(cls, "needs_matrix_at", None) is not GradientBalancer.needs_matrix_at
    if issubclass(cls, GradientBalancer) and cls.needs_matrix and not per_level:
        raise PolytaskError(no_weights(cls.name, "parameters or representation"))
    clash = set(MODIFIER_KEYS) & set(cls.Options.model_fields)
    if clash:  # a method's own option would shadow a modifier
        raise TypeError(f"{cls.__name__} declares {sorted(clash)}, keys of the modifiers")
    if cls not in _MODIFIED:  # one class per method, so that isinstance and repr agree
        declared = BalancingModifiers.model_fields
        fields: Any = {key: (declared[key].annotation, declared[key]) for key in MODIFIER_KEYS}
        name = f"{cls.Options.__name__}Modified"
        options = create_model(name, __base__=cls.Options, **fields)
        mixin = GradientModified if issubclass(cls, GradientBalancer) else LossModified
        namespace = {"Options": options, "__doc__": cls.__doc__, "__module__": cls.__module__}
        _MODIFIED[cls] = type(cls.__name__, (mixin, cls), namespace)
    return _MODIFIED[cls]


def check_level(balancer: Balancer, level: str) -> None:
    """Before any work: a modified method must have task weights at ``level``."""
    if isinstance(balancer, GradientModified) and balancer.needs_matrix_at(level):
        raise PolytaskError(no_weights(balancer.name, level))


def wants_modifiers(options: dict[str, Any]) -> bool:
    return any(key in options for key in MODIFIER_KEYS)
