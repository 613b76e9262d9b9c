"""Serving a trained run: the HTTP app (``create_app``, ``serve``) and ONNX export
(``export_onnx``, with a numpy reference client in :mod:`polytask.serving.onnx_decode`).

The HTTP app needs the ``serve`` extra (FastAPI, uvicorn) and export the ``export`` extra
(onnx, onnxscript); both are imported only when used, so ``import polytask.serving`` works
without them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "export_onnx", "serve"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from polytask.serving.app import create_app

        return create_app
    if name == "serve":
        from polytask.serving.server import serve

        return serve
    if name == "export_onnx":
        from polytask.serving.onnx_export import export_onnx

        return export_onnx
    raise AttributeError(f"module 'polytask.serving' has no attribute '{name}'")
