"""The HTTP app: ``POST /predict``, ``GET /health``, ``GET /metadata`` over a trained run.

Every client error is a 4xx whose ``detail`` is a list of ``{"loc", "msg", "type"}``
naming the record and feature (``["body", "records", 3, "age"]``): a malformed body, a
missing feature key, a value of the wrong type or out of range, too many records are
422; a body larger than ``max_body_bytes`` is 413. Prediction runs in the micro-batcher's
worker thread, off the event loop. A ``/predict`` body that validates is answered by
:class:`~polytask.serving.fast_path.FastPredict` before FastAPI's routing; the route
below documents it and answers the rest.
"""

import json
from pathlib import Path
from typing import Any

from polytask.serving.extras import missing_extra

try:
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError as err:
    raise missing_extra("serve", err) from None

from pydantic import BaseModel

from polytask.api import load
from polytask.errors import PolytaskError
from polytask.features.preprocess import Preprocessor
from polytask.model import MultiTaskModel
from polytask.serving.batcher import BatchingOptions, MicroBatcher
from polytask.serving.fast_path import FastPredict
from polytask.serving.metadata import Health, Metadata, model_metadata
from polytask.serving.payload import (
    json_rows,
    prediction_model,
    records_frame,
    request_model,
)
from polytask.serving.tabular import check_tabular
from polytask.version import __version__

DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BODY_BYTES = 16 * 2**20
#: error messages are cut to this many characters (a bad value may be a megabyte of text)
MAX_MESSAGE = 300
#: at most this many errors are listed (a batch of bad records could list millions)
MAX_ERRORS = 20


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    detail: list[ErrorItem]


class SafeJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped (a lone surrogate in an echoed key
    cannot break the encoding) and no NaN."""

    def render(self, content: Any) -> bytes:
        return self.dump(content)

    @staticmethod
    def dump(content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode("ascii")


def _short(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def error_response(
    status: int, items: list[dict[str, Any]], more: str | None = None
) -> SafeJSONResponse:
    """``{"detail": [...]}`` with at most ``MAX_ERRORS`` items, then one that says how
    many more there are (``more``: the text where the caller stopped counting)."""
    detail = [
        {
            "loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())],
            "msg": _short(str(e.get("msg", ""))),
            "type": str(e.get("type", "value_error")),
        }
        for e in items[:MAX_ERRORS]
    ]
    if len(items) > MAX_ERRORS or more:
        text = more or f"and {len(items) - MAX_ERRORS} more"
        detail.append({"loc": ["body"], "msg": text, "type": "more_errors"})
    return SafeJSONResponse({"detail": detail}, status_code=status)


def _explain(error: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's error, with a plainer message for a feature missing from a record."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "missing" and len(loc) == 4 and loc[:2] == ("body", "records"):
        return {
            "loc": loc,
            "msg": f"feature '{loc[3]}' is missing from record {loc[2]}; every record needs "
            "every feature the model was trained on (null for a missing value)",
            "type": "missing_feature",
        }
    return error


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(status_code=413)


def _too_large_item(limit: int) -> dict[str, Any]:
    return {
        "loc": ["body"],
        "msg": f"the request body is larger than this server's limit of {limit} bytes; "
        "send fewer records per request",
        "type": "body_too_large",
    }


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes`` (by Content-Length up front, or
    while a chunked body streams in)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(413, [_too_large_item(self.max_bytes)])
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited, send)


def _first_bad_row(single: Preprocessor, column: Any) -> int:
    """The first row whose value ``single`` (one column) refuses: the shortest failing
    prefix, by bisection (slicing keeps the dtype, so a value parses alike in any prefix)."""
    lo, hi = 1, len(column)
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            single.transform(column.iloc[:mid])
        except PolytaskError:
            hi = mid
        else:
            lo = mid + 1
    return lo - 1


def locate_bad_values(
    pre: Preprocessor, frame: Any, limit: int = MAX_ERRORS
) -> list[dict[str, Any]]:
    """Every record and feature behind a conversion error of ``pre.transform(frame)``,
    record by record, up to ``limit`` + 1 of them (one more says there are more): each
    found by bisection on what is left of its column, so a batch costs a few transforms
    per bad value, not one per record."""
    found: list[tuple[int, dict[str, Any]]] = []
    for col in pre.numeric:
        single = Preprocessor(numeric=[col])
        column, start = frame[[col.name]], 0
        accepts = (
            "a number, numeric text or null"
            if col.kind == "numeric"
            else "true/false, yes/no, 1/0 or null"
        )
        while start < len(column) and len(found) <= limit:
            rest = column.iloc[start:]
            try:
                single.transform(rest)
                break
            except PolytaskError:
                row = start + _first_bad_row(single, rest)
            value = column.iloc[row, 0]
            item = {
                "loc": ["body", "records", row, col.name],
                "msg": f"{col.kind} feature '{col.name}' cannot take {value!r}; send {accepts}",
                "type": f"{col.kind}_value",
            }
            found.append((row, item))
            start = row + 1
    found.sort(key=lambda f: f[0])  # record order, as pydantic lists its errors
    return [item for _, item in found[: limit + 1]]


#: the error answers /predict documents in its OpenAPI schema
PREDICT_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorResponse, "description": "the body is larger than max_body_bytes"},
    422: {
        "model": ErrorResponse,
        "description": "a malformed body, a missing feature, a value of the wrong type, "
        "or too many records; loc names the record and feature",
    },
}


def _add_error_handlers(app: FastAPI, max_body_bytes: int) -> None:
    """Every error leaves as 413 or 422 with ``detail`` items naming the field, never 500."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> SafeJSONResponse:
        return error_response(422, [_explain(e) for e in exc.errors()])

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        if exc.status_code == 400:  # FastAPI: a body it cannot parse (bad UTF-8, too deep)
            item = {
                "loc": ["body"],
                "msg": "the body cannot be parsed as JSON; send UTF-8 JSON text",
                "type": "json_invalid",
            }
            return error_response(422, [item])
        return await http_exception_handler(request, exc)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> SafeJSONResponse:
        return error_response(413, [_too_large_item(max_body_bytes)])


