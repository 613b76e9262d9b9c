"""The balancer protocol.

A balancer decides how task losses become one update. Loss-level methods (``level =
"loss"``) turn the per-task losses into one objective with :meth:`LossBalancer.combine`;
gradient-level ones (:class:`GradientBalancer`) turn the step's task Jacobian into the
update: weightings from the Gramian and the losses, aggregators from the matrix.
Each method declares its options once, as a pydantic model named ``Options`` next to its
code; :func:`polytask.balancing.get` validates them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from polytask.balancing.jacobian import MatrixJacobian, TaskJacobian


def seeded_generator(seed: int | None) -> torch.Generator:
    """A CPU generator for a stochastic method: reproducible with a seed, fresh without."""
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen


class Probe(Protocol):
    """What the trainer hands :meth:`Balancer.after_update` (a
    :class:`polytask.training.probe.TrainingProbe`): called, the step batch's losses at
    the updated parameters; for bilevel methods also the losses on any rows of the
    training split (``grad``: with their graph), the parameters and the learning rate."""

    def __call__(self) -> list[torch.Tensor]: ...

    def losses(self, rows: torch.Tensor, grad: bool = False) -> list[torch.Tensor]: ...

    @property
    def rows(self) -> int: ...

    @property
    def params(self) -> list[torch.nn.Parameter]: ...

    @property
    def lr(self) -> float: ...


class BalancerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Balancer:
    name: ClassVar[str]
    level: ClassVar[Literal["loss", "gradient"]]
    Options: ClassVar[type[BalancerOptions]] = BalancerOptions

    def __init__(self, options: BalancerOptions | None = None):
        self.options = options if options is not None else self.Options()
        self.task_names: list[str] = []

    def setup(self, task_names: list[str]) -> None:
        """Called once by the trainer with the tasks in output order."""
        self.task_names = list(task_names)

    def end_epoch(self, train_losses: dict[str, float]) -> None:
        """Called after each epoch with its mean training losses (e.g. DWA adapts)."""

    def after_update(self, losses_after: Callable[[], list[torch.Tensor]]) -> None:
        """Called after every optimiser step. ``losses_after()`` recomputes the batch's
        task losses at the updated parameters (one more forward, as the closure of
        ``torch.optim.LBFGS``); a method calls it only if it needs them (FAMO). In
        training it is a :class:`Probe`, which bilevel methods (Auto-Lambda) also ask
        for losses on other rows of the training split."""

    def parameters(self) -> list[torch.nn.Parameter]:
        """Learnable parameters of the method itself (optimised with the model)."""
        return []

    def weights(self) -> dict[str, float]:
        """The current task weights, for logging."""
        return {}

    def state(self) -> dict[str, Any]:
        """The method's adaptive state as plain JSON values."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        """Everything the method carries from one step to the next, for checkpoints: nested
        dicts/lists of JSON values and tensors (a checkpoint stores the tensors in
        safetensors and the rest as JSON). :meth:`state` plus random generators and the
        tensors that are not worth turning into lists."""
        return self.state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`: the method then continues exactly as it would have."""
        self.load_state(state)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.model_dump().items())
        return f"{type(self).__name__}({opts})"


