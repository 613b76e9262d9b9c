"""Encoders: the shared trunk that turns features into a representation."""

from polytask.encoders.mlp import TabularEncoder, mlp

__all__ = ["TabularEncoder", "mlp"]
