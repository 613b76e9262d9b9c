"""The encoder for a fitted preprocessor: table, text and image inputs to one representation.

Without per-pixel tasks every input becomes a vector (numeric features, categorical
embeddings, one text encoder per text column, one conv stack + global mean per image
column), joined and passed through the shared trunk (``model.trunk``). With per-pixel
tasks the single image column's feature map stays the representation, so dense heads
can decode it.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from polytask.config import ModelConfig, validate_options
from polytask.encoders.backbone import BackboneSpatialEncoder, BackboneVector
from polytask.encoders.bag import BagEmbedding
from polytask.encoders.cnn import ImageEncoderOptions, ImageVector, SpatialImageEncoder
from polytask.encoders.mlp import TabularEncoder
from polytask.encoders.numeric import NumericSpec, build_numeric_encoding
from polytask.encoders.protocol import Encoder
from polytask.encoders.text import TextOptions, text_encoder
from polytask.errors import PolytaskError
from polytask.features.preprocess import FeatureTensors, ImageColumn, Preprocessor
from polytask.features.text import TextColumn
from polytask.tasks import Task


def text_options(m: ModelConfig) -> TextOptions:
    return validate_options(TextOptions, m.text, where="model.text")


def image_options(m: ModelConfig) -> ImageEncoderOptions:
    return validate_options(ImageEncoderOptions, m.image, where="model.image")


def build_encoder(
    m: ModelConfig,
    pre: Preprocessor,
    tasks: Sequence[Task],
    hidden: Sequence[int],
    spatial: bool = False,
) -> Encoder:
    """``spatial``: keep the image's feature map as the representation (architectures
    such as MTAN ask for it; per-pixel tasks always get it)."""
    images = image_options(m)
    dense = [t for t in tasks if t.dense]
    if dense or spatial:
        if m.trunk != "mlp":
            raise PolytaskError(
                f"model.trunk '{m.trunk}' is a tabular trunk, but this model keeps the image's "
                "feature map (per-pixel tasks or its architecture); leave model.trunk at mlp"
            )
        others = [c for c in pre.columns if c not in {i.name for i in pre.images}]
        if len(pre.images) != 1 or others:
            found = (
                f"it has {len(pre.images)} image columns"
                if len(pre.images) != 1
                else f"it also has {', '.join(others[:3])}"
            )
            who = (
                f"task '{dense[0].name}' ({dense[0].kind}) predicts per pixel and needs"
                if dense
                else f"architecture '{m.architecture}' needs"
            )
            raise PolytaskError(
                f"{who} one image column as the only feature, but {found}; choose it with "
                "features.include"
            )
        col = pre.images[0]
        size = (col.shape[0], col.shape[1])
        if images.backbone != "cnn":
            return BackboneSpatialEncoder(col.channels, size, col.mean, col.std, images)
        return SpatialImageEncoder(col.channels, size, images, m.activation)
    extra: list[nn.Module] = [column_encoder(c) for c in pre.text]
    extra += [_image_vector(c, images, m.activation) for c in pre.images]
    extra += [BagEmbedding(c.cardinality, c.dim) for c in pre.bags]
    return TabularEncoder(
        numeric_width=pre.numeric_width,
        cardinalities=[c.cardinality for c in pre.categorical],
        embedding_dims=[c.dim for c in pre.categorical],
        hidden=hidden,
        activation=m.activation,
        dropout=m.dropout,
        norm=m.norm,
        extra=extra,
        trunk=m.trunk,
        trunk_options=m.trunk_options,
        numeric_encoding=numeric_encoding(m, pre),
    )


def numeric_encoding(m: ModelConfig, pre: Preprocessor) -> nn.Module | None:
    """``model.numeric_encoding`` on the preprocessor's numeric block (None: as it is)."""
    slots = pre.encodable_slots()
    edges = [e for _, e in slots if e is not None]
    spec = NumericSpec(pre.numeric_width, [i for i, _ in slots], edges)
    return build_numeric_encoding(m.numeric_encoding, m.numeric_encoding_options, spec)


def _image_vector(col: ImageColumn, options: ImageEncoderOptions, activation: str) -> nn.Module:
    """One image column as a vector: the from-scratch conv stack or a named backbone."""
    if options.backbone == "cnn":
        return ImageVector(col.channels, options, activation)
    return BackboneVector(col.channels, col.mean, col.std, options)


def column_encoder(column: TextColumn) -> nn.Module:
    """A text column's encoder: the pretrained backbone, or one trained from scratch."""
    if column.pretrained:
        from polytask.encoders.pretrained import PretrainedTextEncoder

        return PretrainedTextEncoder(column)
    return text_encoder(column.vocab_size, column.options, column.dim)


def cache_frozen(encoder: object, features: FeatureTensors) -> None:
    """Replace, in place, each input that a frozen encoder reads (``frozen`` and
    ``embed``: a pretrained text backbone with ``finetune: none``) by its vectors,
    computed once: training then never runs that encoder again, and the encoder passes
    the vectors through. Other encoders and inputs are left as they are."""
    if not isinstance(encoder, TabularEncoder):
        return
    for key, module in zip(list(features.extra), encoder.extra, strict=True):
        if getattr(module, "frozen", False):
            features.extra[key] = module.embed(features.extra[key])  # type: ignore[operator]
