"""Per-task gradients of an MLP's parameters, written out by hand.

At parameter level the Jacobian engine pushes T representation gradients back through
the shared layers. Autograd's batched backward (``is_grads_batched``, i.e. vmap over the
backward graph) does that for any layer, but on the layers an MLP is made of it spends a
third of its time outside the matrix products (batched ``threshold_backward``, copies of
transposed operands, fresh multi-megabyte buffers every step). For those layers the
batched backward is short enough to write out: with δ the (T, N, out) gradients at a
layer's output and x its (N, in) input,

- ``Linear``: weight rows δ_tᵀ x (one batched product), bias rows Σ_n δ_t, and δ W for
  the layer below (one (T·N, out) x (out, in) product);
- element-wise modules (activations, ``Dropout``): δ times the module's derivative,
  which one backward of ones through the recorded forward gives (so dropout's mask and
  every activation's exact derivative are those of the forward that ran);
- ``LayerNorm`` and ``BatchNorm1d``: their standard backward, over features or over the
  batch, with δ batched over tasks.

:class:`ChainTape` records each module's input and output during the forward pass (a
forward hook per module that returns at once unless the tape is armed). Parameters
before the chain (embeddings, text and image encoders) get the gradient at the chain's
input and go through ``is_grads_batched`` as before. The rows are written into one
(T, P) buffer that is reused from step to step: on CPU a fresh multi-megabyte tensor
costs page faults that take about as long as the arithmetic on it.
"""

from __future__ import annotations

import torch
from torch import nn

from polytask.balancing.jacobian import DEFAULT_MEMORY_BOUND, trunk_jacobian_blocks

#: fewer tasks than this: autograd's batched backward is as fast (benchmarks/
#: jacobian_paths.py, SUPPORT2-sized MLPs: the written-out path takes 0.98-1.09x its time
#: at T = 2, 0.86-0.95x at T = 5, 0.71-0.97x at T = 20; benchmarks/RESULTS.md)
MIN_TASKS = 4

#: modules whose output element i depends only on input element i (diagonal Jacobian)
ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.ELU,
    nn.Softplus,
    nn.Mish,
    nn.Hardswish,
    nn.Identity,
    nn.Dropout,
)


def supported(module: nn.Module) -> bool:
    """Whether :class:`ChainJacobian` knows this module's batched backward."""
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, ELEMENTWISE):
        return not getattr(module, "inplace", False)  # in place: its input is gone
    if isinstance(module, nn.LayerNorm):
        return len(module.normalized_shape) == 1
    return isinstance(module, nn.BatchNorm1d)


def _running_stats(module: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor] | None:
    """BatchNorm's running mean and variance, or None when it keeps none."""
    mean, var = module.running_mean, module.running_var
    if isinstance(mean, torch.Tensor) and isinstance(var, torch.Tensor):
        return mean, var
    return None


class ChainTape:
    """Records the (input, output) of every module of ``chain`` in one armed forward.

    The hooks stay registered for the life of the tape and return at once when it is not
    armed, so inference and loss-level training pay a flag check per module."""

    def __init__(self, chain: nn.Sequential):
        self.modules = list(chain)
        self.records: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.armed = False
        self._handles = [m.register_forward_hook(self._hook) for m in self.modules]

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if self.armed:
            self.records.append((args[0], output))

    def arm(self) -> None:
        self.records = []
        self.armed = True

    def disarm(self) -> None:
        self.armed = False

    def valid_for(self, rep: torch.Tensor) -> bool:
        """True when the last forward ran every module once, in order, on 2-D tensors
        (rows x features) and the chain's output is the representation itself."""
        records = self.records
        if len(records) != len(self.modules) or records[-1][1] is not rep:
            return False
        if any(x.dim() != 2 or y.dim() != 2 for x, y in records):
            return False
        return all(records[i][0] is records[i - 1][1] for i in range(1, len(records)))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


