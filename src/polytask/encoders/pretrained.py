"""The pretrained text encoder: a Hugging Face ``transformers`` backbone, fine-tuned with
the heads or frozen, token ids (N, L) -> one vector per text (N, D).

One mechanism for every ``finetune`` setting: ``all`` trains every backbone weight, ``N``
the top N transformer layers, ``none`` none (the old ``sentence`` encoder). A frozen
backbone runs in evaluation mode always, so its vectors are a function of the text:
training computes them once per split (:func:`polytask.encoders.build.cache_frozen`)
and the encoder passes such cached float vectors through; prediction, serving and
export run the backbone on token ids. The backbone's learning rate (``lr``, with
layer-wise decay) comes through :meth:`PretrainedTextEncoder.param_groups`, which the
optimiser reads; the weights live in the run's model.safetensors like any other layer.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from polytask.errors import PolytaskError
from polytask.features import pretrained
from polytask.features.text import TextColumn

#: rows per backbone call when the encoder runs without gradients on many rows
#: (evaluation, prediction, caching): attention memory grows with rows x length²
CHUNK = 128


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' load reports (the unused pooler, ...) and progress bars off."""
    from transformers.utils import logging as hf_logging

    logger = logging.getLogger("transformers")
    level, bars = logger.level, hf_logging.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        logger.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()


def _backbone(column: TextColumn) -> nn.Module:
    """The model from the column's config (random weights, which the run's weights
    replace), or from ``weights_from`` (a fitted column: the pretrained weights)."""
    pretrained.offline()
    try:
        from transformers import AutoConfig, AutoModel
    except ImportError:
        raise PolytaskError(
            "encoder 'pretrained' needs transformers; pip install 'polytask[text]'"
        ) from None
    assert column.backbone is not None
    raw = dict(column.backbone)
    config = AutoConfig.for_model(raw.pop("model_type"), **raw)
    # eager attention: batched backward (parameter-level balancing) and ONNX take it
    config._attn_implementation = "eager"
    with _quiet_transformers():
        for kwargs in ({"add_pooling_layer": False}, {}):  # only BERT-like models take it
            try:
                if column.weights_from is not None:
                    return AutoModel.from_pretrained(column.weights_from, config=config, **kwargs)
                return AutoModel.from_config(config, **kwargs)
            except TypeError:
                if not kwargs:
                    raise
    raise AssertionError("unreachable")


def layer_list(backbone: nn.Module, count: int) -> nn.ModuleList | None:
    """The backbone's stack of ``count`` transformer layers (its longest ModuleList of
    that length), wherever the architecture keeps it."""
    found = [m for m in backbone.modules() if isinstance(m, nn.ModuleList) and len(m) == count]
    return found[0] if found else None


class PretrainedTextEncoder(nn.Module):
    """Token ids (N, L) padded with the tokenizer's padding id -> (N, hidden_size)."""

    def __init__(self, column: TextColumn):
        super().__init__()
        o = column.options
        self.options = o
        self.pad_id = column.pad_id
        #: the folder the weights came from when the run's own weights may lack them
        self.weights_from = column.weights_from
        self.backbone = _backbone(column)
        self.out_features = int(column.dim)
        count = int(getattr(self.backbone.config, "num_hidden_layers", 0))
        stack = layer_list(self.backbone, count)
        #: the transformer layers, bottom first (a plain list: they are registered once,
        #: inside the backbone)
        self.layers: list[nn.Module] | None = list(stack) if stack is not None else None
        self.frozen = o.lora_r == 0 and o.finetune in ("none", 0)
        self._freeze()
        if o.gradient_checkpointing and not self.frozen:
            hf: Any = self.backbone  # a transformers PreTrainedModel
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if o.lora_r:
            self.backbone = _with_lora(self.backbone, o)
        self.train(False)

    def _freeze(self) -> None:
        o = self.options
        train_all = o.finetune == "all" and not o.lora_r
        for p in self.backbone.parameters():
            p.requires_grad_(train_all)
        if isinstance(o.finetune, int) and o.finetune and not o.lora_r:
            if self.layers is None:
                raise PolytaskError(
                    f"model.text.finetune: {o.finetune} needs the backbone's layer stack, "
                    "which this model does not show; use all or none"
                )
            for layer in self.layers[-o.finetune :]:
                layer.requires_grad_(True)

    def train(self, mode: bool = True) -> PretrainedTextEncoder:
        super().train(mode)
        if self.frozen:  # a function of the text: no dropout, so cached vectors hold
            self.backbone.train(False)
        return self

    # -- learning rates ------------------------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        """The backbone's trainable weights with their learning rates: ``lr`` for the
        top layer and everything above the layers, times ``layer_decay`` per layer down,
        the embeddings lowest (read by :func:`polytask.training.optim.make_optimizer`)."""
        o = self.options
        layers = self.layers or []
        depth = {id(p): i + 1 for i, layer in enumerate(layers) for p in layer.parameters()}
        top = len(layers)
        by_rate: dict[float, list[nn.Parameter]] = {}
        for name, p in self.backbone.named_parameters():
            if not p.requires_grad:
                continue
            level = depth.get(id(p), 0 if "embed" in name else top)
            by_rate.setdefault(o.lr * o.layer_decay ** (top - level), []).append(p)
        return [{"params": ps, "lr": lr} for lr, ps in sorted(by_rate.items(), reverse=True)]

    # -- forward -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():  # a frozen encoder's vectors, cached for training
            return x
        if not torch.is_grad_enabled() and not _exporting() and x.shape[0] > CHUNK:
            return self.embed(x)
        return self._encode(x)

    def _encode(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id
        if not _exporting():  # dynamic padding: the batch's longest text
            longest = max(int(mask.sum(dim=1).max()), 1) if ids.shape[0] else 1
            ids, mask = ids[:, :longest], mask[:, :longest]
        hidden = self.backbone(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        if self.options.pooling == "cls":
            out = hidden[:, 0]
        else:
            m = mask.unsqueeze(-1).to(hidden.dtype)
            out = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1e-9)
        return F.normalize(out, dim=-1) if self.options.normalize else out

    @torch.no_grad()
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Vectors of many texts without gradients: in chunks of :data:`CHUNK` rows of
        similar length (sorted), so each chunk pads to little."""
        lengths = (ids != self.pad_id).sum(dim=1)
        order = torch.argsort(lengths, descending=True)
        out = torch.empty(ids.shape[0], self.out_features, device=ids.device)
        for rows in order.split(CHUNK):
            out[rows] = self._encode(ids[rows]).float()
        return out


def _exporting() -> bool:
    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling())


def _with_lora(backbone: nn.Module, o: Any) -> nn.Module:
    """LoRA adapters (peft) on the attention projections peft knows for this model."""
    if o.finetune != "all":
        raise PolytaskError(
            "model.text: lora_r trains adapters in every layer; leave finetune at all"
        )
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise PolytaskError("model.text.lora_r needs peft; pip install 'polytask[text]'") from None
    config = LoraConfig(r=o.lora_r, lora_alpha=o.lora_alpha, lora_dropout=o.lora_dropout)
    return get_peft_model(backbone, config)  # type: ignore[no-any-return]
