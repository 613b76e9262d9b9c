"""The Gramian engine: its T x T Gramian is autograd's per-task Jacobian times its
transpose on every architecture and encoder (collected from the registries), with
dropout and missing labels, and the update it leads to equals the matrix path for every
method that needs only the Gramian (collected from the method registry)."""

from __future__ import annotations

import typing
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

import polytask.balancing as balancing
from polytask.architectures import ARCHITECTURES, ArchitectureSpec, MultiTaskNet
from polytask.balancing.base import GradientBalancer
from polytask.balancing.gramian import GramianEngine, GramianFallbackWarning
from polytask.encoders import TabularEncoder
from polytask.encoders.cnn import ImageEncoderOptions, ImageVector, SpatialImageEncoder
from polytask.encoders.pretrained import PretrainedTextEncoder
from polytask.encoders.text import text_encoder
from polytask.features.batches import Batch
from polytask.features.text import TextColumn, TextOptions
from polytask.tasks import Task, make_task
from polytask.training.steps import GradientStep
from tests.text_models import WORDS, tiny_bert

N, VOCAB, LENGTH, SIZE = 8, 12, 5, 8
#: every text encoder; ``pretrained`` twice: fine-tuning all of a (tiny, random) BERT
#: folder's weights, and only its top layer (the rest frozen, outside the Jacobian)
TEXT = [
    *(
        k
        for k in typing.get_args(TextOptions.model_fields["encoder"].annotation)
        if k != "pretrained"
    ),
    "pretrained-all",
    "pretrained-1",
]
#: every encoder a vector architecture can sit on, and the spatial one
VECTOR = ["table", *(f"text-{k}" for k in TEXT), "image"]
CASES = [
    (arch, enc)
    for arch, cls in ARCHITECTURES.items()
    for enc in (["spatial"] if cls.needs_spatial else VECTOR)
]
GRAMIAN_METHODS = [
    name
    for name, cls in balancing.METHODS.items()
    if issubclass(cls, GradientBalancer) and not cls().needs_matrix_at("parameters")
]


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pretrained-style model folder: BertModel (2 layers of width 8, dropout 0.2)."""
    return tiny_bert(tmp_path_factory.mktemp("bert"), WORDS, hidden=8, dropout=0.2)


@pytest.fixture(autouse=True)
def float64() -> Iterator[None]:
    torch.set_default_dtype(torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GramianFallbackWarning)
        yield
    torch.set_default_dtype(torch.float32)


def _tasks() -> list[Task]:
    tasks = []
    for name in ("r1", "r2", "r3"):
        t = make_task(name, "regression", [name], {"standardize": False, "transform": "none"})
        t.fitted = True
        tasks.append(t)
    cls = make_task("c", "multiclass", ["c"], {})
    cls.fit(pd.Series(["a", "b", "c"], name="c"))
    return [*tasks, cls]


def _pretrained(kind: str, folder: Path) -> PretrainedTextEncoder:
    finetune = kind.rsplit("-", 1)[1]
    opts = TextOptions(
        encoder="pretrained", model=str(folder), finetune=finetune if finetune == "all" else 1
    )
    return PretrainedTextEncoder(TextColumn.fit("t", pd.Series(WORDS), opts))


def _encoder(kind: str, hidden: list[int], folder: Path | None = None):
    image = ImageEncoderOptions(widths=[3, 4], pool=2)
    if kind == "spatial":
        return SpatialImageEncoder(2, (SIZE, SIZE), image)
    extra: list[torch.nn.Module] = []
    if kind.startswith("text-pretrained"):
        assert folder is not None
        extra.append(_pretrained(kind, folder))
    elif kind.startswith("text-"):
        opts = TextOptions(encoder=kind[5:], hidden=8, heads=2, embedding_dim=8, dropout=0.2)
        extra.append(text_encoder(VOCAB, opts, embedding_dim=3))
    elif kind == "image":
        extra.append(ImageVector(2, image))
    return TabularEncoder(3, [4], [2], hidden, "relu", 0.2, "layer", extra)


def _net(arch: str, kind: str, tasks: list[Task], folder: Path | None = None) -> MultiTaskNet:
    torch.manual_seed(0)
    cls = ARCHITECTURES[arch]
    own = cls.builds_shared_layers
    enc = _encoder(kind, [] if own else [6, 5], folder).to(torch.float64)
    extra = {"hidden": [24], "norm": "layer"} if own else {}
    net = cls(ArchitectureSpec(enc, tasks, [4], "relu", 0.2, **extra))
    with torch.no_grad():  # a generic point: no gate or weight left at its zero start
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p) if p.requires_grad else 0.0)
    return net


def _batch(kind: str, tasks: list[Task]) -> Batch:
    g = torch.Generator().manual_seed(1)
    targets = [
        torch.randint(0, 3, (N,), generator=g)
        if t.kind == "multiclass"
        else torch.randn(N, generator=g)
        for t in tasks
    ]
    masks: list[torch.Tensor | None] = [None] * len(tasks)
    masks[1] = torch.arange(N) % 3 == 0  # a few labels
    masks[2] = torch.zeros(N, dtype=torch.bool)  # none: the task sits out
    extra: tuple[torch.Tensor, ...] = ()
    if kind in ("text-lstm", "text-transformer") or kind.startswith("text-pretrained"):
        ids = torch.randint(1, VOCAB, (N, LENGTH), generator=g)
        ids[0, 3:] = 0  # padding
        extra = (ids,)
    elif kind == "text-sentence":
        extra = (torch.randn(N, 3, generator=g),)
    elif kind in ("image", "spatial"):
        extra = (torch.randn(N, 2, SIZE, SIZE, generator=g),)
    num = torch.randn(N, 3, generator=g)
    cat = torch.randint(0, 4, (N, 1), generator=g)
    if kind == "spatial":
        num, cat = num[:, :0], cat[:, :0]
    return Batch(num, cat, targets, masks, extra)


@pytest.mark.parametrize(("arch", "kind"), CASES)
def test_gramian_equals_autograd_jacobian_times_its_transpose(
    arch: str, kind: str, request: pytest.FixtureRequest
) -> None:
    tasks = _tasks()
    folder = request.getfixturevalue("bert") if kind.startswith("text-pretrained") else None
    net = _net(arch, kind, tasks, folder)
    net.train()  # dropout on: the engine and autograd read the same forward
    batch = _batch(kind, tasks)
    trunk = [p for p in net.shared_parameters() if p.requires_grad]
    engine = GramianEngine([net], trunk)
    with engine.recording():
        rep = net.representation(*batch.inputs)
    outs = net.heads_forward(rep)
    present = [t for t, m in enumerate(batch.masks) if m is None or bool(m.any())]
    assert present == [0, 1, 3]
    losses = [tasks[t].loss(outs[t], batch.targets[t], batch.masks[t]) for t in present]
    rep_grads = torch.stack([torch.autograd.grad(v, rep, retain_graph=True)[0] for v in losses])
    gram, left, _ = engine.gramian(rep, rep_grads)
    rows = []
    for v in losses:
        grads = torch.autograd.grad(v, trunk, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (g if g is not None else torch.zeros_like(p)).reshape(-1)
                    for g, p in zip(grads, trunk, strict=True)
                ]
            )
        )
    jac = torch.stack(rows)
    expected = jac @ jac.T
    assert expected.abs().max() > 1e-9  # a real Gramian, not zeros
    torch.testing.assert_close(gram, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))
    covered = len(trunk) - len(left)
    assert covered > 0, "no parameter went through a layer rule"
    if kind.startswith("text-pretrained"):  # the backbone's trainable weights are in J
        bert_net = next(m for m in net.modules() if isinstance(m, PretrainedTextEncoder))
        ids = {id(p) for p in trunk}
        tuned = [p for p in bert_net.backbone.parameters() if p.requires_grad]
        assert tuned and all(id(p) in ids for p in tuned)
        frozen = sum(not p.requires_grad for p in bert_net.backbone.parameters())
        assert (frozen > 0) == kind.endswith("-1")
    if arch == "hard" and kind in ("table", "image", "text-transformer", "text-sentence"):
        # Linear, Embedding, LayerNorm, Conv2d, BatchNorm2d have rules; only the
        # transformer's attention goes through batched autograd
        assert all(
            type(engine.owned[id(p)]).__name__ == "MultiheadAttention"
            or type(engine.owned[id(p)]).__name__ == "NonDynamicallyQuantizableLinear"
            for p in left
        ), [type(engine.owned[id(p)]).__name__ for p in left]


def _step_grads(
    method: str, engine: str, kind: str = "text-transformer", folder: Path | None = None
) -> list[torch.Tensor]:
    tasks = _tasks()
    net = _net("hard", kind, tasks, folder)
    opts = {"seed": 0} if "seed" in balancing.METHODS[method].Options.model_fields else {}
    bal = balancing.get(method, **opts)
    bal.setup([t.name for t in tasks])
    assert isinstance(bal, GradientBalancer)
    step = GradientStep(net, tasks, bal, "parameters")
    step.close()  # no chain (4 tasks over an MLP would take it): autograd or the Gramian
    if engine == "gramian":
        step.gramian = GramianEngine([net], step.trunk)
    torch.manual_seed(5)  # the same dropout masks in both steps
    step(_batch(kind, tasks))
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]


@pytest.mark.parametrize("method", GRAMIAN_METHODS)
def test_update_through_the_gramian_equals_the_matrix_path(method: str) -> None:
    by_gram, by_matrix = _step_grads(method, "gramian"), _step_grads(method, "matrix")
    assert any(g.abs().max() > 0 for g in by_matrix)
    for a, b in zip(by_gram, by_matrix, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", GRAMIAN_METHODS)
def test_update_through_the_gramian_on_a_pretrained_encoder(method: str, bert: Path) -> None:
    """BERT's top layer fine-tuned, the rest frozen (finetune: all is in the Gramian
    check above on every architecture)."""
    by_gram = _step_grads(method, "gramian", "text-pretrained-1", bert)
    by_matrix = _step_grads(method, "matrix", "text-pretrained-1", bert)
    assert any(g.abs().max() > 0 for g in by_matrix)
    for a, b in zip(by_gram, by_matrix, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_uncovered_layers_are_named_once() -> None:
    import polytask.balancing.gramian as gramian

    gramian._WARNED.discard("LSTM")
    tasks = _tasks()
    net = _net("hard", "text-lstm", tasks)
    batch = _batch("text-lstm", tasks)
    engine = GramianEngine([net], net.shared_parameters())
    for _ in range(2):
        with engine.recording():
            rep = net.representation(*batch.inputs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GramianFallbackWarning)
            engine.gramian(rep, torch.ones(2, *rep.shape))
        named = [w for w in caught if "LSTM" in str(w.message)]
        assert len(named) == (1 if _ == 0 else 0)
