"""Where one-record ``POST /predict`` time goes: the model, the app, the middleware and
uvicorn's access log, measured apart on the serve_latency benchmark's model.

    python benchmarks/serve_overhead.py [--requests 400] [--rounds 3]

In-process (no sockets): ``predict_columns`` + ``json_rows`` (the model's part), the
whole ASGI app called directly (routing, body limit, validation, micro-batcher hop,
JSON), and the app without its body-limit middleware. Over loopback: ``polytask.serving``
run by uvicorn in a child process with the access log on (what ``polytask serve`` does
at ``--log-level info``) and off, one keep-alive client in sequence. Rounds interleave
the variants; p50 over all timed requests of a variant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from serve_latency import records_of, train

import polytask
from polytask.serving.app import BodyLimit, create_app
from polytask.serving.payload import json_rows

CHILD = """
import socket, sys, torch, uvicorn
from polytask.serving.app import create_app
torch.set_num_threads(1)
app = create_app(sys.argv[1])
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); sock.listen(128)
print(sock.getsockname()[1], flush=True)
cfg = uvicorn.Config(app, log_level="info", access_log=sys.argv[2] == "on")
uvicorn.Server(cfg).run(sockets=[sock])
"""


def _asgi_call(app: Any, body: bytes) -> Any:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent = [False]

    async def receive() -> dict[str, Any]:
        if sent[0]:
            await asyncio.sleep(3600)
        sent[0] = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    return app(scope, receive, send)


def in_process(model: polytask.MultiTaskModel, records: list[dict], n: int) -> dict[str, list]:
    app = create_app(model)
    layer: Any = app.build_middleware_stack()  # the stack, built once as Starlette does
    while layer is not None and not isinstance(layer, BodyLimit):
        layer = getattr(layer, "app", None)
    bare = layer  # what is below BodyLimit: FastAPI's exception handling and the router
    times: dict[str, list[float]] = {"model": [], "app": [], "app below BodyLimit": []}
    bodies = [json.dumps({"records": [r]}).encode() for r in records[:n]]

    async def run() -> None:
        for body, record in zip(bodies, records, strict=False):
            t = time.perf_counter()
            json_rows(model.predict_columns([record]))
            times["model"].append(time.perf_counter() - t)
            t = time.perf_counter()
            await _asgi_call(app, body)
            times["app"].append(time.perf_counter() - t)
            if bare is not None:
                t = time.perf_counter()
                await _asgi_call(bare.app, body)
                times["app below BodyLimit"].append(time.perf_counter() - t)

    asyncio.run(run())
    return times


def over_loopback(run: Path, records: list[dict], n: int, access: str) -> list[float]:
    src = str(Path(polytask.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": src}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(run), access],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        out: list[float] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(120):
                try:
                    client.get("/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            bodies = [json.dumps({"records": [r]}).encode() for r in records[:n]]
            head = {"content-type": "application/json"}
            for body in bodies[:30]:
                client.post("/predict", content=body, headers=head)
            for body in bodies:
                t = time.perf_counter()
                client.post("/predict", content=body, headers=head).raise_for_status()
                out.append(time.perf_counter() - t)
        return out
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        model, features = train(run, a.epochs)
        records = records_of(features)
        got: dict[str, list[float]] = {}
        for _ in range(a.rounds):
            for k, v in in_process(model, records, a.requests).items():
                got.setdefault(k, []).extend(v)
            for access in ("on", "off"):
                got.setdefault(f"uvicorn, access log {access}", []).extend(
                    over_loopback(run, records, a.requests, access)
                )
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    for k, v in got.items():
        ms = np.asarray(v) * 1000
        print(f"{k:32s} p50 {np.percentile(ms, 50):7.3f} ms  p90 {np.percentile(ms, 90):7.3f} ms")


if __name__ == "__main__":
    main()
