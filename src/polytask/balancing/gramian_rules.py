"""Each layer type's contribution to the task Gramian, from its input and the T task
gradients at its output, without forming its (T, numel) Jacobian where that is cheaper.

A rule gets the layer, its input ``x`` as the recorded forward saw it, the gradients
``g`` (T, *output.shape) of the T tasks at its output, and which of its parameters are
wanted; it returns the (T, T) contribution Σ_p g_p g_pᵀ over those parameters. A new
layer type is one function here and one line in :data:`RULES` (or, for a layer defined
elsewhere, its own ``gramian_rule``; see :func:`rule_for`).

- ``Linear`` (and the patches of ``Conv2d``): the task gradient of the weight is
  g_tᵀ X, so <g_sᵀ X, g_tᵀ X> = Σ (X Xᵀ ∘ g_s g_tᵀ); the rule takes whichever side costs
  fewer multiplications: the per-task weight gradients (T·M·in·out) or X Xᵀ and
  (X Xᵀ) g (M²·(in + T·out)), for M rows.
- ``Embedding``: rows that share an index add up, so the per-task gradient is the sum
  of g over each distinct index (padding rows get none).
- ``LayerNorm`` / ``BatchNorm``: the affine parameters' gradients are Σ g x̂ and Σ g.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

#: (module, input, task gradients at its output, want weight, want bias) -> (T, T)
Rule = Callable[[nn.Module, torch.Tensor, torch.Tensor, bool, bool], torch.Tensor]


def _gram(rows: torch.Tensor) -> torch.Tensor:
    flat = rows.reshape(rows.shape[0], -1)
    return flat @ flat.T


def product_gram(x: torch.Tensor, g: torch.Tensor, want_w: bool, want_b: bool) -> torch.Tensor:
    """Gramian of the task gradients of ``y = x Wᵀ + b`` over M rows: x (M, in), g (T, M, out)."""
    t, m, out = g.shape
    inp = x.shape[1]
    gram = g.new_zeros(t, t)
    if want_w:
        if t * m * inp * out + t * t * inp * out <= m * m * (inp + t * out) + t * t * m * out:
            gram += _gram(torch.matmul(g.transpose(1, 2), x))  # (T, out, in) weight rows
        else:
            kernel = x @ x.T  # (M, M)
            flat = g.reshape(t, -1)
            gram += flat @ torch.matmul(kernel, g).reshape(t, -1).T
    if want_b:
        gram += _gram(g.sum(1))
    return gram


def linear_rule(
    module: nn.Module, x: torch.Tensor, g: torch.Tensor, want_w: bool, want_b: bool
) -> torch.Tensor:
    t = g.shape[0]
    return product_gram(x.reshape(-1, x.shape[-1]), g.reshape(t, -1, g.shape[-1]), want_w, want_b)


def conv2d_rule(
    module: nn.Module, x: torch.Tensor, g: torch.Tensor, want_w: bool, want_b: bool
) -> torch.Tensor:
    """A convolution is a linear layer on its patches: unfold the input (zero padding,
    one group, checked by :func:`covers`) and treat each output position as a row."""
    assert isinstance(module, nn.Conv2d)
    if x.dim() == 3:
        x, g = x[None], g[:, None]
    patches = F.unfold(
        x,
        module.kernel_size,
        dilation=module.dilation,
        padding=module.padding,  # type: ignore[arg-type]
        stride=module.stride,
    )  # (N, C·k·k, L)
    t, n, out = g.shape[0], g.shape[1], g.shape[2]
    rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])  # (N·L, C·k·k)
    grads = g.reshape(t, n, out, -1).transpose(2, 3).reshape(t, -1, out)  # (T, N·L, out)
    return product_gram(rows, grads, want_w, want_b)


def embedding_rule(
    module: nn.Module, x: torch.Tensor, g: torch.Tensor, want_w: bool, want_b: bool
) -> torch.Tensor:
    assert isinstance(module, nn.Embedding)
    t = g.shape[0]
    idx = x.reshape(-1)
    rows = g.reshape(t, idx.shape[0], -1)
    if module.padding_idx is not None:
        keep = idx != module.padding_idx
        idx, rows = idx[keep], rows[:, keep]
    _, inverse = torch.unique(idx, return_inverse=True)
    sums = rows.new_zeros(t, int(inverse.max()) + 1 if inverse.numel() else 0, rows.shape[2])
    sums.index_add_(1, inverse, rows)
    return _gram(sums)


def layer_norm_rule(
    module: nn.Module, x: torch.Tensor, g: torch.Tensor, want_w: bool, want_b: bool
) -> torch.Tensor:
    assert isinstance(module, nn.LayerNorm)
    t, shape = g.shape[0], tuple(module.normalized_shape)
    gram = g.new_zeros(t, t)
    if want_w:
        xhat = torch.native_layer_norm(x, shape, None, None, module.eps)[0]
        gram += _gram((g * xhat).reshape(t, -1, *shape).sum(1))
    if want_b:
        gram += _gram(g.reshape(t, -1, *shape).sum(1))
    return gram


def batch_norm_rule(
    module: nn.Module, x: torch.Tensor, g: torch.Tensor, want_w: bool, want_b: bool
) -> torch.Tensor:
    """Per channel (dim 1), over the batch and every spatial position; x̂ from the batch
    statistics in training (as the forward normalised) or the running ones in eval."""
    assert isinstance(module, nn.modules.batchnorm._BatchNorm)
    t = g.shape[0]
    dims = [0, *range(2, x.dim())]
    gram = g.new_zeros(t, t)
    if want_w:
        if module.training or module.running_mean is None:
            xhat = torch.native_batch_norm(x, None, None, None, None, True, 0.0, module.eps)[0]
        else:
            assert module.running_var is not None
            shape = [1, -1] + [1] * (x.dim() - 2)
            rstd = torch.rsqrt(module.running_var + module.eps).view(shape)
            xhat = (x - module.running_mean.view(shape)) * rstd
        gram += _gram((g * xhat).sum([d + 1 for d in dims]))
    if want_b:
        gram += _gram(g.sum([d + 1 for d in dims]))
    return gram


#: layer type -> its rule (subclasses match too; the first entry that matches wins)
RULES: dict[type[nn.Module], Rule] = {
    nn.Linear: linear_rule,
    nn.Conv2d: conv2d_rule,
    nn.Embedding: embedding_rule,
    nn.LayerNorm: layer_norm_rule,
    nn.modules.batchnorm._BatchNorm: batch_norm_rule,
}


def rule_for(module: nn.Module) -> Rule | None:
    """The module's rule, or None where its options leave the rule's assumptions (grouped
    or non-zero-padded convolutions, embeddings that renormalise or scale by frequency).
    A module that carries its own rule (a ``gramian_rule`` static method of this
    signature, for parameters named ``weight`` and ``bias``) gets that one."""
    own = getattr(module, "gramian_rule", None)
    if callable(own):
        return own  # type: ignore[no-any-return]
    if isinstance(module, nn.Conv2d) and (
        module.groups != 1 or module.padding_mode != "zeros" or isinstance(module.padding, str)
    ):
        return None
    if isinstance(module, nn.Embedding) and (
        module.max_norm is not None or module.scale_grad_by_freq or module.sparse
    ):
        return None
    for kind, rule in RULES.items():
        if isinstance(module, kind):
            return rule
    return None
