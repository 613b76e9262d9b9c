"""Micro-batching for ``serve``: concurrent requests that arrive within a millisecond or
two share one forward pass.

Each request puts its records on a queue and awaits its answer. One worker task takes
what is queued, waits up to ``max_wait_ms`` for more while the server is under
concurrent load (the previous batch held several requests, or more are already
queued; a lone request never waits, so sequential clients see no added latency), stops
at ``max_batch`` records, and runs the batch in one worker thread (off the event loop;
one forward at a time). A batch that fails (one request's bad value) is re-run request
by request, so only the bad request gets the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Rows = list[dict[str, Any]]


class BatchingOptions(BaseModel):
    """How ``serve`` groups concurrent requests (``--max-wait-ms``, ``--max-batch``)."""

    model_config = ConfigDict(extra="forbid")

    #: the longest a request waits for others to share its forward pass (0: never)
    max_wait_ms: float = Field(1.0, ge=0, le=100)
    #: the most records in one forward pass (a larger request still runs, alone)
    max_batch: int = Field(256, ge=1)


@dataclass
class _Pending:
    records: Rows
    answer: asyncio.Future[Rows]


class MicroBatcher:
    """``await batcher.submit(records)`` -> ``run(records)``'s answer for those records,
    with concurrent submissions run together; ``run`` maps a list of records to one
    answer row per record and may raise (then each request is run alone)."""

    def __init__(self, run: Callable[[Rows], Rows], options: BatchingOptions | None = None):
        self.run = run
        self.options = options or BatchingOptions()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polytask-predict")
        self._loaded = False  # the last batch held several requests
        self._carry: _Pending | None = None  # the request that did not fit the last batch
        #: requests per forward pass so far (GET /metadata could show it; tests read it)
        self.batches: list[int] = []

    async def submit(self, records: Rows) -> Rows:
        if self._queue is None or self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._work())
        answer: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(records, answer))
        return await answer

    async def _collect(self, queue: asyncio.Queue[_Pending]) -> list[_Pending]:
        loop = asyncio.get_running_loop()
        first, self._carry = self._carry, None
        batch = [first if first is not None else await queue.get()]
        size = len(batch[0].records)
        deadline = loop.time() + self.options.max_wait_ms / 1000
        while size < self.options.max_batch:
            if not queue.empty():
                item = queue.get_nowait()
            elif self._loaded and (left := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
            else:
                break
            if size + len(item.records) > self.options.max_batch:
                self._carry = item  # first in the next batch
                break
            batch.append(item)
            size += len(item.records)
        return batch

    async def _work(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect(queue)
            self._loaded = len(batch) > 1 or not queue.empty()
            self.batches.append(len(batch))
            del self.batches[:-1000]
            await loop.run_in_executor(self._pool, self._answer, loop, batch)

    def _answer(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        """In the worker thread: one pass for the batch, else one per request."""
        records = [r for p in batch for r in p.records]
        try:
            rows = self.run(records)
        except Exception:  # one request's bad value: each request alone, own answer
            for p in batch:
                try:
                    result: Rows | BaseException = self.run(p.records)
                except Exception as err:
                    result = err
                loop.call_soon_threadsafe(_settle, p.answer, result)
            return
        start = 0
        for p in batch:
            part = rows[start : start + len(p.records)]
            start += len(p.records)
            loop.call_soon_threadsafe(_settle, p.answer, part)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _settle(future: asyncio.Future[Rows], result: Rows | BaseException) -> None:
    if future.done():  # the client went away
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
