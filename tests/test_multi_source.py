"""Tasks with their own inputs: three sources (a table, images, another table) trained
together, each through its own encoder into shared layers, batches drawn by a sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import polytask
from polytask.errors import PolytaskError
from polytask.features.sources import source_weights
from tests.test_modalities import squares

FAST = {"progress": False, "patience": None, "seed": 0, "epochs": 10, "batch_size": 32}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(n, 3))
    patients = pd.DataFrame(x, columns=["age", "bp", "hr"])
    patients["died"] = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    patients.loc[::7, "died"] = None  # some rows lack the label
    patients.to_csv(root / "patients.csv", index=False)
    z = rng.normal(size=(300, 2))
    other = pd.DataFrame({"dose": z[:, 0], "weight": z[:, 1], "effect": 3 * z[:, 0] - z[:, 1]})
    other.to_csv(root / "other.csv", index=False)
    img = squares(400, seed=2)
    np.savez(
        root / "images.npz",
        image=np.stack(img["image"]),
        quadrant=img["quadrant"].to_numpy().astype(str),
    )
    return root


def config(root, **training):
    return {
        "sources": [
            {
                "name": "patients",
                "data": {"path": str(root / "patients.csv")},
                "tasks": [{"name": "died", "kind": "binary"}],
            },
            {
                "name": "images",
                "data": {"path": str(root / "images.npz")},
                "tasks": [{"name": "quadrant", "kind": "multiclass"}],
            },
            {
                "name": "trial",
                "data": {"path": str(root / "other.csv")},
                "tasks": [{"name": "effect", "kind": "regression"}],
            },
        ],
        "model": {"hidden": [32], "image": {"widths": [8, 16]}, "dropout": 0.0},
        "training": {**FAST, **training},
    }


def test_three_inputs_three_tasks_learn_together_and_round_trip(sources, tmp_path):
    model = polytask.fit(config=config(sources), out=tmp_path / "run")
    test = model.metrics["test"]
    assert test["died"]["auroc"] > 0.9, test
    assert test["quadrant"]["accuracy"] > 0.6, test
    assert test["effect"]["r2"] > 0.8, test
    assert model.sources == ["patients", "images", "trial"]
    # predict picks the source from the columns and gives that source's tasks only
    patients = pd.read_csv(sources / "patients.csv").head(20)
    pred = model.predict(patients)
    assert list(pred.columns) == ["died", "died_proba"]
    again = polytask.load(tmp_path / "run")
    pd.testing.assert_frame_equal(again.predict(patients), pred)
    images = polytask.features.io.read_table(sources / "images.npz").head(10)
    assert again.predict(images).columns[0] == "quadrant"
    scores = again.evaluate(pd.read_csv(sources / "other.csv"))
    assert set(scores) == {"effect"} and scores["effect"]["r2"] > 0.8
    with pytest.raises(PolytaskError, match="none of the model's sources"):
        again.predict(pd.DataFrame({"nothing": [1.0]}))
    with pytest.raises(PolytaskError, match="several data sources"):
        _ = again.preprocessor


def test_gradient_balancers_treat_other_sources_tasks_as_absent(sources):
    for method in ("pcgrad", "uw"):
        model = polytask.fit(config={**config(sources, epochs=4), "balancing": {"method": method}})
        test = model.metrics["test"]
        # every task learns although two of three sit out each step
        assert test["died"]["auroc"] > 0.85, (method, test)
        assert test["quadrant"]["accuracy"] > 0.4, (method, test)
        assert test["effect"]["r2"] > 0.3, (method, test)  # the mean scores 0


def test_sampler_weights_and_draws():
    assert source_weights([100, 400], "proportional", 2.0) == pytest.approx([0.2, 0.8])
    assert source_weights([100, 400], "uniform", 2.0) == pytest.approx([0.5, 0.5])
    assert source_weights([100, 400], "temperature", 2.0) == pytest.approx([1 / 3, 2 / 3])
    from polytask.features.batches import TensorTable
    from polytask.features.preprocess import FeatureTensors
    from polytask.features.sources import MultiSourceTable

    def table(n):
        feats = FeatureTensors(torch.zeros(n, 1), torch.zeros(n, 0, dtype=torch.long))
        return TensorTable(feats, [torch.zeros(n)], [torch.ones(n, dtype=torch.bool)])

    both = MultiSourceTable([table(100), table(900)], [[0], [0]], "uniform")
    gen = torch.Generator().manual_seed(0)
    drawn = [int(b.source) for _ in range(20) for b in both.batches(10, gen)]
    assert abs(np.mean(drawn) - 0.5) < 0.05  # uniform: half the batches from each source
    both.method = "proportional"
    drawn = [int(b.source) for _ in range(20) for b in both.batches(10, gen)]
    assert abs(np.mean(drawn) - 0.9) < 0.03


def test_source_config_errors(sources):
    cfg = config(sources)
    cfg["sources"][1]["name"] = "patients"
    with pytest.raises(PolytaskError, match="same name"):
        polytask.fit(config=cfg)
    cfg = config(sources)
    cfg["tasks"] = [{"name": "x", "kind": "binary"}]
    with pytest.raises(PolytaskError, match="under its source"):
        polytask.fit(config=cfg)
    cfg = config(sources)
    cfg["sources"][2]["tasks"][0]["name"] = "efect"
    with pytest.raises(PolytaskError, match="label column 'efect'"):
        polytask.fit(config=cfg)


def test_compare_runs_single_source_baselines_for_a_multi_source_config(sources, tmp_path):
    from polytask.compare import compare, make_spec
    from polytask.config import parse_config

    cfg = parse_config(config(sources, epochs=2))
    spec = make_spec(cfg, ["ew"], ["hard"], 1, 0)
    result = compare(spec, tmp_path / "cmp", report=False)
    assert result is not None
    import json

    rows = {
        r["kind"]: r for r in json.loads((tmp_path / "cmp" / "results.json").read_text())["rows"]
    }
    single, multi = rows["single"], rows["multi"]
    assert single["seeds"] == [0] and multi["seeds"] == [0]
    # each single-task model ran on its own source and is scored on its own task
    higher = {"died.auroc": True, "quadrant.accuracy": True, "effect.mae": False}
    terms = {}
    for key, up in higher.items():
        task, metric = key.split(".")
        stl, mtl = single["test"][task][metric]["mean"], multi["test"][task][metric]["mean"]
        assert np.isfinite(stl) and stl != 0
        terms[key] = (-1 if up else 1) * (mtl - stl) / stl * 100
    assert multi["delta_m_terms"] == pytest.approx(terms)
    assert multi["delta_m"] == pytest.approx(np.mean(list(terms.values())))


def test_a_single_table_and_several_sources_prepare_into_one_type(sources):
    """One prepared-data type: per-source lists, of length one for a single table, whose
    info keeps the run-directory layout (flat for a table, by source name otherwise)."""
    from polytask.config import parse_config
    from polytask.model import build_tasks
    from polytask.multi_source import prepare_sources
    from polytask.prepare import PreparedData, prepare_single

    cfg = parse_config(config(sources))
    many = prepare_sources(cfg, build_tasks(cfg))
    table = pd.read_csv(sources / "other.csv")
    effect = {"name": "effect", "column": "effect", "kind": "regression"}
    one_cfg = parse_config({"tasks": [effect]})
    one = prepare_single(one_cfg, build_tasks(one_cfg), table, None, None)
    assert isinstance(many, PreparedData) and isinstance(one, PreparedData)
    assert len(many.preprocessors) == 3 and many.names == ["patients", "images", "trial"]
    assert len(one.preprocessors) == 1 and one.names is None
    assert one.info()["rows"] == one.rows[0]
    assert set(one.info()["rows"]) == {"train", "validation", "test"}
    assert one.info()["feature_types"] == {"dose": "numeric", "weight": "numeric"}
    assert set(many.info()["rows"]) == {"patients", "images", "trial"}
    assert many.info()["feature_types"]["trial"] == one.info()["feature_types"]
    assert sum(one.info()["rows"].values()) == len(table)
    assert one.split("train") is not None and len(one.split("train")) == one.rows[0]["train"]


def test_per_pixel_tasks_in_a_source_fail_before_any_data_is_read(sources):
    from polytask.config import parse_config
    from polytask.model import build_tasks
    from polytask.prepare import check_sources

    raw = config(sources)
    raw["sources"][1]["tasks"] = [{"name": "mask", "kind": "segmentation"}]
    cfg = parse_config(raw)
    with pytest.raises(PolytaskError, match="source 'images': task 'mask' predicts per pixel"):
        check_sources(cfg, build_tasks(cfg))
