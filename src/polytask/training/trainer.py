"""The training loop: batching by slicing, AdamW, schedule, clipping, early stopping.

The per-step path does only what a hand-written loop would: forward, one masked loss per
task, the balancer's objective, backward, (clip), step. Losses are accumulated as tensors
and read back only when the progress bar redraws, every few steps (one check for NaN/inf,
:mod:`polytask.training.divergence`), at a checkpoint or when an epoch ends.
benchmarks/throughput.py measures this loop against plain PyTorch loops.

Checkpoints (:mod:`polytask.training.checkpoint`) and several processes
(:mod:`polytask.training.distributed`) are optional; without them the loop does nothing
for them but a few ``is None`` checks per step. What the loop decides lives in small
collaborators that own their state: early stopping, the checkpoint schedule, the NaN/inf
window (divergence), the history file and the monitored value.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from polytask.architectures import MultiTaskNet
from polytask.balancing.base import Balancer
from polytask.config import TrainingConfig, table_defaults
from polytask.features.batches import Batch, TensorTable
from polytask.metrics.scoring import score, split_outputs, task_losses
from polytask.tasks import Task
from polytask.training.balance_log import BalanceLog
from polytask.training.callbacks import Callback, overrides
from polytask.training.checkpoint import (
    Checkpointer,
    load_optimizer_state,
    optimizer_state,
    restore_rng,
    rng_state,
    scheduler_state,
    share_initial_state,
)
from polytask.training.device import resolve_device
from polytask.training.distributed import DistContext, StepSync
from polytask.training.divergence import DivergenceWatch, TrainingDiverged, check_finite
from polytask.training.early_stopping import EarlyStopping
from polytask.training.fit_state import FitRun, LoopState, TrainResult
from polytask.training.history import HistoryWriter
from polytask.training.interrupt import interrupted, stop_requests
from polytask.training.monitor import Monitor
from polytask.training.optim import StepWarmup, make_optimizer, make_scheduler, step_scheduler
from polytask.training.precision import plain_step
from polytask.training.probe import TrainingProbe
from polytask.training.progress import (
    EPOCH_LEGEND,
    TrainingProgress,
    epoch_summary,
    format_losses,
)
from polytask.training.schedule import CheckpointSchedule
from polytask.training.steps import make_step

__all__ = ["LoopState", "TrainResult", "Trainer", "TrainingDiverged", "resolve_device"]


class Trainer:
    """Trains a net on its tasks with a balancer; ``fit`` may be resumed from a checkpoint
    and called in several processes (torchrun)."""

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
        augment: Callable[[Batch], Batch] | None = None,
    ):
        self.net = net
        #: training batches pass through it (image augmentation), evaluation's never do
        self.augment = augment
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
        self.balancer.setup(self.names)
        #: what early stopping watches (checked against the tasks here)
        self.monitor = Monitor(cfg.monitor, tasks)

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
        if table_defaults.auto_keys(self.cfg):  # a direct caller's (the API fills its own)
            self.cfg = table_defaults.fill(self.cfg, len(train), train.features.numeric.shape[1])[0]
        self.fixed = table_defaults.fixed(self.cfg)
        run = self._prepare(train, val, checkpoints, resume)
        loop, cfg = run.loop, self.fixed
        try:
            with (
                HistoryWriter(self.history_path, loop.history) as run.history,
                stop_requests(enabled=checkpoints is not None) as stop,
                TrainingProgress(cfg.epochs, run.steps, enabled=self.verbose) as run.bar,
            ):
                run.schedule = CheckpointSchedule(checkpoints, stop, run.sync)
                for epoch in range(loop.epoch, cfg.epochs + 1) if not loop.finished else ():
                    loop.epoch = epoch
                    started = time.perf_counter()
                    order_state = run.generator.get_state()  # this epoch's shuffle, for resuming
                    running = self._train_epoch(run, epoch, order_state)
                    self._end_epoch(run, epoch, running, started)
                    if run.early.stopped_early:
                        break
        finally:
            run.step.close()  # the model keeps no hook of the training step
        run.early.restore_best(self.net)
        result = run.result()
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result

    def _prepare(
        self,
        train: TensorTable,
        val: TensorTable | None,
        checkpoints: Checkpointer | None,
        resume: Mapping[str, Any] | None,
    ) -> FitRun:
        """Move to the device, build the optimiser, schedule and step, load ``resume`` (or
        share process 0's initial state), and run the ``on_train_begin`` hooks."""
        cfg, net, device, ctx = self.fixed, self.net, self.device, self.distributed
        net.to(device)
        self.optimizer = make_optimizer(net, self.cfg, self.balancer.parameters(), device)
        self.scheduler = make_scheduler(self.optimizer, self.cfg)
        sync = StepSync(ctx) if ctx is not None else None
        steps = len(train.batch_sizes(cfg.batch_size))
        run = FitRun(
            train=train.to(device),
            val=val,
            generator=torch.Generator(device="cpu").manual_seed(self.cfg.seed),
            monitor_log=BalanceLog(self.names, self.log_every, steps),
            early=EarlyStopping(cfg.patience, self.cfg.min_delta),
            watch=DivergenceWatch(self.names, checkpoints),
            checkpoints=checkpoints,
            sync=sync,
            steps=steps,
        )
        if resume is not None:
            run.running = self._restore(resume, run)
        elif ctx is not None:
            share_initial_state(ctx, self.net, self.balancer)
        run.on_batch_begin = overrides(self.callbacks, "on_batch_begin")
        run.on_batch_end = overrides(self.callbacks, "on_batch_end")
        for hook in overrides(self.callbacks, "on_train_begin"):
            hook(self)
        if resume is not None:  # after the hooks: the generators as they were when saved
            restore_rng(resume, self.device, self.distributed)
        run.step = make_step(
            net, self.tasks, self.balancer, self.jacobian, sync, self.cfg.precision, device
        )
        run.started = time.perf_counter()
        return run

    def _train_epoch(
        self, run: FitRun, epoch: int, order_state: torch.Tensor
    ) -> list[torch.Tensor]:
        """One pass over the training batches (a resumed epoch: the rest of them, in the
        same order); returns one 0-dim loss sum per task, added to in place without an
        autograd node and read back only when due."""
        net, tasks, optimizer, step, sync = self.net, self.tasks, self.optimizer, run.step, run.sync
        assert optimizer is not None
        monitor_log, watch, bar = run.monitor_log, run.watch, run.bar
        on_begin, on_end = run.on_batch_begin, run.on_batch_end
        params = [p for p in net.parameters() if p.requires_grad]
        opt_params = [p for g in optimizer.param_groups for p in g["params"]]
        before = run.schedule.before_step if sync is not None else None
        probe = TrainingProbe(net, tasks, run.train, optimizer)  # what after_update may ask
        save_due = run.schedule.after_step if run.checkpoints is not None else None
        clip, due = self.cfg.grad_clip, run.bar.due
        # fp16's gradient scaler unscales, clips and steps (or skips an overflowed step)
        scaled = step.amp is not None and step.amp.scaler is not None
        optimizer_step = step.amp.step if scaled and step.amp is not None else plain_step
        warmup = StepWarmup(self.cfg.warmup_steps)  # 0 steps: the rates as they are
        net.train()
        skip, run.loop.step_in_epoch = run.loop.step_in_epoch, 0
        running = run.running or [torch.zeros((), device=self.device) for _ in tasks]
        run.running = None
        for i, batch in enumerate(self._epoch_batches(run, skip), skip + 1):
            self.global_step += 1
            for hook in on_begin:
                hook(self, self.global_step, batch)
            # = optimizer.zero_grad(set_to_none=True) without its per-call
            # profiler scope, which costs more than the loop (10-30 us a step)
            for p in opt_params:
                p.grad = None
            logging = monitor_log.due()
            if logging:
                monitor_log.before(step, net, tasks, batch)
            if before is not None:  # sent with the step's loss exchange
                before()
            losses = step(batch)
            with warmup.at(optimizer, self.global_step):
                optimizer_step(optimizer, params, clip)
            self.balancer.after_update(probe.at(step.losses_after(batch)))
            if logging:
                monitor_log.after(step, self.balancer)
            for hook in on_end:
                hook(self, self.global_step, batch)
            detached = [loss.detach() for loss in losses]
            torch._foreach_add_(running, detached)
            watch.add(detached, running, epoch, i, self.global_step)
            if due():
                bar.step(i, epoch, format_losses(self.names, torch.stack(running) / i))
            if save_due is not None:
                save, stopping = save_due(self.global_step)
                if save:
                    self._save_mid_epoch(run, order_state, running, epoch, i, stopping)
        watch.check(running, epoch, run.steps, self.global_step)
        return running

    def _epoch_batches(self, run: FitRun, skip: int) -> Iterator[Batch]:
        """This process's training batches of the epoch, after the ``skip`` a resumed
        epoch has done, augmented when training augments."""
        batches: Iterator[Batch] = (
            run.train.batches(self.fixed.batch_size, run.generator)
            if run.sync is None
            else run.sync.local_batches(run.train, self.fixed.batch_size, run.generator)
        )
        if skip:
            batches = itertools.islice(batches, skip, None)
        if self.augment is not None:
            batches = map(self.augment, batches)
        return batches

    def _save_mid_epoch(
        self,
        run: FitRun,
        order_state: torch.Tensor,
        running: list[torch.Tensor],
        epoch: int,
        i: int,
        stopping: bool,
    ) -> None:
        """A checkpoint after batch ``i`` (of finite losses only), then stop if asked."""
        assert run.checkpoints is not None
        run.watch.check(running, epoch, i, self.global_step)
        run.loop.step_in_epoch = i
        run.checkpoints.save(self._state(run, order_state, running))
        run.loop.step_in_epoch = 0
        if stopping:
            raise interrupted(run.schedule.stop.signum, epoch, i, run.steps, self.global_step)

    def _end_epoch(
        self, run: FitRun, epoch: int, running: list[torch.Tensor], started: float
    ) -> None:
        """The epoch's history record, early stopping, the schedule's step and the
        epoch-end checkpoint (then stop, if Ctrl-C or SIGTERM came during the epoch)."""
        record, totals, monitor, stopping = self._epoch_record(run, epoch, running)
        improved = run.early.update(monitor, epoch, self.net)
        record["best"] = improved
        record["seconds"] = round(time.perf_counter() - started, 4)
        for cb in self.callbacks:
            cb.on_epoch_end(self, record)
        run.history.append(record)  # and to loop.history
        loop = run.loop
        if self.verbose:
            run.bar.step(run.steps, epoch, format_losses(self.names, totals))
            if epoch == 1:
                run.bar.log(EPOCH_LEGEND)
            run.bar.log(epoch_summary(self.tasks, record, run.bar.width, self.fixed.epochs))
        step_scheduler(self.scheduler, monitor)
        loop.epoch = epoch + 1
        loop.finished = run.early.stopped_early or epoch == self.fixed.epochs
        if run.checkpoints is not None:
            run.checkpoints.save(self._state(run, run.generator.get_state(), None))
            if stopping and not loop.finished:
                raise interrupted(
                    run.schedule.stop.signum, epoch, run.steps, run.steps, self.global_step
                )

    def _epoch_record(
        self, run: FitRun, epoch: int, running: list[torch.Tensor]
    ) -> tuple[dict[str, Any], torch.Tensor, float, bool]:
        """The history record so far, the mean task losses, the monitored value and
        whether to stop (in several processes, process 0's value and wish decide)."""
        assert self.optimizer is not None
        cfg = self.cfg
        # each task's mean over the batches that had its labels (others add 0)
        present = torch.tensor(
            run.train.batches_with_labels, dtype=torch.float32, device=self.device
        ).clamp_min(1)
        totals = torch.stack(running) / present
        train_loss = dict(zip(self.names, totals.tolist(), strict=True))
        check_finite(train_loss, epoch)
        record: dict[str, Any] = {
            "epoch": epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train": {"loss": train_loss},
        }
        val = run.val
        if val is not None and len(val):
            outs, targets, masks = split_outputs(self.net, val, cfg.eval_batch_size, self.device)
            val_loss = task_losses(self.tasks, outs, targets, masks)
            val_metrics = score(self.tasks, outs, targets, masks)
            record["validation"] = {"loss": val_loss, "metrics": val_metrics}
            monitor = self.monitor.value(val_loss, val_metrics)
        else:
            monitor = float(sum(train_loss.values()))
        stopping = run.schedule.stop.requested
        if self.distributed is not None:  # process 0's value decides early stopping for all
            monitor, stopping = self.distributed.monitor_from_main(monitor, stopping)
        monitor_log = run.monitor_log
        weights = monitor_log.epoch_weights() or self.balancer.weights()
        record["weights"] = {k: w for k, w in weights.items() if math.isfinite(w)}
        record.update(monitor_log.epoch_cosine())  # cosine, cosine_n, cosine_sd
        record["monitor"] = monitor if math.isfinite(monitor) else None
        self.balancer.end_epoch(train_loss)
        return record, totals, monitor, stopping

    # -- checkpoints -----------------------------------------------------------------------
    def _state(
        self, run: FitRun, order_state: torch.Tensor, running: list[torch.Tensor] | None
    ) -> dict[str, Any]:
        """Everything needed to continue from here: tensors and JSON-able values (see
        :mod:`polytask.training.checkpoint` for how they are stored)."""
        assert self.optimizer is not None
        ctx, monitor_log = self.distributed, run.monitor_log
        rng = rng_state(self.device)
        state: dict[str, Any] = {
            **run.loop.state_dict(),
            **run.early.state_dict(),
            "global_step": self.global_step,
            "seconds": run.loop.seconds + time.perf_counter() - run.started,
            "world_size": 1 if ctx is None else ctx.world_size,
            "model": self.net.state_dict(),
            "best_model": run.early.best_weights,
            "optimizer": optimizer_state(self.optimizer),
            "scheduler": scheduler_state(self.scheduler),
            "balancer": self.balancer.state_dict(),
            "balance_log": monitor_log.state_dict(),
            "rng": rng,
            "batch_order_rng": order_state,
            "running": None if running is None else torch.stack(running),
        }
        if ctx is not None:  # each process's own dropout generators
            state["rng_ranks"] = ctx.gather(rng["torch"])
            if "cuda" in rng:
                state["cuda_rng_ranks"] = ctx.gather(rng["cuda"])
        return state

    def _restore(self, state: Mapping[str, Any], run: FitRun) -> list[torch.Tensor] | None:
        """Load a checkpoint's state (all but the global random generators, see
        :func:`~polytask.training.checkpoint.restore_rng`); returns the current epoch's
        running loss sums, if any."""
        assert self.optimizer is not None
        device, monitor_log = self.device, run.monitor_log
        self.net.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.balancer.load_state_dict(state["balancer"])
        monitor_log.load_state_dict(state["balance_log"])
        run.generator.set_state(state["batch_order_rng"])
        run.early.load_best(state["best_model"], device)
        self.global_step = int(state["global_step"])
        run.loop.load_state_dict(state)
        run.early.load_state_dict(state)
        running = state["running"]
        return None if running is None else list(running.to(device).unbind())
