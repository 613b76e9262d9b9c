"""Training with several processes (``torchrun``): one global batch, shared by all.

``torchrun --nproc_per_node=N -m polytask train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each process builds the same model from the seed,
shuffles the same way and takes its contiguous shard of every global batch
(``batch_size`` is the global batch). Once per step the processes exchange, in one small
all-reduce, each task's loss sum and label count (plus two flags: a stop request and a
checkpoint due by time), so that every process knows the *global* per-task mean loss

    L_t = Σ_r n_rt l_rt / Σ_r n_rt       (n_rt labelled rows of task t on process r),

which is what one process would compute on the whole batch, even when label counts differ
between processes. Each process then back-propagates the surrogate
``L_t + c_rt (l_rt - l_rt.detach())`` with c_rt = n_rt / Σ_r n_rt: its value is the global
loss (which loss-level methods read, e.g. uncertainty weighting or FAMO) and its gradient
is this process's share of the global gradient, so the shares *sum* to the gradient of
the whole batch:

- loss-level methods: the parameter gradients are summed across processes (one
  all-reduce of the flattened gradients, like DDP; a parameter without a gradient on
  every process keeps none, as in one process);
- gradient-level methods at the parameters: the per-task trunk gradients (the (T, P)
  Jacobian blocks) are summed before the method sees them, so every process aggregates
  the same matrix and writes the same update; the heads' gradients are summed after;
- at the representation: the T x T Gramian is a sum over rows, so it is summed across
  processes (methods that need the whole matrix, such as GradDrop, gather the rows
  instead); each process back-propagates its rows of the combined direction and the
  resulting gradients are summed.

Tasks without a label on any process sit the step out, as in one process. Process 0 alone
writes the run, the history and the checkpoints and shows progress; validation runs on
every process and process 0's monitor value decides early stopping for all. With one
process none of this code runs.
"""

from __future__ import annotations

import atexit
import datetime
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from polytask.balancing.jacobian import RepresentationJacobian, TaskJacobian
from polytask.errors import PolytaskError
from polytask.features.batches import Batch, shard_bounds

T = TypeVar("T")


def world_size_from_env() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def launched_as_rank_zero() -> bool:
    """From torchrun's environment, so usable before (or without) a process group: False
    in the processes of a torchrun launch other than rank 0."""
    return os.environ.get("RANK", "0") == "0" or world_size_from_env() <= 1


