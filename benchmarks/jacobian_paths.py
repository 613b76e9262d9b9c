"""Where the written-out MLP Jacobian pays, and what each method's small solver costs.

1. A parameter-level ``GradientStep`` (UPGrad) with the hand-written batched backward
   (``balancing/chain_jacobian.py``) against autograd's batched backward
   (``is_grads_batched``) on the same model and batch, interleaved: a SUPPORT2-sized MLP
   (40 numeric features, hidden 256 -> 128, dropout 0.3, batch 256) with no norm,
   LayerNorm or BatchNorm, with and without categorical embeddings before it, for T
   tasks. The step uses the written-out path only from ``MIN_TASKS`` tasks up; here both
   paths are forced so the crossover shows.
2. Milliseconds per call of each gradient method's weights on the T x T Gramian of the
   step_cost model at T = 20, and how many of 500 random ill-conditioned Gramians leave
   CAGrad's solver short of its stated tolerance (it warns, it never falls back).

    python benchmarks/jacobian_paths.py [--tasks 2,3,5,10,20] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import pandas as pd
import torch

import polytask.balancing as balancing
from polytask.architectures import ArchitectureSpec
from polytask.architectures.hard import HardSharing
from polytask.balancing.solvers import SolverWarning, cagrad_weights
from polytask.encoders import TabularEncoder
from polytask.features.batches import Batch
from polytask.tasks import make_task
from polytask.training.steps import GradientStep

N, NUMERIC, CARDS = 256, 40, [9, 6, 5, 4, 3]
#: the methods that weigh the T x T Gramian (GradDrop and DB-MTL need the matrix; the
#: mean and the sum have nothing to solve)
GRAMIAN_METHODS = [
    name
    for name, cls in balancing.METHODS.items()
    if issubclass(cls, balancing.GradientBalancer)
    and not cls.needs_matrix
    and name not in ("mean", "sum")
]


def support2_like(t: int, norm: str, embeddings: bool) -> tuple[HardSharing, list, Batch]:
    torch.manual_seed(0)
    tasks = []
    for i in range(t):
        if i % 3 == 2:
            task = make_task(f"m{i}", "multiclass", [f"m{i}"], {})
            task.fit(pd.Series(list("abcde"), name=f"m{i}"))
        else:
            task = make_task(f"r{i}", "regression", [f"r{i}"], {"transform": "none"})
            task.fitted = True
        tasks.append(task)
    cards = CARDS if embeddings else []
    enc = TabularEncoder(NUMERIC, cards, [4] * len(cards), [256, 128], "relu", 0.3, norm)
    net = HardSharing(ArchitectureSpec(enc, tasks, [], "relu", 0.0))
    cat = torch.stack([torch.randint(0, c, (N,)) for c in cards], 1) if cards else None
    targets = [
        torch.randint(0, 5, (N,)) if task.kind == "multiclass" else torch.randn(N) for task in tasks
    ]
    categorical = cat if cat is not None else torch.zeros(N, 0, dtype=torch.long)
    return net, tasks, Batch(torch.randn(N, NUMERIC), categorical, targets, [None] * t)


def crossover(t: int, norm: str, embeddings: bool, repeats: int) -> tuple[float, float]:
    """Median ms per step (written out, autograd) for UPGrad at parameter level."""
    net, tasks, batch = support2_like(t, norm, embeddings)
    by_hand = GradientStep(net, tasks, balancing.get("upgrad"), "parameters")
    if by_hand.chain is None:  # below MIN_TASKS: set it up anyway, to compare
        from polytask.balancing.chain_jacobian import ChainJacobian

        by_hand.chain = ChainJacobian(net.shared_chain(), by_hand.trunk)
    plain = GradientStep(net, tasks, balancing.get("upgrad"), "parameters")
    plain.close()  # no written-out path: autograd's batched backward
    times: dict[str, list[float]] = {"hand": [], "autograd": []}
    for _ in range(repeats):
        for key, step in (("hand", by_hand), ("autograd", plain)):
            net.zero_grad(set_to_none=True)
            step(batch)
            t0 = time.perf_counter()
            for _ in range(30):
                net.zero_grad(set_to_none=True)
                step(batch)
            times[key].append((time.perf_counter() - t0) / 30 * 1e3)
    return statistics.median(times["hand"]), statistics.median(times["autograd"])


def step_cost_gramian(t: int = 20) -> np.ndarray:
    """The parameter-level Gramian of the step_cost model after a few steps."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from step_cost import build

    net, tasks, batch = build(t)
    seen: list[np.ndarray] = []

    class Keep(balancing.GradientBalancer):
        name = "keep"

        def coefficients(
            self, gram: np.ndarray, tasks: list[int], losses: np.ndarray | None = None
        ) -> np.ndarray:
            seen.append(gram.copy())
            return np.full(gram.shape[0], 1.0 / gram.shape[0])

    step = GradientStep(net, tasks, Keep(), "parameters")
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    for _ in range(5):
        opt.zero_grad()
        step(batch)
        opt.step()
    return seen[-1]


def solver_costs(gram: np.ndarray) -> dict[str, float]:
    t = gram.shape[0]
    out = {}
    for name in GRAMIAN_METHODS:
        opts = {"seed": 0} if name in ("pcgrad", "gradvac") else {}
        method = balancing.get(name, **opts)
        method.setup([f"t{i}" for i in range(t)])
        losses = [1.0] * t
        method.weigh(gram, list(range(t)), losses)
        t0 = time.perf_counter()
        for _ in range(50):
            method.weigh(gram, list(range(t)), losses)
        out[name] = (time.perf_counter() - t0) / 50 * 1e3
    return out


def cagrad_short_of_tolerance(cases: int = 500) -> int:
    """Random Gramians of 1-29 tasks with row scales from 0.01 to 10, a fifth of them
    with two exactly opposed gradients."""
    rng = np.random.default_rng(0)
    short = 0
    for case in range(cases):
        t, p = int(rng.integers(1, 30)), int(rng.integers(1, 60))
        a = rng.normal(size=(t, p)) * rng.uniform(0.01, 10, size=(t, 1))
        if case % 5 == 0:
            a[rng.integers(t)] = -a[0]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SolverWarning)
            cagrad_weights(a @ a.T, float(rng.uniform(0, 2)))
        short += any(issubclass(w.category, SolverWarning) for w in caught)
    return short


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tasks", default="2,3,5,10,20")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {N}")
    print("\n1. UPGrad at parameter level, ms per step: written out / autograd (ratio)")
    print(
        f"{'tasks':>5} {'norm':>6} {'embeddings':>10} {'by hand':>9} {'autograd':>9} {'ratio':>6}"
    )
    for t in (int(v) for v in args.tasks.split(",")):
        for norm in ("none", "layer", "batch"):
            for embeddings in (False, True):
                hand, auto = crossover(t, norm, embeddings, args.repeats)
                row = f"{t:>5} {norm:>6} {embeddings!s:>10} {hand:>9.3f} {auto:>9.3f}"
                print(f"{row} {hand / auto:>6.2f}")
    print("\n2. Weights from the T = 20 Gramian of step_cost's model, ms per call")
    warnings.simplefilter("ignore", SolverWarning)
    for name, ms in solver_costs(step_cost_gramian()).items():
        print(f"{name:>12} {ms:8.3f}")
    print(f"\nCAGrad short of its 1e-6 duality gap: {cagrad_short_of_tolerance()} of 500 cases")


if __name__ == "__main__":
    main()
