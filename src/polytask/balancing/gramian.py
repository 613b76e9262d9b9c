"""The Gramian engine: the T x T task Gramian layer by layer, never the (T, P) matrix.

Methods that need only the Gramian K = J Jᵀ (every weighting) do not need the per-task
gradients themselves. For a layer y = f(x; θ) the task gradients of θ are functions of
its input x and of the task gradients g_t at its output, so its part of K can often be
computed without forming them (:mod:`polytask.balancing.gramian_rules`). The engine:

1. during the forward, a hook on every module that owns shared parameters keeps its
   input and wraps its output in an identity autograd function (the *tap*);
2. after the heads' pass, one backward of the T representation gradients, batched with
   ``torch.func.vmap``, runs through the trunk; at each tap the batching rule of an
   identity function receives the (T, *y) task gradients at once, adds the layer's
   contribution to K, and lets them pass on unchanged, so only the gradients at the
   current frontier of the backward are alive, never all of them;
3. parameters that no rule covers (a layer type without one, a module called twice in
   one forward, parameters used outside their module's own forward) are inputs of that
   same batched backward: their (T, numel) gradients come out of it and add B Bᵀ, and
   the engine says which once (:class:`GramianFallbackWarning`);
4. the method's coefficients c go back with one ordinary backward of Σ c_t g_t from the
   representation.

Memory: K, the activations the forward keeps anyway, the batched frontier and one
layer's rows at a time (for the layers whose cheaper side is their weight gradients).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from polytask.balancing.gramian_rules import Rule, rule_for
from polytask.balancing.jacobian import (
    TaskJacobian,
    as_coefficients,
    trunk_jacobian_blocks,
    write_grad,
)


class GramianFallbackWarning(UserWarning):
    """Some shared parameters go through batched autograd (their (T, numel) rows)."""


_WARNED: set[str] = set()
_LOCAL = threading.local()


def _collecting() -> bool:
    return getattr(_LOCAL, "collecting", False)


class _Record:
    """One call of a covered module in the recorded forward."""

    __slots__ = ("calls", "engine", "module", "rule", "want_b", "want_w", "x")

    def __init__(self, engine: GramianEngine, module: nn.Module, rule: Rule, x: torch.Tensor):
        self.engine, self.module, self.rule, self.x = engine, module, rule, x
        self.want_w = self.want_b = False
        self.calls = 1

    def add(self, g: torch.Tensor) -> None:
        if self.calls == 1 and (self.want_w or self.want_b):
            part = self.rule(self.module, self.x, g, self.want_w, self.want_b)
            self.engine.add(part)


class _Collect(torch.autograd.Function):
    """Identity on the gradient; under vmap its batching rule sees all T at once."""

    @staticmethod
    def forward(g: torch.Tensor, record: _Record) -> torch.Tensor:  # type: ignore[override]
        return g

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:  # pragma: no cover - never twice
        return grad, None

    @staticmethod
    def vmap(info: Any, in_dims: Any, g: torch.Tensor, record: _Record) -> Any:
        dim = in_dims[0]
        full = g.movedim(dim, 0) if dim is not None else g.expand(info.batch_size, *g.shape)
        record.add(full)
        return g, dim


class _Tap(torch.autograd.Function):
    """Identity on a module's output whose backward hands the gradient to the record
    when the engine collects (and does nothing otherwise). ``anchor`` is a leaf that
    every tap feeds, so a backward asked for the anchor runs through every tap."""

    @staticmethod
    def forward(y: torch.Tensor, anchor: torch.Tensor, record: _Record) -> torch.Tensor:  # type: ignore[override]
        return y

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        ctx.record = inputs[2]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        if _collecting():
            return _Collect.apply(grad, ctx.record), None, None
        return grad, None, None


class GramianEngine:
    """Hooks on the modules of ``roots`` that own parameters of ``params``; between
    :meth:`arm` and :meth:`disarm` a forward is recorded, and :meth:`gramian` then takes
    the task Gramian of ``params`` from the task gradients at the representation."""

    def __init__(self, roots: Iterable[nn.Module], params: list[nn.Parameter]):
        self.params = params
        wanted = {id(p) for p in params}
        self.owned: dict[int, nn.Module] = {}
        modules: list[nn.Module] = []
        seen: set[int] = set()
        for root in roots:
            for m in root.modules():
                if id(m) in seen:
                    continue
                seen.add(id(m))
                modules.append(m)
                for p in m.parameters(recurse=False):
                    if id(p) in wanted:
                        self.owned[id(p)] = m
        #: a module that works in place may write over a tapped output: copy them then
        self._clone = any(getattr(m, "inplace", False) for m in modules)
        self.rules = {id(m): r for m in modules if (r := rule_for(m)) is not None}
        self._handles = [
            m.register_forward_hook(self._hook, with_kwargs=True)
            for m in modules
            if id(m) in self.rules and any(id(p) in wanted for p in m.parameters(recurse=False))
        ]
        self.armed = False
        self.records: dict[int, _Record] = {}
        self._anchor = torch.zeros((), requires_grad=True)
        self._gram: torch.Tensor | None = None

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if not self.armed or not torch.is_grad_enabled() or not isinstance(output, torch.Tensor):
            return None
        record = self.records.get(id(module))
        if record is not None:  # called twice: its rows are a sum, autograd takes them
            record.calls += 1
            return None
        x = args[0] if args else next(iter(kwargs.values()))
        record = _Record(self, module, self.rules[id(module)], x.detach())
        self.records[id(module)] = record
        out = _Tap.apply(output, self._anchor, record)
        return out.clone() if self._clone else out

    def arm(self) -> None:
        self.records = {}
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record the forward run inside the block (``with engine.recording(): ...``)."""
        self.arm()
        try:
            yield
        finally:
            self.disarm()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def add(self, part: torch.Tensor) -> None:
        self._gram = part if self._gram is None else self._gram + part

    def _split(self) -> list[nn.Parameter]:
        """Mark what each record covers; the parameters left for batched autograd."""
        covered: set[int] = set()
        for record in self.records.values():
            if record.calls != 1:
                continue
            m = record.module
            w, b = getattr(m, "weight", None), getattr(m, "bias", None)
            own = {id(p) for p in self.params if self.owned.get(id(p)) is m}
            record.want_w = w is not None and id(w) in own
            record.want_b = b is not None and id(b) in own
            covered |= {id(p) for p in (w, b) if p is not None and id(p) in own}
        left = [p for p in self.params if id(p) not in covered]
        self._warn(left)
        return left

    def _warn(self, left: list[nn.Parameter]) -> None:
        names = sorted({type(self.owned.get(id(p), nn.Module())).__name__ for p in left})
        new = [n for n in names if n not in _WARNED]
        if new:
            _WARNED.update(new)
            warnings.warn(
                "the Gramian engine has no layer rule for the parameters of "
                f"{', '.join(new)} (or they are used outside their module's forward, or the "
                "module runs twice); they go through batched autograd, (T, numel) each",
                GramianFallbackWarning,
                stacklevel=3,
            )

    def gramian(
        self, rep: torch.Tensor, rep_grads: torch.Tensor
    ) -> tuple[torch.Tensor, list[nn.Parameter], list[torch.Tensor]]:
        """K (T, T) for the task gradients ``rep_grads`` (T, *rep.shape) at ``rep``; also
        the fallback parameters and their (T, numel) rows (already counted in K). The
        graph is kept for the update (:meth:`GramianJacobian.apply`)."""
        left = self._split()
        inputs = [self._anchor, *left]
        self._gram = None

        def vjp(v: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return torch.autograd.grad(
                rep, inputs, v, retain_graph=True, allow_unused=True, materialize_grads=True
            )

        _LOCAL.collecting = True
        try:
            grads = torch.func.vmap(vjp)(rep_grads)[1:]
        finally:
            _LOCAL.collecting = False
            self.records = {}
        t = rep_grads.shape[0]
        blocks = [g.reshape(t, -1) for g in grads]
        gram = self._gram if self._gram is not None else rep_grads.new_zeros(t, t)
        for b in blocks:
            gram = gram + b @ b.T
        self._gram = None
        return gram, left, blocks


class GramianJacobian(TaskJacobian):
    """The task Jacobian as the Gramian engine has it: the Gramian, and the way back to
    ``.grad`` through one backward from the representation. A method that asks for the
    matrix gets it from batched autograd (the graph is still there)."""

    def __init__(
        self,
        rep: torch.Tensor,
        rep_grads: torch.Tensor,
        gram: torch.Tensor,
        params: list[nn.Parameter],
    ):
        self.rep, self.rep_grads, self._gram, self.params = rep, rep_grads, gram, params

    def matrix(self) -> torch.Tensor:
        blocks = trunk_jacobian_blocks(self.rep, self.params, self.rep_grads, retain_graph=True)
        return torch.cat(blocks, dim=1)

    def apply(self, coef: np.ndarray | torch.Tensor) -> None:
        c = as_coefficients(coef, self.rep_grads)
        combined = torch.tensordot(c, self.rep_grads, dims=1)
        self.rep.backward(combined)

    def write(self, direction: torch.Tensor) -> None:
        write_grad(self.params, direction)
