"""When the loop writes a mid-epoch checkpoint, and when it stops for Ctrl-C or SIGTERM.

In one process: after a stop request, or on the :class:`Checkpointer`'s step or time
schedule. In several, the processes must agree, so each sends its wishes (stop, time's
up) with the step's loss exchange and all act on the exchange's answer; the step
schedule needs no exchange (every process counts the same steps)."""

from __future__ import annotations

from polytask.training.checkpoint import Checkpointer
from polytask.training.distributed import StepSync
from polytask.training.interrupt import StopRequest


class CheckpointSchedule:
    def __init__(self, checkpoints: Checkpointer | None, stop: StopRequest, sync: StepSync | None):
        self.checkpoints = checkpoints
        self.stop = stop
        self.sync = sync

    def before_step(self) -> None:
        """Send this process's wishes with the coming step's exchange (several processes)."""
        sync, checkpoints = self.sync, self.checkpoints
        assert sync is not None
        sync.want_stop = self.stop.requested
        sync.want_checkpoint = bool(checkpoints and checkpoints.due_time())

    def after_step(self, global_step: int) -> tuple[bool, bool]:
        """``(save, stop)`` after the step (only called with a checkpointer)."""
        checkpoints, sync = self.checkpoints, self.sync
        assert checkpoints is not None
        if sync is None:
            stopping = self.stop.requested
            return stopping or checkpoints.due(global_step), stopping
        stopping = sync.stop  # the processes agreed on both in the step's exchange
        return stopping or sync.checkpoint or checkpoints.due_steps(global_step), stopping
