"""Latency of ``POST /predict`` against a real ``polytask serve`` process on loopback.

The demo's model (SUPPORT2: 27 admission features, in-hospital death, length of stay,
functional outcome; hidden 256-128, trained for a few epochs, since latency does not
depend on how well it learned) is saved as a run and served by ``polytask serve`` in its
own process (uvicorn, one torch thread per request). One keep-alive HTTP client in this
process then times requests of 1 record and of 256 records, interleaved round by round
with ``MultiTaskModel.predict`` called directly here on the same rows as a DataFrame
(also one torch thread), so the HTTP overhead reads as a ratio from the same run.

    python benchmarks/serve_latency.py [--rounds 10] [--requests 100] [--json]

p50 and p99 are over all timed requests (``--rounds`` x ``--requests`` per size, after a
warm-up). The client and server share the machine's cores: on a 2-core machine the
client's own work is part of every HTTP figure.

Also measured in the same run: ``predict_records([record])`` (the Python API's records
path) beside ``predict(DataFrame)``; records per second of one-record requests sent by
one client in sequence against 64 concurrent clients (a minimal asyncio HTTP/1.1 client
on keep-alive connections, so the client's own cost stays small), the server micro-
batching them; and whether the served answers equal ``predict`` on all the rows at once
(the DataFrame path) to 1e-6.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import torch

import polytask
from polytask.datasets import SUPPORT2_FEATURES, SUPPORT2_TASKS, load_support2

SIZES = (1, 256)


def train(run: Path, epochs: int) -> tuple[polytask.MultiTaskModel, pd.DataFrame]:
    df = load_support2()
    model = polytask.fit(
        df,
        SUPPORT2_TASKS,
        features=SUPPORT2_FEATURES,
        epochs=epochs,
        seed=0,
        out=run,
        progress=False,
    )
    return model, df[SUPPORT2_FEATURES]


def records_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: None if isinstance(v, float) and v != v else v for k, v in r.items()}
        for r in frame.to_dict(orient="records")
    ]


def start_server(run: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    src = str(Path(polytask.__file__).parents[1])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "polytask", "serve", str(run), "--port", "0"]
    with log.open("wb") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if " on http://" in text:
            url = text.split(" on ", 1)[1].split()[0]
            with httpx.Client(base_url=url) as client:
                while time.monotonic() < deadline:
                    try:
                        client.get("/health")
                        return proc, url
                    except httpx.TransportError:
                        time.sleep(0.05)
        if proc.poll() is not None:
            raise SystemExit(f"polytask serve exited:\n{text}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("polytask serve did not start within 120 s")


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def measure(
    model: polytask.MultiTaskModel,
    features: pd.DataFrame,
    url: str,
    rounds: int,
    requests: int,
    warmup: int,
) -> dict[int, dict[str, dict[str, float]]]:
    rng = np.random.default_rng(0)
    timings: dict[tuple[int, str], list[float]] = {
        (n, w): [] for n in SIZES for w in ("http", "direct", "records")
    }
    with httpx.Client(base_url=url, timeout=30) as client:
        for r in range(-1, rounds):  # round -1 warms up both paths
            for n in SIZES:
                count = warmup if r < 0 else requests
                batches = [
                    features.iloc[rng.choice(len(features), n, replace=False)] for _ in range(count)
                ]
                bodies = [json.dumps({"records": records_of(b)}) for b in batches]
                expected = len(batches[0])
                for body in bodies:
                    t0 = time.perf_counter()
                    response = client.post(
                        "/predict", content=body, headers={"content-type": "application/json"}
                    )
                    predictions = response.json()["predictions"]
                    elapsed = time.perf_counter() - t0
                    if response.status_code != 200 or len(predictions) != expected:
                        raise SystemExit(
                            f"bad answer: {response.status_code} {response.text[:300]}"
                        )
                    if r >= 0:
                        timings[(n, "http")].append(elapsed)
                for batch in batches:
                    t0 = time.perf_counter()
                    model.predict(batch)
                    elapsed = time.perf_counter() - t0
                    if r >= 0:
                        timings[(n, "direct")].append(elapsed)
                if n == 1:
                    for body in bodies:
                        record = json.loads(body)["records"]
                        t0 = time.perf_counter()
                        model.predict_records(record)
                        elapsed = time.perf_counter() - t0
                        if r >= 0:
                            timings[(n, "records")].append(elapsed)
    return {
        n: {w: percentiles(v) for (size, w), v in timings.items() if size == n and v} for n in SIZES
    }


async def _client(host: str, port: int, bodies: list[bytes], answers: list[bytes]) -> None:
    """One keep-alive connection sending ``bodies`` one after another."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for body in bodies:
            head = (
                f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
                f"\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            writer.write(head + body)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            payload = await reader.readexactly(length)
            if b" 200 " not in status:
                raise SystemExit(f"bad answer: {status!r} {payload[:300]!r}")
            answers.append(payload)
    finally:
        writer.close()


def throughput(url: str, bodies: list[bytes], clients: int) -> float:
    """Records per second of one-record requests from ``clients`` concurrent clients."""
    host, port = url.split("//")[1].rsplit(":", 1)
    shares = [bodies[i::clients] for i in range(clients)]
    answers: list[bytes] = []

    async def run() -> None:
        await asyncio.gather(*(_client(host, int(port), b, answers) for b in shares))

    t0 = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - t0
    assert len(answers) == len(bodies)
    return len(bodies) / elapsed


def concurrency(url: str, features: pd.DataFrame, requests: int) -> dict[str, float]:
    """Sequential against 64 concurrent clients, interleaved three times (the best of
    each: the machine's other load only ever slows a run down)."""
    records = records_of(features.iloc[:requests])
    bodies = [json.dumps({"records": [r]}).encode() for r in records]
    throughput(url, bodies[:200], 64)  # warm-up
    seq, par = [], []
    for _ in range(3):
        seq.append(throughput(url, bodies[: max(requests // 4, 100)], 1))
        par.append(throughput(url, bodies, 64))
    return {"sequential_rps": max(seq), "concurrent64_rps": max(par)}


def identical(model: polytask.MultiTaskModel, features: pd.DataFrame, url: str) -> float:
    """Largest difference between served one-record answers and ``predict`` on all the
    rows at once (the DataFrame path), over every probability and number column."""
    rows = features.iloc[:200]
    batch = model.predict(rows)
    worst = 0.0
    with httpx.Client(base_url=url, timeout=30) as client:
        for i, record in enumerate(records_of(rows)):
            got = client.post("/predict", json={"records": [record]}).json()["predictions"][0]
            for col in batch.columns:
                want = batch[col].iloc[i]
                if isinstance(want, float | np.floating):
                    worst = max(worst, abs(float(got[col]) - float(want)) / max(1.0, abs(want)))
                elif got[col] != want:
                    return float("inf")
    return worst


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    p.add_argument("--requests", type=int, default=100, help="requests per size per round")
    p.add_argument("--warmup", type=int, default=30, help="untimed requests per size first")
    p.add_argument("--epochs", type=int, default=3, help="training epochs for the model")
    p.add_argument("--json", action="store_true", help="print the figures as JSON only")
    p.add_argument("--concurrent", type=int, default=2000, help="one-record requests, 64 clients")
    a = p.parse_args()
    torch.set_num_threads(1)  # as the server: one torch thread per request
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        model, features = train(run, a.epochs)
        proc, url = start_server(run, Path(tmp) / "serve.log")
        try:
            result = measure(model, features, url, a.rounds, a.requests, a.warmup)
            extra = concurrency(url, features, a.concurrent)
            extra["max_rel_diff_vs_batch_predict"] = identical(model, features, url)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
    if a.json:
        print(json.dumps({**{str(k): v for k, v in result.items()}, **extra}, indent=2))
        return
    print(
        f"polytask {polytask.__version__}, torch {torch.__version__}, Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs; {a.rounds} x {a.requests} "
        "timed requests per size"
    )
    print()
    print(
        "| records | HTTP p50 ms | HTTP p99 ms | predict() p50 ms | predict() p99 ms "
        "| HTTP / predict (p50) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, r in result.items():
        h, d = r["http"], r["direct"]
        print(
            f"| {n} | {h['p50_ms']:.2f} | {h['p99_ms']:.2f} | {d['p50_ms']:.2f} | "
            f"{d['p99_ms']:.2f} | {h['p50_ms'] / d['p50_ms']:.2f}x |"
        )
    rec = result[1]["records"]
    print()
    print(f"predict_records, 1 record: p50 {rec['p50_ms']:.2f} ms, p99 {rec['p99_ms']:.2f} ms")
    seq, par = extra["sequential_rps"], extra["concurrent64_rps"]
    print(
        f"one-record requests: sequential {seq:.0f} records/s, 64 concurrent clients "
        f"{par:.0f} records/s ({par / seq:.1f}x)"
    )
    diff = extra["max_rel_diff_vs_batch_predict"]
    print(f"served vs batch predict: largest relative difference {diff:.2g}")


if __name__ == "__main__":
    main()
