"""``polytask serve``: bind the socket, then run the app under uvicorn."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import torch

from polytask.errors import PolytaskError
from polytask.serving.extras import missing_extra


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or one line saying why not (port taken, unknown host)."""
    if not 0 <= port <= 65535:
        raise PolytaskError(f"`port` {port} is not a port number; use 1-65535 (0: any free)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as err:
        raise PolytaskError(f"cannot listen on '{host}' ({err}); check --host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        reason = err.strerror or str(err)
        raise PolytaskError(
            f"cannot listen on {host}:{port} ({reason}); choose another --port or --host"
        ) from None
    sock.set_inheritable(True)
    return sock


def serve(
    run: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_rows: int | None = None,
    max_body_bytes: int | None = None,
    threads: int = 1,
    log_level: str = "info",
    batching: dict[str, Any] | None = None,
) -> None:
    """Serve ``run`` over HTTP until Ctrl-C (then returns) or SIGTERM (then the process
    ends with that signal, after a graceful shutdown).

    ``threads`` is torch's intra-op thread count: forward passes run one at a time in
    the micro-batcher's thread, so one torch thread (the default) leaves the other
    cores to the HTTP work; raise it for few, large batches. ``batching``: the
    :class:`~polytask.serving.batcher.BatchingOptions` (``max_wait_ms``, ``max_batch``)."""
    try:
        import uvicorn
    except ImportError as err:
        raise missing_extra("serve", err) from None
    from polytask.config import validate_options
    from polytask.serving.app import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ROWS, create_app
    from polytask.serving.batcher import BatchingOptions

    if threads < 1:
        raise PolytaskError(f"--threads {threads} must be at least 1")
    if max_rows is not None and max_rows < 1:
        raise PolytaskError(f"--max-rows {max_rows} must be at least 1")
    torch.set_num_threads(threads)
    app = create_app(
        run,
        max_rows=DEFAULT_MAX_ROWS if max_rows is None else max_rows,
        max_body_bytes=DEFAULT_MAX_BODY_BYTES if max_body_bytes is None else max_body_bytes,
        batching=validate_options(BatchingOptions, batching or {}, where="serve batching"),
    )
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"serving {run} on http://{shown}:{bound} (API docs at /docs); Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=10)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down cleanly, then re-raised it
        print("stopped", file=sys.stderr)
    finally:
        sock.close()
