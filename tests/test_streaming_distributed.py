"""Streamed training in two processes (gloo, spawned as torchrun would): each process
reads only its own share of the row groups, the shares together are every row group,
and in one epoch every training row is seen exactly once across the processes, with
both processes taking the same number of steps (a real ``train_run`` in two processes
then finishes, weights equal on both)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from polytask.api import train_run
from polytask.features.stream.splits import split_codes
from polytask.prepare_stream import prepare_stream
from polytask.training import distributed
from tests.test_distributed import _free_port
from tests.test_streaming import _rids, _streamed, make_rec, write_parts

ROWS, BATCH = 2000, 64


def _worker(rank: int, world: int, port: int, folder: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    ctx = distributed.start("cpu")
    assert ctx is not None
    cfg, tasks = _streamed(Path(folder), epochs=1)
    cfg.features.drop = []
    prepared = prepare_stream(cfg, tasks, rank, world)
    train, pre = prepared.tables["train"], prepared.preprocessors[0]
    seen, steps = [], 0
    for batch, bounds in train.rank_batches(BATCH, torch.Generator().manual_seed(0), rank, world):
        assert bounds[rank + 1] - bounds[rank] == len(batch)
        seen += _rids(train, pre, [batch])
        steps += 1
    share = [train.split.pieces[i] for i in train.shares[rank]]
    cfg, _ = _streamed(Path(folder), epochs=1)
    model = train_run(cfg, verbose=False)
    weight = next(iter(model.net.state_dict().values())).flatten()[:5].tolist()
    record = {
        "rows": seen,
        "steps": steps,
        "pieces": [[p.file, p.group] for p in share],
        "weight": weight,
    }
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(record))


@pytest.mark.slow
def test_two_processes_each_read_their_share_and_see_every_row_once(tmp_path: Path) -> None:
    df = make_rec(ROWS, seed=4)
    folder = write_parts(df, tmp_path / "parts", parts=2, group=125)  # 16 row groups
    args = (2, _free_port(), str(folder), str(tmp_path))
    mp.start_processes(_worker, args=args, nprocs=2, start_method="spawn", join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    codes = split_codes(np.arange(ROWS, dtype=np.uint64), 0, 0.15, 0.15)
    train_rows = sorted(np.flatnonzero(codes == 0).tolist())
    both = ranks[0]["rows"] + ranks[1]["rows"]
    assert sorted(both) == train_rows  # every training row once, across the processes
    assert not set(ranks[0]["rows"]) & set(ranks[1]["rows"])
    assert ranks[0]["steps"] == ranks[1]["steps"]
    pieces = [tuple(p) for r in ranks for p in r["pieces"]]
    assert len(pieces) == len(set(pieces)) == 16 and len(ranks[0]["pieces"]) == 8
    for r, record in enumerate(ranks):  # each process's rows come from its own row groups
        own = {tuple(p) for p in record["pieces"]}
        files = [(i // 1000, (i % 1000) // 125) for i in record["rows"]]
        assert set(files) <= own, r
    assert ranks[0]["weight"] == ranks[1]["weight"]  # one update, applied by both
