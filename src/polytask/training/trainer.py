"""The training loop: batching by slicing, AdamW, schedule, clipping, early stopping.

The per-step path does only what a hand-written loop would: forward, one masked loss per
task, the balancer's objective, backward, (clip), step. Losses are accumulated as tensors
and read back only when the progress bar redraws, every ``FINITE_CHECK_STEPS`` steps (one
check for NaN/inf), at a checkpoint or when an epoch ends. benchmarks/throughput.py
measures this loop against plain PyTorch loops.

Checkpoints (:mod:`polytask.training.checkpoint`) and several processes
(:mod:`polytask.training.distributed`) are optional; without them the loop does nothing
for them but a few ``is None`` checks per step.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polytask.architectures import MultiTaskNet
from polytask.balancing.base import Balancer
from polytask.config import TrainingConfig
from polytask.errors import PolytaskError
from polytask.features.batches import Batch, TensorTable
from polytask.metrics.scoring import higher_is_better, score, split_outputs, task_losses
from polytask.tasks import Task
from polytask.tasks.grouped import grouped_losses
from polytask.training import checkpoint
from polytask.training.balance_log import BalanceLog
from polytask.training.callbacks import Callback, overrides
from polytask.training.checkpoint import (
    Checkpointer,
    load_optimizer_state,
    optimizer_state,
    rng_state,
    scheduler_state,
    set_rng_state,
)
from polytask.training.distributed import DistContext, StepSync
from polytask.training.interrupt import TrainingInterrupted, stop_requests
from polytask.training.optim import make_optimizer, make_scheduler
from polytask.training.progress import TrainingProgress
from polytask.training.steps import make_step

#: steps between checks of the task losses for NaN/inf (one host sync each)
FINITE_CHECK_STEPS = 64
#: the BalanceLog attributes a checkpoint keeps (its step count and the epoch's sums)
BALANCE_LOG_FIELDS = ("count", "weight_sums", "weight_n", "cos_sums", "cos_n")


class TrainingDiverged(PolytaskError):
    """The loss became NaN or infinite."""


@dataclass
class LoopState:
    """Where training stands (a checkpoint's counters)."""

    #: the current epoch (from 1), or the next one after an epoch-end checkpoint
    epoch: int = 1
    #: optimiser steps done in ``epoch``
    step_in_epoch: int = 0
    best: float = math.inf
    best_epoch: int = 0
    since_best: int = 0
    stopped_early: bool = False
    #: the epoch loop is over (last epoch or early stop)
    finished: bool = False
    #: training seconds before this process (a resumed run)
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


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
        distributed: DistContext | None = None,
    ):
        self.net = net
        self.tasks = tasks
        self.names = [t.name for t in tasks]
        self.balancer = balancer
        self.cfg = cfg
        #: the process group when training in several processes (torchrun), else None
        self.distributed = distributed
        self.device = device or (
            distributed.device if distributed is not None else resolve_device(cfg.device)
        )
        self.history_path = history_path
        self.jacobian = jacobian
        self.log_every = log_every
        self.verbose = verbose and cfg.progress and (distributed is None or distributed.is_main)
        self.callbacks: list[Callback] = list(callbacks or [])
        #: optimiser steps taken so far in this run (set by ``fit``)
        self.global_step = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._checkpoints: Checkpointer | None = None
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
        outs, targets, masks = split_outputs(self.net, val, self.cfg.eval_batch_size, self.device)
        losses = task_losses(self.tasks, outs, targets, masks)
        metrics = score(self.tasks, outs, targets, masks)
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
    def fit(
        self,
        train: TensorTable,
        val: TensorTable | None,
        checkpoints: Checkpointer | None = None,
        resume: Mapping[str, Any] | None = None,
    ) -> TrainResult:
        """Train. With ``checkpoints``, write a checkpoint on its schedule and at every
        epoch end, and stop cleanly on Ctrl-C or SIGTERM (checkpoint, then
        :class:`TrainingInterrupted`). With ``resume``, the state of a checkpoint,
        continue exactly where it was written (the rest of a mid-epoch's batches in the
        same order)."""
        cfg, net, device, ctx = self.cfg, self.net, self.device, self.distributed
        net.to(device)
        train = train.to(device)
        optimizer = make_optimizer(net, cfg, self.balancer.parameters(), device)
        scheduler = make_scheduler(optimizer, cfg)
        self.optimizer, self.scheduler = optimizer, scheduler
        self._checkpoints = checkpoints
        generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
        monitor_log = BalanceLog(self.names, self.log_every)
        loop = LoopState()
        resumed_running = None
        if resume is not None:
            resumed_running = self._restore(resume, loop, generator, monitor_log)
        elif ctx is not None:
            self._share_initial_state(ctx)
        on_batch_begin = overrides(self.callbacks, "on_batch_begin")
        on_batch_end = overrides(self.callbacks, "on_batch_end")
        for hook in overrides(self.callbacks, "on_train_begin"):
            hook(self)
        if resume is not None:  # after the hooks: the generators as they were when saved
            self._restore_rng(resume)
        sync = StepSync(ctx) if ctx is not None else None
        params = [p for p in net.parameters() if p.requires_grad]
        opt_params = [p for g in optimizer.param_groups for p in g["params"]]
        loss_fns = [t.loss for t in self.tasks]
        step = make_step(net, self.tasks, self.balancer, self.jacobian, sync)
        after_step = self.balancer.after_step if self.balancer.needs_loss_after_step else None
        clip = cfg.grad_clip
        steps = len(train.batch_sizes(cfg.batch_size))
        started = time.perf_counter()
        hist_file = self.history_path.open("w", encoding="utf-8") if self.history_path else None
        if hist_file:
            for record in loop.history:
                hist_file.write(json.dumps(record) + "\n")
            hist_file.flush()

        try:
            with (
                stop_requests(enabled=checkpoints is not None) as stop,
                TrainingProgress(cfg.epochs, steps, enabled=self.verbose) as bar,
            ):
                due = bar.due
                for epoch in range(loop.epoch, cfg.epochs + 1) if not loop.finished else ():
                    loop.epoch = epoch
                    t0 = time.perf_counter()
                    net.train()
                    order_state = generator.get_state()  # this epoch's shuffle, for resuming
                    skip, loop.step_in_epoch = loop.step_in_epoch, 0
                    # one 0-dim sum per task, added to in place without an autograd node
                    running = resumed_running or [torch.zeros((), device=device) for _ in loss_fns]
                    resumed_running = None
                    batches: Iterator[Batch] = train.batches(cfg.batch_size, generator)
                    if sync is not None:
                        batches = map(sync.shard, batches)
                    if skip:
                        batches = itertools.islice(batches, skip, None)
                    #: this window's detached losses, checked for NaN/inf every few steps
                    window: list[list[torch.Tensor]] = []
                    for i, batch in enumerate(batches, skip + 1):
                        self.global_step += 1
                        for hook in on_batch_begin:
                            hook(self, self.global_step, batch)
                        # = optimizer.zero_grad(set_to_none=True) without its per-call
                        # profiler scope, which costs more than the loop (10-30 us a step)
                        for p in opt_params:
                            p.grad = None
                        logging = monitor_log.due()
                        if logging:
                            monitor_log.before(step, net, self.tasks, batch)
                        if sync is not None:  # sent with the step's loss exchange
                            sync.want_stop = stop.requested
                            sync.want_checkpoint = bool(checkpoints and checkpoints.due_time())
                        losses = step(batch)
                        if clip is not None:
                            torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
                        optimizer.step()
                        if after_step is not None:
                            after_step(self._losses_after(net, batch, self.tasks, sync))
                        if logging:
                            monitor_log.after(step, self.balancer)
                        for hook in on_batch_end:
                            hook(self, self.global_step, batch)
                        detached = [loss.detach() for loss in losses]
                        torch._foreach_add_(running, detached)
                        window.append(detached)
                        if len(window) >= FINITE_CHECK_STEPS:
                            self._check_window(window, running, epoch, i)
                        if due():
                            bar.step(i, epoch, self._fmt(torch.stack(running) / i))
                        if checkpoints is None:
                            continue
                        if sync is None:
                            stopping = stop.requested
                            save = stopping or checkpoints.due(self.global_step)
                        else:  # the processes agreed on both in the step's exchange
                            stopping = sync.stop
                            save = (
                                stopping
                                or sync.checkpoint
                                or checkpoints.due_steps(self.global_step)
                            )
                        if save:
                            self._check_window(window, running, epoch, i)
                            loop.step_in_epoch = i
                            checkpoints.save(
                                self._state(loop, order_state, running, monitor_log, started)
                            )
                            loop.step_in_epoch = 0
                            if stopping:
                                raise self._interrupted(stop.signum, epoch, i, steps)
                    self._check_window(window, running, epoch, steps)
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
                    stopping = stop.requested
                    if ctx is not None:  # process 0's value decides early stopping for all
                        monitor, stopping = ctx.monitor_from_main(monitor, stopping)
                    weights = monitor_log.epoch_weights() or self.balancer.weights()
                    record["weights"] = {k: w for k, w in weights.items() if math.isfinite(w)}
                    cosine = monitor_log.epoch_cosine()
                    if cosine:
                        record["cosine"] = cosine
                    record["monitor"] = monitor if math.isfinite(monitor) else None
                    self.balancer.end_epoch(train_loss)
                    improved = monitor < loop.best - cfg.min_delta
                    if improved:
                        loop.best, loop.best_epoch, loop.since_best = monitor, epoch, 0
                        self._best_state = {
                            k: v.detach().clone() for k, v in net.state_dict().items()
                        }
                    else:
                        loop.since_best += 1
                    record["best"] = improved
                    record["seconds"] = round(time.perf_counter() - t0, 4)
                    for cb in self.callbacks:
                        cb.on_epoch_end(self, record)
                    loop.history.append(record)
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
                    loop.epoch = epoch + 1
                    loop.stopped_early = (
                        cfg.patience is not None and loop.since_best >= cfg.patience
                    )
                    loop.finished = loop.stopped_early or epoch == cfg.epochs
                    if checkpoints is not None:
                        checkpoints.save(
                            self._state(loop, generator.get_state(), None, monitor_log, started)
                        )
                        if stopping and not loop.finished:
                            raise self._interrupted(stop.signum, epoch, steps, steps)
                    if loop.stopped_early:
                        break
        finally:
            if hist_file:
                hist_file.close()
            step.close()  # the model keeps no hook of the training step
        if self._best_state is not None:
            net.load_state_dict(self._best_state)
        result = TrainResult(
            best_epoch=loop.best_epoch,
            epochs_run=len(loop.history),
            best_monitor=loop.best,
            stopped_early=loop.stopped_early,
            seconds=loop.seconds + time.perf_counter() - started,
            history=loop.history,
        )
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result

    # -- checkpoints -----------------------------------------------------------------------
    def _state(
        self,
        loop: LoopState,
        order_state: torch.Tensor,
        running: list[torch.Tensor] | None,
        monitor_log: BalanceLog,
        started: float,
    ) -> dict[str, Any]:
        """Everything needed to continue from here: tensors and JSON-able values (see
        :mod:`polytask.training.checkpoint` for how they are stored)."""
        assert self.optimizer is not None
        ctx = self.distributed
        rng = rng_state(self.device)
        state: dict[str, Any] = {
            "global_step": self.global_step,
            "epoch": loop.epoch,
            "step_in_epoch": loop.step_in_epoch,
            "finished": loop.finished,
            "best": loop.best,
            "best_epoch": loop.best_epoch,
            "since_best": loop.since_best,
            "stopped_early": loop.stopped_early,
            "seconds": loop.seconds + time.perf_counter() - started,
            "history": loop.history,
            "world_size": 1 if ctx is None else ctx.world_size,
            "model": self.net.state_dict(),
            "best_model": self._best_state,
            "optimizer": optimizer_state(self.optimizer),
            "scheduler": scheduler_state(self.scheduler),
            "balancer": self.balancer.state_dict(),
            "balance_log": {k: getattr(monitor_log, k) for k in BALANCE_LOG_FIELDS},
            "rng": rng,
            "batch_order_rng": order_state,
            "running": None if running is None else torch.stack(running),
        }
        if ctx is not None:  # each process's own dropout generators
            state["rng_ranks"] = ctx.gather(rng["torch"])
            if "cuda" in rng:
                state["cuda_rng_ranks"] = ctx.gather(rng["cuda"])
        return state

    def _restore(
        self,
        state: Mapping[str, Any],
        loop: LoopState,
        generator: torch.Generator,
        monitor_log: BalanceLog,
    ) -> list[torch.Tensor] | None:
        """Load a checkpoint's state (all but the global random generators, see
        :meth:`_restore_rng`); returns the current epoch's running loss sums, if any."""
        assert self.optimizer is not None
        device = self.device
        self.net.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.balancer.load_state_dict(state["balancer"])
        for key, value in state["balance_log"].items():
            setattr(monitor_log, key, value)
        generator.set_state(state["batch_order_rng"])
        best = state["best_model"]
        self._best_state = None if best is None else {k: v.to(device) for k, v in best.items()}
        self.global_step = int(state["global_step"])
        loop.epoch = int(state["epoch"])
        loop.step_in_epoch = int(state["step_in_epoch"])
        loop.finished = bool(state["finished"])
        loop.best = float(state["best"])
        loop.best_epoch = int(state["best_epoch"])
        loop.since_best = int(state["since_best"])
        loop.stopped_early = bool(state["stopped_early"])
        loop.seconds = float(state["seconds"])
        loop.history = list(state["history"])
        running = state["running"]
        return None if running is None else list(running.to(device).unbind())

    def _restore_rng(self, state: Mapping[str, Any]) -> None:
        set_rng_state(state["rng"], self.device)
        ctx = self.distributed
        if ctx is None:
            return
        ranks = state.get("rng_ranks")
        if ranks is not None and ctx.rank < len(ranks):
            torch.set_rng_state(ranks[ctx.rank])
        cuda = state.get("cuda_rng_ranks")
        if cuda is not None and ctx.rank < len(cuda) and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda[ctx.rank], self.device)

    def _share_initial_state(self, ctx: DistContext) -> None:
        """Every process starts from process 0's weights and balancer state (e.g. the
        generator of a method seeded at random)."""
        ctx.broadcast_module(self.net)
        blob = checkpoint.to_bytes(self.balancer.state_dict()) if ctx.is_main else None
        self.balancer.load_state_dict(checkpoint.from_bytes(ctx.broadcast_bytes(blob)))

    def _interrupted(self, signum: int, epoch: int, step: int, steps: int) -> TrainingInterrupted:
        return TrainingInterrupted(
            f"training stopped in epoch {epoch} after step {step} of {steps} (step "
            f"{self.global_step} in all) and saved a checkpoint",
            signum,
        )

    def _check_window(
        self, window: list[list[torch.Tensor]], running: list[torch.Tensor], epoch: int, i: int
    ) -> None:
        """Stop at the first non-finite task loss of the last steps, naming the task and
        the step (one check per window: the running sums carry any NaN or inf)."""
        if not window:
            return
        if bool(torch.stack(running).isfinite().all()):
            window.clear()
            return
        values = torch.stack([torch.stack(w) for w in window])
        bad = (~values.isfinite()).nonzero()
        if not len(bad):  # the sums overflowed, no single loss did
            window.clear()
            return
        row, task = bad[0].tolist()
        back = len(window) - 1 - row
        kept = ""
        ckpt = self._checkpoints
        if ckpt is not None and ckpt.last_step is not None and ckpt.folder is not None:
            kept = f"; the last good checkpoint (step {ckpt.last_step}) is kept in '{ckpt.folder}'"
        raise TrainingDiverged(
            f"the loss of task '{self.names[task]}' became {values[row, task].item()} at step "
            f"{self.global_step - back} (epoch {epoch}, batch {i - back}); training stopped"
            f"{kept}; lower training.lr, set training.grad_clip, or check that task's labels"
        )

    @staticmethod
    def _losses_after(
        net: MultiTaskNet, batch: Any, tasks: list[Task], sync: StepSync | None = None
    ) -> list[torch.Tensor]:
        """The batch's task losses at the updated parameters (FAMO's extra forward);
        tasks of one kind are computed together (:mod:`polytask.tasks.grouped`)."""
        with torch.inference_mode():
            outs = net.forward_list(*batch.inputs)
            losses = grouped_losses(tasks, outs, batch.targets, batch.masks)
            return losses if sync is None else sync.loss_values(losses, batch)

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
