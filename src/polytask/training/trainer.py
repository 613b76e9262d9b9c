"""The training loop: batching by slicing, AdamW, schedule, clipping, early stopping.

The per-step path does only what a hand-written loop would: forward, one masked loss per
task, the balancer's objective, backward, (clip), step. Losses are accumulated as tensors
and read back only when the progress bar redraws or an epoch ends. benchmarks/throughput.py
measures this loop against plain PyTorch loops.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polytask.architectures import MultiTaskNet
from polytask.balancing.base import Balancer
from polytask.config import TrainingConfig
from polytask.errors import PolytaskError
from polytask.evaluation.scoring import higher_is_better, raw_outputs, score, task_losses
from polytask.features.batches import TensorTable
from polytask.tasks import Task
from polytask.training.balance_log import BalanceLog
from polytask.training.callbacks import Callback, overrides
from polytask.training.optim import make_optimizer, make_scheduler
from polytask.training.progress import TrainingProgress
from polytask.training.steps import batch_losses, make_step


class TrainingDiverged(PolytaskError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    best_monitor: float
    stopped_early: bool
    seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise PolytaskError(f"unknown device '{name}'; use auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PolytaskError("device 'cuda' was asked for but no GPU is available; use cpu")
    return device


class Trainer:
    def __init__(
        self,
        net: MultiTaskNet,
        tasks: list[Task],
        balancer: Balancer,
        cfg: TrainingConfig,
        device: torch.device | None = None,
        history_path: Path | None = None,
        verbose: bool = True,
        jacobian: str = "parameters",
        log_every: int = 50,
        callbacks: list[Callback] | None = None,
    ):
        self.net = net
        self.tasks = tasks
        self.names = [t.name for t in tasks]
        self.balancer = balancer
        self.cfg = cfg
        self.device = device or resolve_device(cfg.device)
        self.history_path = history_path
        self.jacobian = jacobian
        self.log_every = log_every
        self.verbose = verbose and cfg.progress
        self.callbacks: list[Callback] = list(callbacks or [])
        #: optimiser steps taken so far in this run (set by ``fit``)
        self.global_step = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self.balancer.setup(self.names)
        self._check_monitor()
        self._warned_monitor = False

    def _check_monitor(self) -> None:
        monitor = self.cfg.monitor
        if monitor == "loss":
            return
        task, _, metric = monitor.partition(".")
        example = next(iter(self.tasks[0].headline))
        if task not in self.names or not metric:
            raise PolytaskError(
                f"training.monitor '{monitor}' is not 'loss' or TASK.METRIC with a task of "
                f"{', '.join(self.names)} (e.g. '{self.names[0]}.{example}')"
            )
        known = self.tasks[self.names.index(task)].metric_names()
        if metric not in known:
            raise PolytaskError(
                f"training.monitor '{monitor}': task '{task}' has no metric '{metric}'; it "
                f"has {', '.join(known)}"
            )

    # -- validation ------------------------------------------------------------------------
    def _validate(self, val: TensorTable) -> tuple[dict[str, float], dict[str, Any]]:
        outs = raw_outputs(self.net, val.features, self.cfg.eval_batch_size, self.device)
        losses = task_losses(self.tasks, outs, val.targets, val.masks)
        metrics = score(self.tasks, outs, val.targets, val.masks)
        return losses, metrics

    def _monitor_value(self, losses: dict[str, float], metrics: dict[str, Any]) -> float:
        """Lower is better: the sum of task losses, or a metric (negated if higher-better).
        A metric that is undefined on the validation split (e.g. AUROC with one class)
        falls back to the summed loss, with a warning, rather than stopping blind."""
        if self.cfg.monitor != "loss":
            task, _, metric = self.cfg.monitor.partition(".")
            value = metrics[task].get(metric)
            if value is not None:
                return -float(value) if higher_is_better(metric) else float(value)
            if not self._warned_monitor:
                warnings.warn(
                    f"training.monitor '{self.cfg.monitor}' is undefined on the validation "
                    "split (too few labels or one class); early stopping uses the summed "
                    "validation loss instead",
                    UserWarning,
                    stacklevel=2,
                )
                self._warned_monitor = True
        return float(sum(losses.values()))

    # -- training --------------------------------------------------------------------------
    def fit(self, train: TensorTable, val: TensorTable | None) -> TrainResult:
        cfg, net, device = self.cfg, self.net, self.device
        net.to(device)
        train = train.to(device)
        optimizer = make_optimizer(net, cfg, self.balancer.parameters(), device)
        scheduler = make_scheduler(optimizer, cfg)
        self.optimizer, self.scheduler = optimizer, scheduler
        on_batch_begin = overrides(self.callbacks, "on_batch_begin")
        on_batch_end = overrides(self.callbacks, "on_batch_end")
        for hook in overrides(self.callbacks, "on_train_begin"):
            hook(self)
        generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
        params = [p for p in net.parameters() if p.requires_grad]
        opt_params = [p for g in optimizer.param_groups for p in g["params"]]
        loss_fns = [t.loss for t in self.tasks]
        step = make_step(net, self.tasks, self.balancer, self.jacobian)
        after_step = self.balancer.after_step if self.balancer.needs_loss_after_step else None
        monitor_log = BalanceLog(self.names, self.log_every)
        clip = cfg.grad_clip
        steps = len(train.batch_sizes(cfg.batch_size))
        history: list[dict[str, Any]] = []
        best = math.inf
        best_epoch, best_state = 0, None
        since_best = 0
        stopped_early = False
        started = time.perf_counter()
        hist_file = self.history_path.open("w", encoding="utf-8") if self.history_path else None

        try:
            with TrainingProgress(cfg.epochs, steps, enabled=self.verbose) as bar:
                due = bar.due
                for epoch in range(1, cfg.epochs + 1):
                    t0 = time.perf_counter()
                    net.train()
                    # one 0-dim sum per task, added to in place without an autograd node
                    running = [torch.zeros((), device=device) for _ in loss_fns]
                    for i, batch in enumerate(train.batches(cfg.batch_size, generator), 1):
                        # = optimizer.zero_grad(set_to_none=True) without its per-call
                        # profiler scope, which costs more than the loop (10-30 us a step)
                        self.global_step += 1
                        for hook in on_batch_begin:
                            hook(self, self.global_step, batch)
                        for p in opt_params:
                            p.grad = None
                        logging = monitor_log.due()
                        if logging:
                            monitor_log.before(step, net, self.tasks, batch)
                        losses = step(batch)
                        if clip is not None:
                            torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
                        optimizer.step()
                        if after_step is not None:
                            after_step(self._losses_after(net, batch, loss_fns))
                        if logging:
                            monitor_log.after(step, self.balancer)
                        for hook in on_batch_end:
                            hook(self, self.global_step, batch)
                        torch._foreach_add_(running, [loss.detach() for loss in losses])
                        if due():
                            bar.step(i, epoch, self._fmt(torch.stack(running) / i))
                    # each task's mean over the batches that had its labels (others add 0)
                    present = torch.tensor(
                        train.batches_with_labels, dtype=torch.float32, device=device
                    ).clamp_min(1)
                    totals = torch.stack(running) / present
                    train_loss = dict(zip(self.names, totals.tolist(), strict=True))
                    self._check_finite(train_loss, epoch)
                    record: dict[str, Any] = {
                        "epoch": epoch,
                        "lr": optimizer.param_groups[0]["lr"],
                        "train": {"loss": train_loss},
                    }
                    if val is not None and len(val):
                        val_loss, val_metrics = self._validate(val)
                        record["validation"] = {"loss": val_loss, "metrics": val_metrics}
                        monitor = self._monitor_value(val_loss, val_metrics)
                    else:
                        monitor = float(sum(train_loss.values()))
                    weights = monitor_log.epoch_weights() or self.balancer.weights()
                    record["weights"] = {k: w for k, w in weights.items() if math.isfinite(w)}
                    cosine = monitor_log.epoch_cosine()
                    if cosine:
                        record["cosine"] = cosine
                    record["monitor"] = monitor if math.isfinite(monitor) else None
                    self.balancer.end_epoch(train_loss)
                    improved = monitor < best - cfg.min_delta
                    if improved:
                        best, best_epoch, since_best = monitor, epoch, 0
                        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                    else:
                        since_best += 1
                    record["best"] = improved
                    record["seconds"] = round(time.perf_counter() - t0, 4)
                    for cb in self.callbacks:
                        cb.on_epoch_end(self, record)
                    history.append(record)
                    if hist_file:
                        hist_file.write(json.dumps(record) + "\n")
                        hist_file.flush()
                    if self.verbose:
                        bar.step(steps, epoch, self._fmt(totals))
                        bar.log(self._summary(record))
                    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        scheduler.step(monitor)
                    elif scheduler is not None:
                        scheduler.step()
                    if cfg.patience is not None and since_best >= cfg.patience:
                        stopped_early = True
                        break
        finally:
            if hist_file:
                hist_file.close()
        if best_state is not None:
            net.load_state_dict(best_state)
        result = TrainResult(
            best_epoch=best_epoch,
            epochs_run=len(history),
            best_monitor=best,
            stopped_early=stopped_early,
            seconds=time.perf_counter() - started,
            history=history,
        )
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result

    @staticmethod
    def _losses_after(net: MultiTaskNet, batch: Any, loss_fns: list[Any]) -> list[torch.Tensor]:
        """The batch's task losses at the updated parameters (FAMO's extra forward)."""
        with torch.inference_mode():
            outs = net.forward_list(batch.numeric, batch.categorical)
            return batch_losses(loss_fns, outs, batch)

    def _check_finite(self, losses: dict[str, float], epoch: int) -> None:
        bad = [name for name, v in losses.items() if not math.isfinite(v)]
        if bad:
            raise TrainingDiverged(
                f"the loss of task '{bad[0]}' became {losses[bad[0]]} in epoch {epoch}; "
                "lower training.lr, set training.grad_clip, or check that task's labels"
            )

    def _fmt(self, losses: torch.Tensor) -> str:
        return "  ".join(f"{n} {v:.4f}" for n, v in zip(self.names, losses.tolist(), strict=True))

    def _summary(self, record: dict[str, Any]) -> str:
        parts = [f"epoch {record['epoch']:>3}"]
        parts.append("train " + " ".join(f"{v:.4f}" for v in record["train"]["loss"].values()))
        if "validation" in record:
            parts.append(
                "val " + " ".join(f"{v:.4f}" for v in record["validation"]["loss"].values())
            )
            heads = []
            for t in self.tasks:
                m = next(iter(t.headline))
                v = record["validation"]["metrics"][t.name].get(m)
                heads.append(f"{t.name}.{m} {v:.4f}" if v is not None else f"{t.name}.{m} -")
            parts.append(" ".join(heads))
        if record["best"]:
            parts.append("*")
        return " | ".join(parts)
