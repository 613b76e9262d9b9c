"""The balancer protocol.

A balancer decides how task losses become one update. Loss-level methods (``level =
"loss"``) turn the per-task losses into one objective with :meth:`LossBalancer.combine`.
Each method declares its options once, as a pydantic model named ``Options`` next to its
code; :func:`polytask.balancing.get` validates them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict


def seeded_generator(seed: int | None) -> torch.Generator:
    """A CPU generator for a stochastic method: reproducible with a seed, fresh without."""
    gen = torch.Generator()
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(seed)
    return gen


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

    #: True for methods that need the losses again after the optimiser step (FAMO)
    needs_loss_after_step: ClassVar[bool] = False

    def end_epoch(self, train_losses: dict[str, float]) -> None:
        """Hook for methods that adapt per epoch (e.g. DWA)."""

    def after_step(self, new_losses: list[torch.Tensor]) -> None:
        """The same batch's losses after the update (only with needs_loss_after_step)."""

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


class GradientBalancer(Balancer):
    """Gradient-level methods map a (T, P) matrix of task gradients to one (P,) direction.

    Most methods need only the T x T Gramian K = G Gᵀ: they implement
    :meth:`coefficients` and the direction is ``c @ G``. Methods that look at single
    coordinates (GradDrop) set ``needs_matrix`` and implement :meth:`direction`.
    ``tasks`` names each row's task index, so per-task state survives steps in which
    some tasks sit out (no labels in the batch)."""

    level = "gradient"
    needs_matrix: ClassVar[bool] = False
    #: True for methods that also read the task losses (GradNorm, DB-MTL)
    needs_losses: ClassVar[bool] = False

    def __init__(self, options: BalancerOptions | None = None):
        super().__init__(options)
        #: the last step's coefficients per task index (implied weights), for logging
        self.last_weights: dict[int, float] = {}

    def aggregate(
        self,
        matrix: torch.Tensor,
        tasks: torch.Tensor | list[int] | None = None,
        losses: torch.Tensor | list[float] | None = None,
    ) -> torch.Tensor:
        """(T, P) task gradients -> (P,) direction. ``losses`` (T,) are needed only by
        methods with ``needs_losses``."""
        if matrix.ndim != 2:
            raise ValueError(f"expected a (T, P) matrix, got shape {tuple(matrix.shape)}")
        idx = self._indices(matrix.shape[0], tasks)
        if self.needs_matrix:
            self._take_losses(losses)
            return self.direction(matrix, idx)
        coef = self.weigh(matrix @ matrix.T, idx, losses)
        return torch.as_tensor(coef, dtype=matrix.dtype, device=matrix.device) @ matrix

    def weigh(
        self,
        gram: torch.Tensor | np.ndarray,
        tasks: torch.Tensor | list[int] | None = None,
        losses: torch.Tensor | list[float] | None = None,
    ) -> np.ndarray:
        """The Gramian K = G Gᵀ (T, T) -> coefficients c (T,) with direction c @ G.

        For the methods that need no more than the Gramian (not ``needs_matrix``); the
        trainer uses it where K is cheaper to get than G (e.g. linear heads)."""
        if self.needs_matrix:
            raise ValueError(f"{self.name} needs the whole matrix: use aggregate()")
        if isinstance(gram, torch.Tensor):
            gram = gram.detach().double().cpu().numpy()
        idx = self._indices(gram.shape[0], tasks)
        self._take_losses(losses)
        coef = self.coefficients(gram, idx)
        self.last_weights = dict(zip(idx, (float(c) for c in coef), strict=True))
        return coef

    @staticmethod
    def _indices(rows: int, tasks: torch.Tensor | list[int] | None) -> list[int]:
        idx = list(range(rows)) if tasks is None else [int(t) for t in tasks]
        if len(idx) != rows:
            raise ValueError(f"tasks has {len(idx)} entries for {rows} rows")
        return idx

    def _take_losses(self, losses: torch.Tensor | list[float] | None) -> None:
        if not self.needs_losses:
            return
        if losses is None:
            raise ValueError(f"{self.name} needs the task losses: aggregate(m, losses=...)")
        self.losses = np.asarray([float(v) for v in losses], dtype=np.float64).reshape(-1)

    def head_factors(self, tasks: list[int]) -> np.ndarray | None:
        """Factors for each task head's own gradient in the last step (None: 1 each).
        Methods whose objective reweights a task's loss (GradNorm's w_t, DB-MTL's log)
        train that task's head with the same factor."""
        return None

    def on_level(self, level: str) -> None:
        """Told by the trainer where the Jacobian is taken ("parameters"/"representation")."""

    def coefficients(self, gram: np.ndarray, tasks: list[int]) -> np.ndarray:
        """Coefficients c (T,) such that the direction is c @ G."""
        raise NotImplementedError

    def direction(self, matrix: torch.Tensor, tasks: list[int]) -> torch.Tensor:
        """(T, P) task gradients -> (P,) direction, for ``needs_matrix`` methods. The
        trainer may hand over a buffer it reuses next step: copy what you keep."""
        raise NotImplementedError

    def outer_direction(
        self,
        d: torch.Tensor,
        w: torch.Tensor,
        tasks: list[int],
        losses: torch.Tensor | list[float] | None = None,
    ) -> torch.Tensor | None:
        """The direction for rank-one task gradients g_t = vec(d_t w_tᵀ), d (T, N) and
        w (T, H), without forming the (T, N·H) matrix; the trainer offers it for linear
        one-output heads at the representation. None: this method has no such form (the
        trainer then builds the matrix). Must equal ``aggregate`` on the formed matrix."""
        return None

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
