"""The two defaults behind MMoE/CGC/PLE generalising on the MMoE synthetic tasks (issue 13
part 4, benchmarks/RESULTS.md): gates start uniform, and the experts together are the
size of the hard-sharing trunk, not experts x the trunk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import polytask
from polytask.architectures import ARCHITECTURES, ArchitectureSpec, MultiTaskNet
from polytask.architectures.gating import expert_widths, make_gate
from polytask.encoders import TabularEncoder
from polytask.tasks import make_task

MIXTURES = ["mmoe", "cgc", "ple"]


def _net(arch: str, options: dict | None = None, hidden: list[int] | None = None) -> MultiTaskNet:
    torch.manual_seed(0)
    tasks = []
    for name in ("y1", "y2"):
        t = make_task(name, "regression", [name], {"standardize": False, "transform": "none"})
        t.fitted = True
        tasks.append(t)
    cls = ARCHITECTURES[arch]
    hidden = hidden or [64, 32]
    trunk = [] if cls.builds_shared_layers else hidden  # hard: the encoder holds the trunk
    enc = TabularEncoder(100, [], [], trunk, "relu", 0.0, "layer")
    # as a new run builds it: defaults that depend on other keys stated (pinned_options)
    opts = cls.Options(**cls.pinned_options(options or {}, hidden, len(tasks)))
    spec = ArchitectureSpec(enc, tasks, [], options=opts, hidden=hidden, norm="layer")
    return cls(spec)


def _gates(net: MultiTaskNet) -> list[torch.nn.Linear]:
    return [
        m for name, m in net.named_modules() if isinstance(m, torch.nn.Linear) and "gate" in name
    ]


@pytest.mark.parametrize("arch", MIXTURES)
def test_gates_start_uniform_over_their_experts_for_every_row(arch: str) -> None:
    net = _net(arch)
    gates = _gates(net)
    assert len(gates) == {"mmoe": 2, "cgc": 2, "ple": 5}[arch]  # PLE: 2 levels, shared gate
    for gate in gates:
        x = torch.randn(64, gate.in_features) * 3
        weights = torch.softmax(gate(x), dim=-1)
        torch.testing.assert_close(weights, torch.full_like(weights, 1 / gate.out_features))


@pytest.mark.parametrize("arch", MIXTURES)
def test_random_gate_init_mixes_each_row_differently(arch: str) -> None:
    """nn.Linear's initialisation: on 100 standardised inputs the gate's weights for one
    expert spread across rows (the random partition the uniform start avoids)."""
    net = _net(arch, {"gate_init": "random"})
    for gate in _gates(net):
        x = torch.randn(512, gate.in_features)
        weights = torch.softmax(gate(x), dim=-1)
        assert weights.std(dim=0).min() > 0.2 / gate.out_features


def test_make_gate_has_no_gate_for_one_expert() -> None:
    assert make_gate(10, 1) is None and make_gate(10, 1, "random") is None


def test_default_experts_share_out_the_trunks_first_width() -> None:
    assert expert_widths([64, 32], 8) == [8]
    assert expert_widths([4], 8) == [1]
    assert expert_widths([], 8) == []
    mmoe = _net("mmoe")
    assert [layer.out_features for layer in mmoe.experts] == [8]  # 8 experts of 64 / 8
    cgc = _net("cgc")  # 2 shared + 2 tasks x 1 own = 4 experts per level: 64 / 4 each
    assert cgc.shared_experts[0].out_features == 16
    # the experts' weights are those of the hard trunk's first layer (100 x 64), where
    # the old default (8 copies of model.hidden) had 8 times the whole trunk
    hard = _net("hard")
    n_hard = sum(p.numel() for p in hard.parameters())
    n_mmoe = sum(p.numel() for p in mmoe.parameters())
    assert n_mmoe < 1.3 * n_hard
    old = _net("mmoe", {"expert_hidden": [64, 32]})
    assert sum(p.numel() for p in old.parameters()) > 7 * n_hard


def test_a_saved_run_without_expert_hidden_keeps_the_widths_it_was_trained_with() -> None:
    """Runs saved before experts were sized to the trunk state no ``expert_hidden``; they
    load with the widths they trained with (model.hidden per expert), while a new run
    writes its sized experts into its config and loads them back."""
    from polytask.architectures import ArchitectureSpec

    legacy = ARCHITECTURES["mmoe"]
    task = make_task("y1", "regression", ["y1"], {"standardize": False, "transform": "none"})
    task.fitted = True
    enc = TabularEncoder(10, [], [], [], "relu", 0.0, "layer")
    spec = ArchitectureSpec(enc, [task], [], "relu", 0.0, legacy.Options(), [64, 32], "layer")
    assert [layer.out_features for layer in legacy(spec).experts] == [64, 32]
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    df["y1"], df["y2"] = df.a * 2, df.b - df.a
    model = polytask.fit(
        df,
        tasks=["y1:regression", "y2:regression"],
        architecture="ple",
        epochs=1,
        hidden=[16],
        progress=False,
    )
    assert model.config.model.options["expert_hidden"] == [4]  # 16 / (2 shared + 2 own)
