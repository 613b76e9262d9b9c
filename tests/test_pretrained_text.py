"""encoder: pretrained on a tiny BERT folder (tests/text_models.py): fine-tuning learns,
tokenization runs once per split, finetune all / none / top N and LoRA train what they
say at the rates they say, frozen vectors are cached and equal the backbone's, every
balancer runs at both Jacobian levels, and a run is self-contained (tokenizer.json, the
backbone's weights in safetensors, no model folder needed to load it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import polytask
from polytask import balancing
from polytask.balancing.base import GradientBalancer
from polytask.config import TrainingConfig
from polytask.encoders.pretrained import PretrainedTextEncoder
from polytask.features.batches import TensorTable
from polytask.features.text import TextColumn, TextOptions
from polytask.training.optim import StepWarmup, make_optimizer
from polytask.training.steps import make_step
from tests.conftest import assert_user_error, call_cli
from tests.text_models import review_texts, tiny_bert

TASKS = ["sentiment:multiclass", "topic:multiclass"]


def frame(n: int, seed: int) -> pd.DataFrame:
    texts, sentiment, topic = review_texts(n, seed)
    return pd.DataFrame({"text": texts, "sentiment": sentiment, "topic": topic})


@pytest.fixture(scope="module")
def bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_bert") / "model"
    return tiny_bert(folder, frame(300, 0)["text"])


def config(folder: Path, **text: Any) -> dict[str, Any]:
    opts = {"encoder": "pretrained", "model": str(folder), "max_length": 32, "lr": 1e-3, **text}
    return {"features": {"text": ["text"]}, "model": {"text": opts, "hidden": [32]}}


@pytest.fixture(scope="module")
def tuned(bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    run = tmp_path_factory.mktemp("runs") / "tuned"
    df = frame(200, 1)
    model = polytask.fit(
        df, TASKS, config=config(bert), epochs=6, batch_size=32, seed=0, progress=False, out=run
    )
    return {"model": model, "run": run, "df": df}


def test_fine_tuning_learns_both_tasks_and_the_run_stands_alone(
    tuned: dict[str, Any], bert: Path, tmp_path: Path
) -> None:
    model, run = tuned["model"], tuned["run"]
    test = model.metrics["test"]
    # balanced synthetic classes: chance is 0.5 for each task
    assert test["sentiment"]["accuracy"] >= 0.8 and test["topic"]["accuracy"] >= 0.8, test
    names = sorted(p.name for p in run.iterdir())
    assert "tokenizer.json" in names and not any(n.endswith((".pkl", ".pt", ".bin")) for n in names)
    prep = json.loads((run / "preprocessing.json").read_text())
    column = prep["features"]["text"][0]
    assert (
        column["tokenizer_file"] == "tokenizer.json" and column["backbone"]["model_type"] == "bert"
    )
    # the run loads and predicts the same without the model folder it was trained from
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    shutil.move(str(bert), str(bert) + ".gone")
    try:
        again = polytask.load(moved)
        new = frame(40, 7)
        for a, b in zip(model.predict_raw(new), again.predict_raw(new), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert again.evaluate(new)["topic"]["accuracy"] == model.evaluate(new)["topic"]["accuracy"]
    finally:
        shutil.move(str(bert) + ".gone", str(bert))


def test_the_fine_tuned_weights_differ_from_the_pretrained_ones(
    tuned: dict[str, Any], bert: Path
) -> None:
    from safetensors.torch import load_file

    start = load_file(str(bert / "model.safetensors"))
    tuned_weights = tuned["model"].net.encoder.extra[0].backbone.state_dict()
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.allclose(start[key], tuned_weights[key])


def test_tokenization_runs_once_per_split(bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = TextColumn.transform

    def counted(self: TextColumn, values: pd.Series) -> np.ndarray:
        calls.append(len(values))
        return real(self, values)

    monkeypatch.setattr(TextColumn, "transform", counted)
    polytask.fit(frame(120, 2), TASKS, config=config(bert), epochs=3, batch_size=32, progress=False)
    assert len(calls) == 3 and sum(calls) == 120  # train, validation, test: once each


def test_dynamic_padding_trims_each_batch_to_its_longest_text(bert: Path) -> None:
    col = TextColumn.fit(
        "text", pd.Series(["good movie"]), TextOptions(**config(bert)["model"]["text"])
    )
    ids = torch.from_numpy(col.transform(pd.Series(["good movie", "the bad food was awful"])))
    assert ids.shape == (2, 32) and int((ids[0] != col.pad_id).sum()) == 4  # [CLS] 2 [SEP]
    enc = PretrainedTextEncoder(col)
    seen: list[tuple[int, ...]] = []
    enc.backbone.register_forward_pre_hook(
        lambda m, a, kw: seen.append(tuple(kw["input_ids"].shape)), with_kwargs=True
    )
    full = enc(ids)
    longest = int((ids != col.pad_id).sum(dim=1).max())
    assert seen == [(2, longest)] and longest < 32
    # padding never changes a text's vector: alone, the short text gives the same one
    alone = enc(ids[:1, :4])
    torch.testing.assert_close(alone, full[:1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("finetune", "trainable"), [("all", 2), (1, 1), ("none", 0)])
def test_finetune_trains_the_layers_it_names(bert: Path, finetune: Any, trainable: int) -> None:
    col = TextColumn.fit(
        "text",
        pd.Series(["good movie"]),
        TextOptions(**config(bert, finetune=finetune)["model"]["text"]),
    )
    enc = PretrainedTextEncoder(col)
    assert enc.layers is not None
    train = [all(p.requires_grad for p in layer.parameters()) for layer in enc.layers]
    assert sum(train) == trainable and train == sorted(train)  # the top ones
    embeddings = enc.backbone.embeddings.word_embeddings.weight
    assert embeddings.requires_grad == (finetune == "all")
    assert enc.frozen == (finetune == "none")


def test_backbone_rates_with_layer_decay_and_warm_up(bert: Path) -> None:
    opts = config(bert, lr=1e-4, layer_decay=0.5)["model"]["text"]
    col = TextColumn.fit("text", pd.Series(["good movie"]), TextOptions(**opts))
    enc = PretrainedTextEncoder(col)
    head = torch.nn.Linear(32, 2)
    net = torch.nn.ModuleDict({"enc": enc, "head": head})
    opt = make_optimizer(net, TrainingConfig(lr=1e-2), [], torch.device("cpu"))
    rate = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert rate[id(head.weight)] == 1e-2 and opt.param_groups[0]["lr"] == 1e-2
    layers = enc.backbone.encoder.layer
    assert rate[id(layers[1].output.dense.weight)] == pytest.approx(1e-4)  # the top layer
    assert rate[id(layers[0].output.dense.weight)] == pytest.approx(5e-5)
    assert rate[id(enc.backbone.embeddings.word_embeddings.weight)] == pytest.approx(2.5e-5)
    # no weight decay on biases and norms, in the backbone's groups too
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay[id(layers[0].output.LayerNorm.weight)] == 0.0
    assert decay[id(layers[0].output.dense.weight)] == 0.01
    # warm-up: step s of 3 runs at s / 4 of every rate, then the rates are back
    seen: list[tuple[float, float]] = []
    first, last = opt.param_groups[0], opt.param_groups[-1]  # heads; the embeddings
    opt.step = lambda: seen.append((first["lr"], last["lr"]))  # type: ignore[method-assign]
    warm = StepWarmup(3)
    for step in (1, 2, 3, 4):
        warm.step(opt, step)
    fractions = [0.25, 0.5, 0.75, 1.0]
    assert [a for a, _ in seen] == pytest.approx([1e-2 * f for f in fractions])
    assert [b for _, b in seen] == pytest.approx([2.5e-5 * f for f in fractions])
    assert (first["lr"], last["lr"]) == (1e-2, pytest.approx(2.5e-5))


def test_frozen_vectors_are_cached_once_and_equal_the_backbones(bert: Path, tmp_path: Path) -> None:
    df = frame(150, 3)
    run = tmp_path / "frozen"
    model = polytask.fit(
        df,
        TASKS,
        config=config(bert, finetune="none"),
        epochs=3,
        batch_size=32,
        seed=0,
        progress=False,
        out=run,
    )
    enc = model.net.encoder.extra[0]
    assert enc.frozen and not any(p.requires_grad for p in enc.backbone.parameters())
    # training read cached vectors; prediction runs the backbone on token ids: the test
    # split's scores agree both ways
    again = polytask.load(run)
    ids = again.preprocessor.transform(df.head(50)).extra["text"]
    assert ids.dtype == torch.int64
    cached = enc.embed(ids)
    with torch.no_grad():
        direct = torch.cat([enc(ids[i : i + 7]) for i in range(0, 50, 7)])
    torch.testing.assert_close(cached, direct, rtol=1e-5, atol=1e-6)
    assert cached.dtype == torch.float32 and enc(cached) is cached


def test_old_sentence_configs_read_as_a_frozen_pretrained_encoder() -> None:
    opts = TextOptions(encoder="sentence", sentence_model="some-model", max_length=64)
    assert (opts.encoder, opts.model, opts.finetune) == ("pretrained", "some-model", "none")
    assert opts.normalize and opts.pooling == "mean" and opts.max_length == 256
    # old runs of other encoders stored sentence_model too: it is dropped
    assert TextOptions(encoder="lstm", sentence_model="x").encoder == "lstm"


def _tiny_net(bert: Path, **text: Any) -> tuple[Any, list[Any], TensorTable]:
    from polytask.model import build_net, build_tasks
    from polytask.prepare import prepare_single

    cfg = polytask.api.build_config(config(bert, **text), TASKS, epochs=1)
    tasks = build_tasks(cfg)
    prepared = prepare_single(cfg, tasks, frame(64, 4), None, None)
    net = build_net(cfg, prepared.preprocessors, tasks)
    table = prepared.tables["train"]
    assert isinstance(table, TensorTable)
    return net, tasks, table


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_every_balancer_steps_through_the_backbone(bert: Path, level: str) -> None:
    net, tasks, table = _tiny_net(bert)
    batch = next(table.batches(32, torch.Generator().manual_seed(0)))
    query = net.encoder.extra[0].backbone.encoder.layer[0].attention.self.query.weight
    for name in balancing.METHODS:
        opts = {"weights": {"sentiment": 1.0, "topic": 2.0}} if name == "weights" else {}
        method = balancing.get(name, **opts)
        method.setup([t.name for t in tasks])
        step = make_step(net, tasks, method, level)
        for p in net.parameters():
            p.grad = None
        losses = step(batch)
        step.close()
        assert all(torch.isfinite(loss) for loss in losses), name
        if isinstance(method, GradientBalancer) or name != "gradnorm":
            assert query.grad is not None and torch.isfinite(query.grad).all(), (name, level)
            assert float(query.grad.abs().sum()) > 0, (name, level)


def test_gradient_checkpointing_gives_the_same_gradients(bert: Path) -> None:
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        net, tasks, table = _tiny_net(bert, gradient_checkpointing=checkpointing)
        net.train()
        batch = next(table.batches(32, torch.Generator().manual_seed(0)))
        out = net.forward_list(*batch.inputs)
        sum(
            t.loss(o, y, m)
            for t, o, y, m in zip(tasks, out, batch.targets, batch.masks, strict=True)
        ).backward()
        grads.append(net.encoder.extra[0].backbone.embeddings.word_embeddings.weight.grad.clone())
    assert net.encoder.extra[0].backbone.is_gradient_checkpointing
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_lora_trains_only_the_adapters_and_reloads(bert: Path, tmp_path: Path) -> None:
    run = tmp_path / "lora"
    model = polytask.fit(
        frame(80, 5),
        TASKS,
        config=config(bert, lora_r=4),
        epochs=1,
        batch_size=32,
        progress=False,
        out=run,
    )
    backbone = model.net.encoder.extra[0].backbone
    trainable = [n for n, p in backbone.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    new = frame(20, 6)
    for a, b in zip(model.predict_raw(new), polytask.load(run).predict_raw(new), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_model_that_is_not_there_is_one_clear_line(tmp_path: Path) -> None:
    df = frame(40, 0)
    data = tmp_path / "d.csv"
    df.to_csv(data, index=False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  text: {encoder: pretrained, model: no-such-model}\n")
    result = call_cli(
        [
            "train",
            "--data",
            data,
            "--task",
            "topic:multiclass",
            "--text",
            "text",
            "--config",
            cfg,
            "--out",
            tmp_path / "run",
            "--epochs",
            "1",
        ]
    )
    assert_user_error(result, "no-such-model", "model folder")


def test_export_puts_the_text_encoder_in_the_graph_and_the_tokenizer_beside_it(
    tuned: dict[str, Any], tmp_path: Path
) -> None:
    from polytask.serving.onnx_decode import OnnxPredictor, load_spec

    graph = tmp_path / "out" / "model.onnx"
    result = call_cli(["export", tuned["run"], "--format", "onnx", "--output", graph])
    assert result.rc == 0, result.err
    assert sorted(p.name for p in graph.parent.iterdir()) == [
        "model.onnx",
        "model.preprocessing.json",
        "tokenizer.json",
    ]
    spec = load_spec(graph.with_suffix(".preprocessing.json"))
    assert spec["inputs"] == [{"name": "text_text", "dtype": "int64", "shape": ["N", "L"]}]
    # the numpy reference client tokenizes with `tokenizers` and matches PyTorch
    rows = frame(200, 9)[["text"]]
    rows.loc[:4, "text"] = None  # missing texts are the empty text, as in predict
    predictor = OnnxPredictor(graph)
    got = predictor.raw(rows.to_dict(orient="records"))
    want = tuned["model"].predict_raw(rows)
    worst = max(float(np.max(np.abs(g - w))) for g, w in zip(got.values(), want, strict=True))
    print(f"ONNX text parity over 200 texts: max |onnx - torch| = {worst:.3g}")
    assert worst <= 1e-4
    columns = predictor.predict(rows.to_dict(orient="records"))
    predicted = tuned["model"].predict(rows)
    assert list(columns["topic"]) == predicted["topic"].tolist()


def test_serve_answers_with_what_predict_gives(tuned: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from polytask.serving.app import create_app

    rows = frame(6, 8)[["text"]]
    with TestClient(create_app(polytask.load(tuned["run"]))) as client:
        response = client.post("/predict", json={"records": rows.to_dict(orient="records")})
    assert response.status_code == 200, response.text
    got = [p["topic"] for p in response.json()["predictions"]]
    assert got == tuned["model"].predict(rows)["topic"].tolist()
