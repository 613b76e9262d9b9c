"""Tables bigger than memory (issue 14, part 1): one streamed epoch over a large
recommendation-style Parquet file against the in-memory trainer on a slice of it.

The file: ``--rows`` rows, ~30 columns: 20 dense numbers (a few with gaps), 5 integer ID
columns (1,000 to 1,000,000 values, Zipf-distributed, categorical with the default
1,000-category vocabulary), 2 text categories; three tasks: ``click`` (binary, every row),
``conversion`` (binary, labelled on clicked rows only) and ``dwell`` (regression on a log
scale, clicked rows). Row groups of ``--group-rows`` rows.

Each measurement runs in its own process (``resource.getrusage`` gives that process's
peak RSS), one after another in this run:

1. stream: ``polytask train`` (the API's ``train_run``) with ``data.streaming: true`` for
   one epoch on the whole file: peak RSS, seconds from process start to the first
   training step, training samples per second (between the end of the first step and
   the end of the last);
2. memory: the same config with ``data.streaming: false`` on a ``--slice``-row Parquet
   file of the same rows (the file's first rows): samples per second;
3. predict: ``polytask predict`` of the trained run over every row of the file into a
   Parquet file: peak RSS, rows, seconds.

    python benchmarks/scale.py --rows 10000000 --slice 1000000 --out /tmp/scale

Both trainers use one torch thread (the streamed reader runs on its own thread).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

START = time.perf_counter()

TASKS = ["click:binary", "conversion:binary", "dwell:regression:transform=log1p"]
ID_VALUES = [1_000, 10_000, 100_000, 1_000_000, 1_000_000]


def rec_chunk(n: int, seed: int) -> object:
    """``n`` rows of the synthetic log (a pyarrow Table)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, 20)).astype(np.float32)
    dense[rng.random((n, 20)) < 0.02] = np.nan  # some gaps
    cols: dict[str, object] = {f"f{i:02d}": dense[:, i] for i in range(20)}
    ids = [(rng.zipf(1.3, n) * 7919 % v).astype(np.int64) for v in ID_VALUES]
    for i, values in enumerate(ids):
        cols[f"id{i}"] = values
    cols["device"] = pa.array(rng.choice(["ios", "android", "web", "tv"], n))
    cols["country"] = pa.array(rng.choice([f"c{i}" for i in range(60)], n))
    x = np.nan_to_num(dense[:, :5]) @ np.array([0.8, -0.5, 0.3, 0.2, 0.1], dtype=np.float32)
    x += 0.4 * (ids[0] % 3 == 0)
    click = rng.random(n) < 1 / (1 + np.exp(-(x - 1.5)))
    conv = rng.random(n) < 1 / (1 + np.exp(-(np.nan_to_num(dense[:, 5]) - 1.0)))
    dwell = np.exp(1.0 + 0.5 * np.nan_to_num(dense[:, 6]) + rng.normal(0, 0.3, n))
    cols["click"] = click.astype(np.int8)
    cols["conversion"] = pa.array(np.where(click, conv, 0).astype(np.int8), mask=~click)
    cols["dwell"] = pa.array(dwell.astype(np.float32), mask=~click)
    return pa.table(cols)


def write_file(path: Path, rows: int, group: int, seed: int = 0) -> None:
    import pyarrow.parquet as pq

    chunk = 500_000
    writer = None
    for i, start in enumerate(range(0, rows, chunk)):
        table = rec_chunk(min(chunk, rows - start), seed + i)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)  # type: ignore[attr-defined]
        writer.write_table(table, row_group_size=group)
    assert writer is not None
    writer.close()


def write_slice(src: Path, dst: Path, rows: int) -> None:
    import pyarrow.parquet as pq

    f = pq.ParquetFile(src)
    with pq.ParquetWriter(dst, f.schema_arrow) as writer:
        held = 0
        for g in range(f.num_row_groups):
            if held >= rows:
                break
            t = f.read_row_group(g)
            t = t.slice(0, rows - held)
            writer.write_table(t)
            held += t.num_rows


# -- the measured processes ------------------------------------------------------------------


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_train(data: str, streaming: str, out: str, batch_size: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from polytask.api import build_config, train_run
    from polytask.training import Callback

    class Clock(Callback):
        def __init__(self) -> None:
            self.first_begin = self.first_end = self.last_end = 0.0
            self.steps = 0
            self.rows = 0

        def on_batch_begin(self, trainer, step, batch) -> None:  # type: ignore[no-untyped-def]
            if step == 1:
                self.first_begin = time.perf_counter()

        def on_batch_end(self, trainer, step, batch) -> None:  # type: ignore[no-untyped-def]
            now = time.perf_counter()
            if step == 1:
                self.first_end = now
            else:
                self.rows += len(batch)
            self.last_end = now
            self.steps = step

    cfg = build_config(tasks=TASKS, epochs=1, batch_size=batch_size, progress=False)
    cfg.data.path, cfg.data.streaming = data, streaming
    cfg.training.report = False
    clock = Clock()
    train_run(cfg, out=out, overwrite=True, verbose=False, callbacks=[clock])
    seconds = clock.last_end - clock.first_end
    return {
        "streaming": streaming,
        "first_step_s": round(clock.first_begin - START, 2),
        "steps": clock.steps,
        "samples_per_s": round(clock.rows / seconds, 1) if seconds > 0 else None,
        "total_s": round(time.perf_counter() - START, 1),
        "peak_rss_mib": round(_peak_mib(), 1),
    }


def child_predict(run: str, data: str, output: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from polytask.api import load, predict_file

    rows = predict_file(load(run), data, output)
    return {
        "rows": rows,
        "seconds": round(time.perf_counter() - START, 1),
        "peak_rss_mib": round(_peak_mib(), 1),
    }


def _run_child(*args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"child {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--slice", type=int, default=1_000_000)
    ap.add_argument("--group-rows", type=int, default=131_072)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--out", default="/tmp/polytask-scale")
    ap.add_argument("--child", nargs="+")
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        if kind == "train":
            result = child_train(rest[0], rest[1], rest[2], int(rest[3]))
        else:
            result = child_predict(*rest)
        print(json.dumps(result))
        return
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    big, small = out / f"rec-{a.rows}.parquet", out / f"rec-slice-{a.slice}.parquet"
    if not big.exists():
        t = time.perf_counter()
        write_file(big, a.rows, a.group_rows)
        print(
            f"wrote {big} ({big.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - t:.0f} s"
        )
    write_slice(big, small, a.slice)
    bs = str(a.batch_size)
    stream = _run_child("train", str(big), "true", str(out / "run-stream"), bs)
    print("stream", json.dumps(stream), flush=True)
    memory = _run_child("train", str(small), "false", str(out / "run-memory"), bs)
    print("memory", json.dumps(memory), flush=True)
    pred_out = out / "predictions.parquet"
    pred_out.unlink(missing_ok=True)
    predict = _run_child("predict", str(out / "run-stream"), str(big), str(pred_out))
    print("predict", json.dumps(predict), flush=True)
    ratio = stream["samples_per_s"] / memory["samples_per_s"]
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                "rows": a.rows,
                "slice": a.slice,
                "batch_size": a.batch_size,
                "stream_vs_memory_samples_per_s": round(ratio, 3),
                "stream_peak_rss_mib": stream["peak_rss_mib"],
                "first_step_s": stream["first_step_s"],
                "predict_peak_rss_mib": predict["peak_rss_mib"],
                "predict_rows": predict["rows"],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