def _add_info_routes(app: FastAPI, metadata: Metadata) -> None:
    @app.get("/health", response_model=Health, summary="the server is up")
    def health() -> Health:
        return Health(status="ok")

    @app.get("/metadata", response_model=Metadata, summary="tasks, outputs, features")
    def get_metadata() -> Metadata:
        return metadata


def create_app(
    model_or_run_dir: MultiTaskModel | str | Path,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    batching: BatchingOptions | None = None,
) -> FastAPI:
    """A FastAPI app serving one model (a :class:`MultiTaskModel` or a run directory).
    Records are encoded without pandas (``MultiTaskModel.predict_columns``) and
    concurrent requests share forward passes (:mod:`polytask.serving.batcher`)."""
    if max_rows < 1 or max_body_bytes < 1:
        raise PolytaskError("max_rows and max_body_bytes must be at least 1")
    model = (
        model_or_run_dir if isinstance(model_or_run_dir, MultiTaskModel) else load(model_or_run_dir)
    )
    check_tabular(model, "serve")
    pre = model.preprocessor
    request_type = request_model(pre, max_rows)
    response_type = prediction_model(model.tasks)
    metadata = model_metadata(model, max_rows, max_body_bytes)
    app = FastAPI(
        title="polytask",
        version=__version__,
        description="Predictions for every task of one multi-task model: "
        + ", ".join(t.describe() for t in model.tasks),
    )
    batcher = MicroBatcher(lambda records: json_rows(model.predict_columns(records)), batching)
    app.state.batcher = batcher

    async def answer(body: Any) -> tuple[int, bytes]:
        """200 and the predictions, or 422 naming each record and feature the model
        refused (every value parsed, but one it cannot take)."""
        try:
            predictions = await batcher.submit(body.model_dump(by_alias=True)["records"])
        except PolytaskError as err:
            frame = records_frame(body.records, pre)
            found = locate_bad_values(pre, frame) or [{"loc": ["body", "records"], "msg": str(err)}]
            more = "and more" if len(found) > MAX_ERRORS else None  # the search stops there
            return 422, bytes(error_response(422, found[:MAX_ERRORS], more).body)
        return 200, SafeJSONResponse.dump({"predictions": predictions})

    app.add_middleware(FastPredict, request_type=request_type, answer=answer)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)  # outside: it sees every body
    _add_error_handlers(app, max_body_bytes)
    _add_info_routes(app, metadata)

    @app.post(
        "/predict",
        response_model=response_type,
        responses=PREDICT_ERRORS,
        summary="predict every task for each record",
    )
    async def predict(body: request_type) -> Any:  # type: ignore[valid-type]
        """Reached by what FastPredict passes on (a body that does not validate is
        refused by FastAPI before this runs, and worded by the handlers above)."""
        status, content = await answer(body)
        return Response(content, status_code=status, media_type="application/json")

    return app
