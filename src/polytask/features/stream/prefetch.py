"""Run a generator on a background thread, a few items ahead of its consumer.

Reading Parquet, decoding and encoding a row group happen in pyarrow and numpy, which
release the GIL, so they overlap with the training step on the main thread. An error in
the thread is raised in the consumer (where it names the file); a consumer that stops
early (an error in training, Ctrl-C, an early ``break``) stops the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(produce: Callable[[], Iterator[T]], depth: int = 4) -> Iterator[T]:
    """The items of ``produce()``, computed on a thread at most ``depth`` items ahead."""
    if depth <= 0:
        yield from produce()
        return
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in produce():
                if not put(item):
                    return
        except BaseException as err:  # raised again in the consumer
            put(_Failure(err))
            return
        put(_DONE)

    thread = threading.Thread(target=work, name="polytask-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=10)