def is_group_rank_zero() -> bool:
    """From the process group itself: True without one (a single process) or on its
    rank 0, however the group was started."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


@dataclass
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- collectives on small values ----------------------------------------------------------
    def all_reduce(self, t: torch.Tensor, op: Any = None) -> torch.Tensor:
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
        return t

    def broadcast_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's ``data`` on every rank."""
        size = torch.tensor([len(data) if data is not None else 0], device=self.device)
        dist.broadcast(size, src=0)
        if self.is_main and data:
            buf = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device)
        else:
            buf = torch.empty(int(size.item()), dtype=torch.uint8, device=self.device)
        if buf.numel():
            dist.broadcast(buf, src=0)
        return bytes(buf.cpu().numpy().tobytes())

    def gather(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's copy of the same-shaped ``t`` (in rank order)."""
        local = t.to(self.device)
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local)
        return [p.to(t.device) for p in parts]

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers on every rank (they start equal from the seed;
        this makes sure)."""
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)

    def run_on_main(self, fn: Callable[[], T]) -> T | None:
        """Run ``fn`` on rank 0 only; if it fails there, every rank fails too (a user error
        with its own message), so that no rank waits forever for the others."""
        result, message, error = None, b"", None
        if self.is_main:
            try:
                result = fn()
            except BaseException as err:
                error = err
                text = str(err) if isinstance(err, PolytaskError) else ""
                message = (text or f"process 0 stopped ({type(err).__name__}: {err})").encode()
        failure = self.broadcast_bytes(message)
        if error is not None:
            raise error
        if failure:
            raise PolytaskError(failure.decode())
        return result

    def monitor_from_main(self, value: float, flag: bool) -> tuple[float, bool]:
        """Rank 0's monitor value (early stopping decides the same everywhere) and whether
        any rank has ``flag`` set, in one collective."""
        buf = torch.tensor(
            [value if self.is_main else 0.0, 1.0 if flag else 0.0],
            dtype=torch.float64,
            device=self.device,
        )
        self.all_reduce(buf)
        main_value, flags = buf.tolist()
        return main_value, flags > 0


def _device_for(name: str, local_rank: int) -> torch.device:
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise PolytaskError("device 'cuda' was asked for but no GPU is available; use cpu")
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


def start(device_name: str) -> DistContext | None:
    """This process's part in a torchrun launch (None with one process): the process
    group is set up once from torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), gloo on CPU and nccl on GPU with
    one GPU per process (``cuda:LOCAL_RANK``), and taken down when the process exits."""
    world = world_size_from_env()
    if world <= 1:
        return None
    try:
        rank = int(os.environ["RANK"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        raise PolytaskError(
            "WORLD_SIZE is set but RANK is not; start several processes with torchrun "
            "(torchrun --nproc_per_node=N -m polytask train ...)"
        ) from None
    device = _device_for(device_name, local)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        atexit.register(_destroy)
    return DistContext(rank, dist.get_world_size(), local, device)


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class StepSync:
    """What the processes exchange inside one training step (see the module docstring)."""

    def __init__(self, ctx: DistContext):
        self.ctx = ctx
        #: set by the trainer before each step: this process wants to stop / checkpoint
        self.want_stop = False
        self.want_checkpoint = False
        #: after the step's loss exchange: any process wanted to stop / checkpoint
        self.stop = False
        self.checkpoint = False
        #: tasks labelled on at least one process in this step
        self.present: list[int] = []
        self._bounds = [0, 0]

    def shard(self, batch: Batch) -> Batch:
        """This process's rows of a global batch."""
        self._bounds = shard_bounds(len(batch), self.ctx.world_size)
        return batch.rows(self._bounds[self.ctx.rank], self._bounds[self.ctx.rank + 1])

    def local_batches(
        self, table: Any, batch_size: int, generator: torch.Generator
    ) -> Iterator[Batch]:
        """This process's batches of an epoch: the table knows which rows are its own (a
        slice of each global batch in memory, its own row groups when streamed) and
        where every process's rows sit in the step's global batch."""
        pairs = table.rank_batches(batch_size, generator, self.ctx.rank, self.ctx.world_size)
        for batch, bounds in pairs:
            self._bounds = bounds
            yield batch

    @staticmethod
    def _counts(batch: Batch, device: torch.device) -> torch.Tensor:
        """Per task, the units its loss averages over (labelled rows or cells)."""
        return torch.stack(
            [
                torch.tensor(float(y.numel()), device=device)
                if m is None
                else m.sum().to(device=device, dtype=torch.float64)
                for y, m in zip(batch.targets, batch.masks, strict=True)
            ]
        ).to(torch.float64)

    def _exchange(
        self, local: Sequence[torch.Tensor], batch: Batch, flags: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        device = local[0].device
        n = self._counts(batch, device)
        values = torch.stack([v.detach() for v in local]).to(torch.float64)
        values = torch.where(n > 0, values, torch.zeros_like(values))  # empty shard: no NaN
        extra = [float(self.want_stop), float(self.want_checkpoint)] if flags else []
        buf = torch.cat([values * n, n, torch.tensor(extra, dtype=torch.float64, device=device)])
        self.ctx.all_reduce(buf)
        t = len(local)
        sums, totals = buf[:t], buf[t : 2 * t]
        if flags:
            stop, ckpt = buf[2 * t :].tolist()
            self.stop, self.checkpoint = stop > 0, ckpt > 0
        mean = torch.where(totals > 0, sums / totals.clamp_min(1), torch.zeros_like(sums))
        return mean, n / totals.clamp_min(1), totals

    def losses(self, local: list[torch.Tensor], batch: Batch) -> list[torch.Tensor]:
        """Local task losses -> tensors whose value is the global loss and whose gradient
        is this process's share of the global gradient."""
        mean, share, totals = self._exchange(local, batch, flags=True)
        self.present = [i for i, v in enumerate(totals.tolist()) if v > 0]
        out = []
        for t, loss in enumerate(local):
            safe = torch.where(share[t] > 0, loss, torch.zeros_like(loss))
            part = safe * share[t].to(loss.dtype)
            # value: exactly the global mean on every process (part - part == 0)
            out.append(mean[t].to(loss.dtype) + (part - part.detach()))
        return out

    def loss_values(self, local: list[torch.Tensor], batch: Batch) -> list[torch.Tensor]:
        """The global task losses (values only; e.g. FAMO's losses after the update)."""
        mean, _, _ = self._exchange(local, batch, flags=False)
        return [mean[t].to(v.dtype) for t, v in enumerate(local)]

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        return self.ctx.all_reduce(t)

    def sum_blocks(self, blocks: list[torch.Tensor]) -> list[torch.Tensor]:
        """Sum same-shaped tensors across processes in one all-reduce."""
        flat = torch.cat([b.reshape(-1) for b in blocks])
        self.ctx.all_reduce(flat)
        parts = flat.split([b.numel() for b in blocks])
        return [part.view_as(b) for part, b in zip(parts, blocks, strict=True)]

    def sum_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum ``.grad`` across processes; a parameter keeps ``grad=None`` only where no
        process has a gradient for it (the optimiser then skips it, as in one process)."""
        by_dtype: dict[torch.dtype, list[torch.nn.Parameter]] = {}
        for p in params:
            by_dtype.setdefault(p.dtype, []).append(p)
        for dtype, group in by_dtype.items():
            device = group[0].device
            parts = [
                p.grad.reshape(-1)
                if p.grad is not None
                else torch.zeros(p.numel(), dtype=dtype, device=device)
                for p in group
            ]
            has = torch.tensor(
                [float(p.grad is not None) for p in group], dtype=dtype, device=device
            )
            flat = torch.cat([*parts, has])
            self.ctx.all_reduce(flat)
            chunks = flat.split([p.numel() for p in group] + [len(group)])
            for p, g, flag in zip(group, chunks[:-1], chunks[-1].tolist(), strict=True):
                p.grad = g.view_as(p) if flag > 0 else None

    def gather_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """(T, n_local, ...) per-sample gradients -> the (T, n_global, ...) ones of the whole
        batch (in row order) and this process's row range in them."""
        bounds = self._bounds
        most = max(hi - lo for lo, hi in itertools.pairwise(bounds))
        pad = rows.new_zeros(rows.shape[0], most, *rows.shape[2:])
        pad[:, : rows.shape[1]] = rows
        parts = self.ctx.gather(pad)
        full = torch.cat(
            [p[:, : hi - lo] for p, lo, hi in zip(parts, bounds[:-1], bounds[1:], strict=True)],
            dim=1,
        )
        lo, hi = bounds[self.ctx.rank], bounds[self.ctx.rank + 1]
        return full, lo, hi


class ShardedRows(TaskJacobian):
    """A representation-level task Jacobian whose rows are split across processes: the
    Gramian is a sum over rows, so it is summed; a method that needs the matrix gets the
    whole batch's rows (gathered) and this process back-propagates its own slice of the
    direction. Rank-one factors are not offered: the method would see local rows only."""

    def __init__(self, local: RepresentationJacobian, sync: StepSync):
        self.local, self.sync = local, sync
        self._whole: tuple[torch.Tensor, int, int] | None = None

    def _compute_gram(self) -> torch.Tensor:
        if self._whole is not None:  # gathered already: no collective needed
            return super()._compute_gram()
        return self.sync.sum_(self.local.gram())

    def matrix(self) -> torch.Tensor:
        if self._whole is None:
            self._whole = self.sync.gather_rows(self.local.rows)
        full = self._whole[0]
        return full.reshape(full.shape[0], -1)

    def apply(self, coef: np.ndarray | torch.Tensor) -> None:
        self.local.apply(coef)

    def write(self, direction: torch.Tensor) -> None:
        assert self._whole is not None
        full, lo, hi = self._whole
        self.local.write(direction.view(full.shape[1:])[lo:hi])