def weighted_sum(losses: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Σ w_t L_t, as a chain of adds (cheaper than stacking for a handful of tasks)."""
    total = losses[0] * weights[0]
    for w, loss in zip(weights[1:], losses[1:], strict=True):
        total = total + loss * w
    return total


class LossBalancer(Balancer):
    level = "loss"

    def combine(self, losses: list[torch.Tensor]) -> torch.Tensor:
        """Per-task scalar losses (in task order) -> one scalar objective."""
        raise NotImplementedError


Losses = torch.Tensor | np.ndarray | list[float] | list[torch.Tensor]


def loss_values(losses: Losses) -> np.ndarray:
    """The task losses as a float64 array (one read-back per task)."""
    return np.asarray([float(v) for v in losses], dtype=np.float64).reshape(-1)


class GradientBalancer(Balancer):
    """Gradient-level methods map the T task gradients of a step to one update.

    A *weighting* (most methods) needs only the T x T Gramian K = G Gᵀ: it implements
    :meth:`coefficients` and the update is c @ G. An *aggregator* (methods that look at
    single coordinates, GradDrop) sets ``needs_matrix`` (or, where that depends on the
    level, overrides :meth:`needs_matrix_at`, as DB-MTL does) and implements
    :meth:`direction`, which gets the step's :class:`TaskJacobian` (the matrix, or its
    rank-one factors where the engine has them). Losses are an explicit argument; methods
    that read them set ``needs_losses``. ``head_loss`` says what each task head is trained
    on: its loss L_t, the weighted w_t L_t with the step's coefficient (GradNorm, a
    weighting), or log L_t (DB-MTL). ``tasks`` names each row's task index, so per-task
    state survives steps in which some tasks sit out (no labels in the batch)."""

    level = "gradient"
    needs_matrix: ClassVar[bool] = False
    #: True for methods that also read the task losses (GradNorm, DB-MTL)
    needs_losses: ClassVar[bool] = False
    head_loss: ClassVar[Literal["loss", "weighted", "log"]] = "loss"

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        #: the last step's coefficients per task index (implied weights), for logging
        self.last_weights: dict[int, float] = {}

    def needs_matrix_at(self, level: str) -> bool:
        """Whether the method needs the matrix when the Jacobian is taken at ``level``
        ("parameters" or "representation"); standalone :meth:`aggregate` is "parameters"."""
        return self.needs_matrix

    def aggregate(
        self,
        matrix: torch.Tensor,
        tasks: torch.Tensor | list[int] | None = None,
        losses: Losses | None = None,
    ) -> torch.Tensor:
        """(T, P) task gradients -> (P,) direction. ``losses`` (T,) are needed only by
        methods with ``needs_losses``."""
        if matrix.ndim != 2:
            raise ValueError(f"expected a (T, P) matrix, got shape {tuple(matrix.shape)}")
        jac = MatrixJacobian(matrix)
        self.update(jac, self._indices(matrix.shape[0], tasks), losses)
        assert jac.result is not None
        return jac.result

    def update(
        self,
        jac: TaskJacobian,
        tasks: list[int],
        losses: Losses | None = None,
        level: str = "parameters",
    ) -> np.ndarray | None:
        """Write this step's update through ``jac``; returns the coefficients (None for a
        direction built coordinate by coordinate)."""
        values = self._losses(losses)
        if self.needs_matrix_at(level):
            jac.write(self.direction(jac, tasks, values))
            return None
        coef = self._weigh(jac.gram, tasks, values)
        jac.apply(coef)
        return coef

    def reuses(self, tasks: list[int] | None = None) -> bool:
        """Whether the next update takes coefficients it already has, without looking at
        the step's gradients (the ``every`` modifier between recomputations), for the
        tasks ``tasks`` (None: whether such a step is due at all). The step then needs no
        Jacobian: the representation's gradients weighted by them are the update."""
        return False

    def head_factors(self, coef: np.ndarray | None, losses: Losses) -> np.ndarray | None:
        """What each present head's gradient ∇L_t is multiplied by (None: nothing), as
        ``head_loss`` says: w_t with the step's coefficients, or 1 / L_t for log L_t."""
        if self.head_loss == "loss":
            return None
        if self.head_loss == "weighted":
            return coef
        return 1.0 / np.maximum(np.asarray(losses, dtype=np.float64), 1e-12)

    def weigh(
        self,
        gram: torch.Tensor | np.ndarray,
        tasks: torch.Tensor | list[int] | None = None,
        losses: Losses | None = None,
    ) -> np.ndarray:
        """The Gramian K = G Gᵀ (T, T) -> coefficients c (T,) with direction c @ G.

        For the methods that need no more than the Gramian (not ``needs_matrix``)."""
        if self.needs_matrix:
            raise ValueError(f"{self.name} needs the whole matrix: use aggregate()")
        idx = self._indices(gram.shape[0], tasks)
        return self._weigh(lambda: gram, idx, self._losses(losses))

    def _weigh(
        self,
        gram_of: Callable[[], torch.Tensor | np.ndarray],
        tasks: list[int],
        losses: np.ndarray | None,
    ) -> np.ndarray:
        """The coefficients from the Gramian, which ``gram_of`` computes only when asked
        (a step that reuses its coefficients never builds it)."""
        gram = gram_of()
        if isinstance(gram, torch.Tensor):
            gram = gram.detach().double().cpu().numpy()
        coef = self.coefficients(gram, tasks, losses)
        self.last_weights = dict(zip(tasks, (float(c) for c in coef), strict=True))
        return coef

    @staticmethod
    def _indices(rows: int, tasks: torch.Tensor | list[int] | None) -> list[int]:
        idx = list(range(rows)) if tasks is None else [int(t) for t in tasks]
        if len(idx) != rows:
            raise ValueError(f"tasks has {len(idx)} entries for {rows} rows")
        return idx

    def _losses(self, losses: Losses | None) -> np.ndarray | None:
        if not self.needs_losses:
            return None
        if losses is None:
            raise ValueError(f"{self.name} needs the task losses: aggregate(m, losses=...)")
        return loss_values(losses)

    def coefficients(
        self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
    ) -> np.ndarray:
        """Coefficients c (T,) such that the direction is c @ G."""
        raise NotImplementedError

    def direction(
        self, jac: TaskJacobian, tasks: list[int], losses: np.ndarray | None
    ) -> torch.Tensor:
        """The (P,) direction, for methods that need the matrix. The matrix may be a
        buffer the step reuses next step: copy what you keep."""
        raise NotImplementedError

    def weights(self) -> dict[str, float]:
        if not self.task_names:
            return {str(k): v for k, v in self.last_weights.items()}
        return {self.task_names[k]: v for k, v in self.last_weights.items()}

    def state_dict(self) -> dict[str, Any]:
        last = {str(k): v for k, v in self.last_weights.items()}
        return {**super().state_dict(), "last_weights": last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        state = dict(state)
        last = state.pop("last_weights", {})
        self.last_weights = {int(k): float(v) for k, v in last.items()}
        super().load_state_dict(state)