class ChainJacobian:
    """Per-task gradients of ``params`` for an MLP chain whose output is the shared
    representation: one (T, numel) block per parameter, in the order of ``params``.

    The task gradients travel as (N, T, width) tensors (rows, tasks, features), so that
    every product is one large matrix product: δ W over N·T rows, and each weight's
    rows δᵀ x as one (T·out, N) x (N, in) product whose result is already the (T, out,
    in) block. All buffers are kept from step to step."""

    def __init__(self, chain: nn.Sequential, params: list[nn.Parameter]):
        self.tape = ChainTape(chain)
        self.params = params
        self._wanted = {id(p) for p in params}
        self._block_keys = {id(p): f"block{i}" for i, p in enumerate(params)}
        in_chain = {id(p) for m in self.tape.modules for p in m.parameters(recurse=False)}
        self.before = [p for p in params if id(p) not in in_chain]
        # below the lowest module with a parameter of ours, δ is only needed for `before`
        self.lowest = next(
            (
                i
                for i, m in enumerate(self.tape.modules)
                if any(id(p) in self._wanted for p in m.parameters(recurse=False))
            ),
            len(self.tape.modules),
        )
        self._buffers: dict[str, torch.Tensor] = {}
        self._views: dict[str, torch.Tensor] = {}

    def buffer(
        self,
        key: str,
        shape: tuple[int, ...],
        like: torch.Tensor,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """A tensor of ``shape`` (``like``'s device and dtype, or ``dtype``) kept under
        ``key`` and reused by later calls; its contents are whatever was left in it."""
        dtype = like.dtype if dtype is None else dtype
        view = self._views.get(key)  # the usual case: the same shape as last step
        if (
            view is not None
            and view.shape == shape
            and view.dtype == dtype
            and view.device == like.device
        ):
            return view
        numel = 1
        for s in shape:
            numel *= s
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < numel or buf.dtype != dtype or buf.device != like.device:
            buf = torch.empty(numel, dtype=dtype, device=like.device)
            self._buffers[key] = buf
        view = self._views[key] = buf[:numel].view(shape)
        return view

    def blocks(
        self, rep_grads: torch.Tensor, memory_bound: int = DEFAULT_MEMORY_BOUND
    ) -> list[torch.Tensor]:
        """(T, numel) blocks for the representation gradients given as (N, T, H), which
        it may overwrite. The blocks live in buffers that the next call reuses. When the
        δ buffers of all T tasks would pass ``memory_bound`` bytes, tasks go in chunks."""
        records = self.tape.records
        x_in = records[0][0]
        need_input = bool(self.before) and x_in.requires_grad
        n, t = rep_grads.shape[0], rep_grads.shape[1]
        width = max(max(x.shape[1], y.shape[1]) for x, y in records)
        per_task = n * width * rep_grads.element_size() * 3  # δ buffers and the chunk
        chunk = max(1, min(t, memory_bound // max(per_task, 1)))
        for lo in range(0, t, chunk):
            part = rep_grads if chunk == t else rep_grads[:, lo : lo + chunk].contiguous()
            delta = self._backward(part.contiguous(), t, lo, need_input)
            if delta is not None:
                earlier = trunk_jacobian_blocks(
                    x_in, self.before, delta.transpose(0, 1), memory_bound, retain_graph=True
                )
                for p, b in zip(self.before, earlier, strict=True):
                    self._block(p, t, b)[lo : lo + b.shape[0]].copy_(b)
        if not need_input:  # parameters before the chain that no task reaches
            for p in self.before:
                self._block(p, t, rep_grads).zero_()
        return [self._block(p, t, rep_grads) for p in self.params]

    def matrix(self, blocks: list[torch.Tensor]) -> torch.Tensor:
        """The blocks side by side, (T, P), in a reused buffer."""
        t = blocks[0].shape[0]
        width = sum(b.shape[1] for b in blocks)
        return torch.cat(blocks, dim=1, out=self.buffer("matrix", (t, width), blocks[0]))

    def _block(self, p: torch.Tensor, t: int, like: torch.Tensor) -> torch.Tensor:
        return self.buffer(self._block_keys[id(p)], (t, p.numel()), like)

    def _backward(
        self, delta: torch.Tensor, t_all: int, lo: int, need_input: bool
    ) -> torch.Tensor | None:
        """δ (N, c, out) for tasks lo .. lo + c of t_all, from the chain's output down;
        writes those tasks' rows of every block on the way."""
        n, t = delta.shape[0], delta.shape[1]
        rows = slice(lo, lo + t)
        modules, records = self.tape.modules, self.tape.records
        stop = 0 if need_input else self.lowest
        flip = 0
        i = len(modules) - 1
        while i >= stop:
            module = modules[i]
            x, y = records[i]
            propagate = i > stop or need_input
            if isinstance(module, nn.Linear):
                w, b = module.weight, module.bias
                if id(w) in self._wanted:  # (T, out·in) rows = (T·out, N) x (N, in)
                    block = self._block(w, t_all, delta)[rows]
                    torch.mm(delta.view(n, -1).T, x.detach(), out=block.view(-1, w.shape[1]))
                if b is not None and id(b) in self._wanted:
                    torch.sum(delta, 0, out=self._block(b, t_all, delta)[rows])
                if propagate:
                    nxt = self.buffer(f"delta{flip}", (n, t, w.shape[1]), delta)
                    torch.mm(delta.view(n * t, -1), w.detach(), out=nxt.view(n * t, -1))
                    delta, flip = nxt, 1 - flip
            elif isinstance(module, nn.LayerNorm | nn.BatchNorm1d):
                delta = self._norm_backward(module, x.detach(), delta, t_all, rows, propagate)
            else:  # a run of element-wise modules j..i: one derivative for all of them
                j = i
                while j - 1 >= stop and isinstance(modules[j - 1], ELEMENTWISE):
                    j -= 1
                if propagate:
                    deriv = self._derivative(modules[j : i + 1], records[j][0], y)
                    delta = delta.mul_(deriv[:, None, :])
                i = j
            i -= 1
        return delta if need_input else None

    def _derivative(self, run: list[nn.Module], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """dy/dx, (N, H), of a run of element-wise modules from input x to output y, as
        the recorded forward had it: for a lone ReLU the mask y > 0 (what its backward
        uses), otherwise one backward of ones through the run (element-wise functions
        compose to one whose derivative is the product of theirs)."""
        if len(run) == 1 and isinstance(run[0], nn.ReLU):
            return torch.gt(y.detach(), 0, out=self.buffer("mask", tuple(y.shape), y))
        ones = self.buffer("ones", tuple(y.shape), y)
        ones.fill_(1.0)
        return torch.autograd.grad(y, x, ones, retain_graph=True)[0]

    def _norm_backward(
        self,
        module: nn.LayerNorm | nn.BatchNorm1d,
        x: torch.Tensor,
        delta: torch.Tensor,
        t_all: int,
        rows: slice,
        propagate: bool,
    ) -> torch.Tensor:
        """LayerNorm normalises each row over its features (the last dim of δ), BatchNorm
        each feature over the batch (dim 0 of δ); with g = γ δ and x̂ the normalised
        input, dx = rstd (g - mean(g) - x̂ mean(g x̂)) over that dim. BatchNorm with running
        statistics (eval mode) is a fixed affine map: dx = rstd g. Works in place on δ,
        with one reused (N, T, H) scratch buffer."""
        layer = isinstance(module, nn.LayerNorm)
        running = None if isinstance(module, nn.LayerNorm) else _running_stats(module)
        batch_stats = layer or module.training or running is None
        if isinstance(module, nn.LayerNorm):  # x̂ and 1/σ per row in one call (var_mean is slower)
            xhat, _, rstd = torch.native_layer_norm(
                x, list(module.normalized_shape), None, None, module.eps
            )
        elif batch_stats or running is None:  # x̂, 1/σ per feature over the batch
            xhat, _, rstd = torch.native_batch_norm(
                x, None, None, None, None, True, 0.0, module.eps
            )
        else:
            mean, var = running
            rstd = torch.rsqrt(var + module.eps)
            xhat = (x - mean) * rstd
        xhat = xhat[:, None, :]  # (N, 1, H)
        scratch = self.buffer("scratch", tuple(delta.shape), delta)
        weight, bias = module.weight, module.bias
        if weight is not None and id(weight) in self._wanted:
            torch.sum(
                torch.mul(delta, xhat, out=scratch), 0, out=self._block(weight, t_all, delta)[rows]
            )
        if bias is not None and id(bias) in self._wanted:
            torch.sum(delta, 0, out=self._block(bias, t_all, delta)[rows])
        if not propagate:
            return delta
        g = delta.mul_(weight.detach()) if weight is not None else delta  # γ δ, in place
        if not batch_stats:
            return g.mul_(rstd)
        dim = -1 if layer else 0
        spread = torch.mul(g, xhat, out=scratch).mean(dim, keepdim=True)  # mean(g x̂)
        g.sub_(g.mean(dim, keepdim=True))
        g.addcmul_(xhat, spread, value=-1.0)
        return g.mul_(rstd[:, None, :] if layer else rstd)
