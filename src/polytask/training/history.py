"""The run's ``history.jsonl``: one JSON line per epoch, flushed as it is written, so a
reader (or a crash) sees every finished epoch. It is a log appended to in place inside the
run's ``RUN.partial`` folder (published atomically with the rest of the run), so it is
written line by line rather than through :func:`polytask.io.write_text`."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from polytask.io import json_line


class HistoryWriter:
    """Rewrites the file from ``records`` (a resumed run's earlier epochs), then appends
    to both. Without a path it only appends to ``records``."""

    def __init__(self, path: Path | None, records: list[dict[str, Any]]):
        self.records = records
        self._file: TextIO | None = path.open("w", encoding="utf-8") if path else None
        if self._file is not None:
            for record in records:
                self._file.write(json_line(record))
            self._file.flush()

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self._file is not None:
            self._file.write(json_line(record))
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
