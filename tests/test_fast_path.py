"""FastPredict: a POST /predict body that validates is answered without the app behind
it (with the answer's status); anything else reaches that app with the very body it
sent (or the error its receive raised)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from polytask.serving.fast_path import FastPredict


class Body(BaseModel):
    records: list[dict[str, float | None]]


class Inner:
    """The FastAPI app's stand-in: records what reached it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.errors: list[BaseException] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        try:
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        except Exception as err:
            self.errors.append(err)
            return
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 422, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})


def _call(app: FastPredict, parts: list[Any], path: str = "/predict") -> list[dict[str, Any]]:
    """Send ``parts`` (bytes, or an exception to raise) as one request; the messages sent."""
    scope = {"type": "http", "method": "POST", "path": path}
    queue = list(parts)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        part = queue.pop(0)
        if isinstance(part, Exception):
            raise part
        return {"type": "http.request", "body": part, "more_body": bool(queue)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def _app(refuse: bool = False) -> tuple[FastPredict, Inner, list[BaseModel]]:
    inner, seen = Inner(), []

    async def answer(request: BaseModel) -> tuple[int, bytes]:
        seen.append(request)
        return (422, b'{"detail": []}') if refuse else (200, b'{"predictions": []}')

    return FastPredict(inner, Body, answer), inner, seen


def test_a_valid_body_is_answered_here_from_its_parts() -> None:
    app, inner, seen = _app()
    sent = _call(app, [b'{"records": [{"a": 1', b".5}]}"])
    assert inner.bodies == [] and seen == [Body(records=[{"a": 1.5}])]
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"])[b"content-length"] == b"19"
    assert sent[1]["body"] == b'{"predictions": []}'


@pytest.mark.parametrize(
    "body",
    [b'{"records": [{"\\ud800": 1}]}', b'{"records": []]', b'{"records": [{"a": "x"}]}', b""],
)
def test_what_does_not_validate_reaches_the_app_with_its_body(body: bytes) -> None:
    app, inner, _ = _app()
    sent = _call(app, [body[:5], body[5:]])
    assert inner.bodies == [body] and sent[-1]["body"] == b"inner"


def test_a_refused_value_is_answered_here_and_other_paths_reach_the_app() -> None:
    app, inner, seen = _app(refuse=True)
    sent = _call(app, [b'{"records": [{"a": 2}]}'])
    assert len(seen) == 1 and inner.bodies == []
    assert sent[0]["status"] == 422 and sent[1]["body"] == b'{"detail": []}'
    _call(app, [b"{}"], path="/metadata")
    assert inner.bodies == [b"{}"] and len(seen) == 1


def test_an_error_while_the_body_streams_in_is_raised_in_the_app() -> None:
    app, inner, seen = _app()
    too_large = RuntimeError("body over the limit")
    _call(app, [b'{"records": [', too_large])
    assert inner.errors == [too_large] and seen == []
