"""A ``POST /predict`` whose body validates, answered under FastAPI's request machinery.

FastAPI's route costs most of a one-record request's time on the event loop (its
request object, dependency solving, ``json.loads`` then validation, the response
classes), which caps the records per second a micro-batching server reaches. This ASGI
middleware reads the body, validates it with pydantic straight from the bytes
(``model_validate_json``) and sends the answer itself (the predictions, or the 422 for
a value the model refuses). Whatever it does not answer goes on, with the body it read,
to the FastAPI route, which documents ``/predict`` (OpenAPI) and words the errors of
validation: another path or method, a body that does not validate (also one the JSON
parser refuses and ``json.loads`` would take, such as a lone surrogate escape), a body
the server refuses while it streams in (the error ``receive`` raised is raised again
there, where its handler is).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: the validated request -> the response's status and body (bytes of JSON)
Answer = Callable[[BaseModel], Awaitable[tuple[int, bytes]]]


class FastPredict:
    """ASGI middleware for ``POST /predict`` (see the module's docstring)."""

    def __init__(self, app: ASGIApp, request_type: type[BaseModel], answer: Answer):
        self.app = app
        self.request_type = request_type
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/predict":
            await self.app(scope, receive, send)
            return
        messages, error = await _read_body(receive)
        request = None
        if error is None and messages[-1]["type"] == "http.request":
            request = self._validate(b"".join(m.get("body", b"") for m in messages))
        if request is None:
            await self.app(scope, _replay(messages, error, receive), send)
            return
        status, content = await self.answer(request)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", b"%d" % len(content)),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    def _validate(self, body: bytes) -> BaseModel | None:
        try:
            return self.request_type.model_validate_json(body)
        except ValidationError:
            return None


async def _read_body(receive: Receive) -> tuple[list[Message], Exception | None]:
    """The request's messages up to the last body part or a disconnect, and the error
    ``receive`` raised instead, if it did (a body over the size limit)."""
    messages: list[Message] = []
    while True:
        try:
            message = await receive()
        except Exception as err:
            return messages, err
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages, None


def _replay(messages: list[Message], error: Exception | None, receive: Receive) -> Receive:
    """``receive`` that hands out ``messages`` first, then raises ``error`` if there was
    one, then waits on the connection."""
    pending = list(messages)

    async def again() -> Message:
        if pending:
            return pending.pop(0)
        if error is not None:
            raise error
        return await receive()

    return again
