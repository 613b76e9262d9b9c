"""Cost of one training step for every balancing method, relative to equal weighting.

Model (as in the issue): shared trunk 64 -> 256 -> 256 (ReLU), T heads 256 -> 1, MSE,
batch 256, fused AdamW everywhere. For T in {2, 5, 10, 20}: milliseconds per full step
(forward, gradients, balancing, optimiser step) for each method at parameter and at
representation level, next to a plain PyTorch step (summed loss), a naive loop of T
separate ``autograd.grad`` calls (each from its own task's loss) and, when torchjd is
installed, torchjd's UPGrad through ``mtl_backward``, all interleaved in one run. Run
alone:

    python benchmarks/step_cost.py [--tasks 2,5,10,20] [--repeats 5] [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn

import polytask.balancing as balancing
from polytask.architectures import ArchitectureSpec
from polytask.architectures.hard import HardSharing
from polytask.balancing.gramian import GramianEngine
from polytask.balancing.solvers import SolverWarning
from polytask.encoders import TabularEncoder
from polytask.features.batches import Batch, TensorTable
from polytask.features.preprocess import FeatureTensors
from polytask.tasks import make_task
from polytask.training.probe import TrainingProbe
from polytask.training.steps import GradientStep, make_step

BATCH, IN, WIDTH = 256, 64, 256
#: every registered method, from the registry (a new method gets its rows by itself)
LOSS_LEVEL = [n for n, c in balancing.METHODS.items() if c.level == "loss"]
GRAD_LEVEL = [n for n, c in balancing.METHODS.items() if c.level == "gradient"]


def build(t: int, seed: int = 0) -> tuple[HardSharing, list, Batch]:
    torch.manual_seed(seed)
    tasks = []
    for i in range(t):
        task = make_task(
            f"t{i}", "regression", [f"t{i}"], {"standardize": False, "transform": "none"}
        )
        task.fitted = True
        tasks.append(task)
    enc = TabularEncoder(IN, [], [], [WIDTH, WIDTH], "relu", 0.0, "none")
    net = HardSharing(ArchitectureSpec(enc, tasks, [], "relu", 0.0))
    x = torch.randn(BATCH, IN)
    batch = Batch(
        x,
        torch.zeros(BATCH, 0, dtype=torch.long),
        [torch.randn(BATCH) for _ in range(t)],
        [None] * t,
    )
    return net, tasks, batch


def make_runner(name: str, t: int, level: str, engine: str = "auto") -> Callable[[], None]:
    """``engine="gramian"``: the Gramian engine even where the written-out chain applies."""
    net, tasks, batch = build(t)
    opts: dict = {"weights": {f"t{i}": 1.0 for i in range(t)}} if name == "weights" else {}
    if "seed" in balancing.METHODS[name].Options.model_fields:
        opts["seed"] = 0
    bal = balancing.get(name, **opts)
    bal.setup([x.name for x in tasks])
    extra = bal.parameters()
    opt = torch.optim.AdamW([*net.parameters(), *extra], lr=1e-4, fused=True)
    step = make_step(net, tasks, bal, level)
    # the trainer's probe over a training split of the batch's rows (Auto-Lambda draws
    # its bilevel batches from it)
    table = TensorTable(
        FeatureTensors(batch.numeric, batch.categorical, {}),
        batch.targets,
        [torch.ones(len(batch), dtype=torch.bool) for _ in batch.targets],
    )
    probe = TrainingProbe(net, tasks, table, opt)
    if engine == "gramian" and isinstance(step, GradientStep) and step.chain is not None:
        step.close()
        step.gramian = GramianEngine([net], step.trunk)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        step(batch)
        opt.step()
        bal.after_update(probe.at(step.losses_after(batch)))  # as the trainer does it

    return run


def plain_model(
    t: int,
) -> tuple[nn.Sequential, nn.ModuleList, list, torch.optim.Optimizer, torch.Tensor, list]:
    """The same model in plain PyTorch: trunk, heads, trunk parameters, fused AdamW over
    all, the inputs and the T targets."""
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(IN, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU())
    heads = nn.ModuleList(nn.Linear(WIDTH, 1) for _ in range(t))
    tp = list(trunk.parameters())
    opt = torch.optim.AdamW([*tp, *heads.parameters()], lr=1e-4, fused=True)
    return trunk, heads, tp, opt, torch.randn(BATCH, IN), [torch.randn(BATCH) for _ in range(t)]


def plain_runner(t: int) -> Callable[[], None]:
    trunk, heads, _, opt, x, ys = plain_model(t)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        h = trunk(x)
        loss = sum(((hd(h).squeeze(-1) - y) ** 2).mean() for hd, y in zip(heads, ys, strict=True))
        loss.backward()
        opt.step()

    return run


def naive_runner(t: int) -> Callable[[], None]:
    """T separate autograd.grad calls, each from its own task's loss, then the mean."""
    trunk, heads, tp, opt, x, ys = plain_model(t)

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        h = trunk(x)
        rows = []
        for i, (hd, y) in enumerate(zip(heads, ys, strict=True)):
            loss = ((hd(h).squeeze(-1) - y) ** 2).mean()
            grads = torch.autograd.grad(loss, [*tp, *hd.parameters()], retain_graph=i < t - 1)
            rows.append(torch.cat([g.reshape(-1) for g in grads[: len(tp)]]))
            for p, g in zip(hd.parameters(), grads[len(tp) :], strict=True):
                p.grad = g
        direction = torch.stack(rows).mean(0)
        offset = 0
        for p in tp:
            p.grad = direction[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        opt.step()

    return run


def torchjd_runner(t: int) -> Callable[[], None] | None:
    """torchjd's UPGrad at parameter level (``mtl_backward`` + ``jac_to_grad``), when
    torchjd is installed (it is not a dependency of polytask)."""
    try:
        from torchjd.aggregation import UPGrad
        from torchjd.autojac import jac_to_grad, mtl_backward
    except ImportError:
        return None
    trunk, heads, tp, opt, x, ys = plain_model(t)
    aggregator = UPGrad()

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        h = trunk(x)
        losses = [((hd(h).squeeze(-1) - y) ** 2).mean() for hd, y in zip(heads, ys, strict=True)]
        mtl_backward(losses, features=h)
        jac_to_grad(tp, aggregator=aggregator)
        opt.step()

    return run


def autogram_runner(t: int) -> Callable[[], None] | None:
    """torchjd's autogram engine (the Gramian of the trunk, UPGrad's weights from it, one
    backward of the weighted losses), when torchjd is installed."""
    try:
        from torchjd.aggregation import UPGradWeighting
        from torchjd.autogram import Engine
    except ImportError:
        return None
    trunk, heads, _, opt, x, ys = plain_model(t)
    engine = Engine(trunk, batch_dim=None)
    weighting = UPGradWeighting()

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        h = trunk(x)
        losses = torch.stack(
            [((hd(h).squeeze(-1) - y) ** 2).mean() for hd, y in zip(heads, ys, strict=True)]
        )
        losses.backward(weighting(engine.compute_gramian(losses)))
        opt.step()

    return run


def time_ms(run: Callable[[], None], steps: int) -> float:
    run()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        run()
    return (time.perf_counter() - t0) / steps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--tasks", default="2,5,10,20")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--methods", default="", help="comma-separated subset")
    ap.add_argument(
        "--gramian",
        action="store_true",
        help="also every Gramian method @par through the Gramian engine instead of the chain",
    )
    ap.add_argument(
        "--backbone",
        default="",
        help="minilm: the transformer backbone rows instead (benchmarks/step_cost_backbone.py)",
    )
    args, _ = ap.parse_known_args()
    if args.backbone:
        from step_cost_backbone import main as backbone_main

        backbone_main(sys.argv[1:])
        return
    warnings.simplefilter("ignore", SolverWarning)
    torch.set_num_threads(torch.get_num_threads())
    wanted = set(filter(None, args.methods.split(",")))
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {BATCH}, "
        f"trunk {IN}->{WIDTH}->{WIDTH}, median of {args.repeats} x {args.steps} steps"
    )
    for t in (int(v) for v in args.tasks.split(",")):
        runners: dict[str, Callable[[], None]] = {
            "plain PyTorch (summed loss)": plain_runner(t),
            "naive T x autograd.grad": naive_runner(t),
        }
        jd = torchjd_runner(t)
        if jd is not None:
            runners["torchjd UPGrad (mtl_backward)"] = jd
        ag = autogram_runner(t)
        if ag is not None:
            runners["torchjd UPGrad (autogram)"] = ag
        for name in LOSS_LEVEL:
            if not wanted or name in wanted or name == "ew":
                runners[name] = make_runner(name, t, "parameters")
        for name in GRAD_LEVEL:
            if not wanted or name in wanted:
                for level in ("representation", "parameters"):
                    runners[f"{name} @{level[:3]}"] = make_runner(name, t, level)
                cls = balancing.METHODS[name]
                if args.gramian and not cls().needs_matrix_at("parameters"):  # type: ignore[attr-defined]
                    runners[f"{name} @par gramian"] = make_runner(name, t, "parameters", "gramian")
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(args.repeats):  # interleaved repeats
            for k, run in runners.items():
                times[k].append(time_ms(run, args.steps))
        med = {k: statistics.median(v) for k, v in times.items()}
        ew = med["ew"]
        print(f"\nT = {t}: ew step {ew:.3f} ms")
        print(f"{'method':<32}{'ms/step':>10}{'x ew':>8}")
        for k, v in med.items():
            print(f"{k:<32}{v:>10.3f}{v / ew:>8.2f}")


if __name__ == "__main__":
    main()
