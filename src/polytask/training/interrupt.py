"""Stopping training cleanly on Ctrl-C (SIGINT) or SIGTERM.

While training with checkpoints, the first signal only sets a flag; the loop finishes its
current step, writes a checkpoint and raises :class:`TrainingInterrupted`. A second
Ctrl-C stops at once (the last checkpoint written stays). Outside the main thread, where
Python cannot install signal handlers, nothing changes.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving a checkpoint. ``exit_code`` is the shell
    convention, 128 + the signal number (130 for Ctrl-C)."""

    def __init__(self, message: str, signum: int = signal.SIGINT):
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum


def interrupted(
    signum: int, epoch: int, step: int, steps: int, global_step: int
) -> TrainingInterrupted:
    """The error the loop raises once it saved a checkpoint after a stop request."""
    return TrainingInterrupted(
        f"training stopped in epoch {epoch} after step {step} of {steps} (step "
        f"{global_step} in all) and saved a checkpoint",
        signum,
    )


class StopRequest:
    def __init__(self) -> None:
        self.requested = False
        self.signum: int = signal.SIGINT

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.requested = True
        self.signum = signum


@contextmanager
def stop_requests(enabled: bool = True) -> Iterator[StopRequest]:
    """Route SIGINT and SIGTERM to a :class:`StopRequest` while the block runs."""
    stop = StopRequest()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous: dict[signal.Signals, Any] = {}
    for sig in SIGNALS:
        previous[sig] = signal.signal(sig, stop._handle)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
