"""The modifiers of any method (``ema``, ``every``), checked for every registered method
that has task weights, from the registry: EMA with factor 0 is the method itself, the
average follows its formula, every-k reuses the coefficients exactly between
recomputations (in training without a Jacobian), and the state survives a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import polytask
import polytask.balancing as balancing
from polytask import run_dir
from polytask.api import resume
from polytask.balancing.modifiers import GradientModified, modified
from polytask.errors import PolytaskError
from polytask.training import checkpoint
from polytask.training.checkpoint import read_checkpoint
from polytask.training.steps import GradientStep
from tests.conftest import assert_user_error, call_cli, make_table
from tests.test_jacobian_engine import _setup
from tests.test_resume import FIT, Crash, CrashAt

#: methods with task weights from the Gramian (their representation-level form for the
#: few that need the matrix at parameter level), and the loss-level ones
WEIGHABLE = sorted(
    n
    for n, c in balancing.METHODS.items()
    if c.level == "gradient" and not c.needs_matrix  # type: ignore[attr-defined]
)
LOSS = sorted(n for n, c in balancing.METHODS.items() if c.level == "loss")
#: methods that build their update coordinate by coordinate at both levels
NO_WEIGHTS = sorted(
    n
    for n, c in balancing.METHODS.items()
    if c.level == "gradient" and balancing.get(n).needs_matrix_at("representation")  # type: ignore[attr-defined]
)


def _get(name: str, **mods: Any) -> balancing.Balancer:
    opts: dict[str, Any] = {"weights": {"a": 1.0, "b": 2.0, "c": 0.5}} if name == "weights" else {}
    if "seed" in balancing.METHODS[name].Options.model_fields:
        opts["seed"] = 0
    bal = balancing.get(name, **opts, **mods)
    bal.setup(["a", "b", "c"])
    return bal


def _inputs(k: int) -> tuple[np.ndarray, np.ndarray]:
    gen = torch.Generator().manual_seed(k)
    g = torch.randn(3, 9, generator=gen, dtype=torch.float64) * (1 + k % 3)
    return (g @ g.T).numpy(), (torch.rand(3, generator=gen, dtype=torch.float64) + 0.2).numpy()


def _weights(bal: balancing.Balancer, k: int) -> np.ndarray:
    """One step of ``bal`` on input k: the task weights it used."""
    gram, losses = _inputs(k)
    if isinstance(bal, balancing.GradientBalancer):
        return bal.weigh(gram, losses=losses if bal.needs_losses else None)
    leaves = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in losses]
    objective = bal.combine(leaves)
    grads = torch.autograd.grad(objective, leaves, allow_unused=True)
    bal.after_update(lambda: [v.detach() * 0.9 for v in leaves])
    bal.end_epoch(dict(zip(["a", "b", "c"], losses.tolist(), strict=True)))
    return np.array([0.0 if g is None else float(g) for g in grads])


def test_every_method_with_weights_takes_the_modifiers() -> None:
    for name, cls in balancing.METHODS.items():
        if name in NO_WEIGHTS:
            with pytest.raises(PolytaskError, match="no task weights"):
                balancing.get(name, ema=0.5)
            continue
        wrapped = modified(cls)  # no method declares an option named like a modifier
        assert issubclass(wrapped, cls) and {"ema", "every"} <= set(wrapped.Options.model_fields)
        bal = balancing.get(name, **({"weights": {}} if name == "weights" else {}), every=2)
        assert "every=2" in repr(bal) and bal.name == name


@pytest.mark.parametrize("name", WEIGHABLE + LOSS)
def test_ema_zero_is_the_method_itself(name: str) -> None:
    plain, smoothed = _get(name), _get(name, ema=0.0)
    for k in range(4):
        np.testing.assert_array_equal(_weights(smoothed, k), _weights(plain, k))


@pytest.mark.parametrize("name", WEIGHABLE + LOSS)
def test_ema_averages_the_methods_weights(name: str) -> None:
    plain, smoothed = _get(name), _get(name, ema=0.75)
    avg = None
    for k in range(4):
        w = _weights(plain, k)
        avg = w if avg is None else 0.75 * avg + 0.25 * w
        np.testing.assert_allclose(_weights(smoothed, k), avg, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", WEIGHABLE + LOSS)
def test_every_k_reuses_the_coefficients_exactly(name: str) -> None:
    held, plain = _get(name, every=3), _get(name)
    for k in range(7):
        got = _weights(held, k)
        if isinstance(held, balancing.GradientBalancer):
            if k % 3 == 0:  # recomputed: what the method gives on these inputs alone
                fresh = _weights(plain, k)
        else:  # a loss-level method sees every step; the model follows step 3j's weights
            w = _weights(plain, k)
            fresh = w if k % 3 == 0 else fresh
        np.testing.assert_array_equal(got, fresh)


@pytest.mark.parametrize("name", WEIGHABLE + LOSS)
def test_modifier_state_survives_a_checkpoint(name: str) -> None:
    bal = _get(name, ema=0.5, every=2)
    for k in range(3):
        _weights(bal, k)
    saved = checkpoint.from_bytes(checkpoint.to_bytes(bal.state_dict()))
    assert saved["modifier"]["step"] == 3
    fresh = _get(name, ema=0.5, every=2)
    fresh.load_state_dict(saved)
    for k in range(3, 7):
        np.testing.assert_array_equal(_weights(fresh, k), _weights(bal, k))


@pytest.mark.parametrize("level", ["parameters", "representation"])
def test_a_reused_step_takes_no_jacobian_and_is_the_weighted_gradient(level: str) -> None:
    net, tasks, batch = _setup(t=4)
    mgda = balancing.get("mgda", every=2)
    step = GradientStep(net, tasks, mgda, level)
    step(batch)  # recomputes
    coef = np.array([mgda.last_weights[t] for t in range(4)])
    net.zero_grad(set_to_none=True)
    blocks = polytask.training.steps.trunk_jacobian_blocks
    polytask.training.steps.trunk_jacobian_blocks = None  # a reused step must not call it
    try:
        assert mgda.reuses()
        step(batch)
    finally:
        polytask.training.steps.trunk_jacobian_blocks = blocks
    got = [p.grad.clone() for p in net.shared_parameters()]
    # reference: Σ c_t ∇L_t through the trunk, each task's gradient by plain autograd
    net.zero_grad(set_to_none=True)
    outs = net.forward_list(*batch.inputs)
    total = sum(
        float(c) * t.loss(o, y, m)
        for c, t, o, y, m in zip(coef, tasks, outs, batch.targets, batch.masks, strict=True)
    )
    expected = torch.autograd.grad(total, net.shared_parameters())
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)
    step.close()


def test_modifiers_train_end_to_end_and_resume_exactly(tmp_path: Path) -> None:
    df = make_table(200, seed=2)
    uw = {"method": "uw", "ema": 0.5, "every": 2}  # a loss-level method, end to end
    model = polytask.fit(df, balancing=uw, **{**FIT, "epochs": 1})
    assert all(np.isfinite(v) for v in model.history[-1]["train"]["loss"].values())
    balancing_cfg = {"method": "nash_mtl", "ema": 0.8, "every": 3}
    whole = polytask.fit(df, balancing=balancing_cfg, out=tmp_path / "whole", **FIT)
    out = tmp_path / "crashed"
    with pytest.raises(Crash):
        polytask.api.train_run(
            polytask.build_config(balancing=balancing_cfg, **FIT),
            df,
            out=out,
            verbose=False,
            callbacks=[CrashAt(17)],
        )
    state = read_checkpoint(run_dir.partial_path(out) / run_dir.CHECKPOINT)
    assert state is not None and state["balancer"]["modifier"]["step"] == 14
    resumed = resume(out, data=df, verbose=False)
    assert resumed.metrics == whole.metrics
    for k, v in whole.net.state_dict().items():
        assert torch.equal(v, resumed.net.state_dict()[k]), k


def test_a_method_without_weights_at_its_level_is_an_error_before_training() -> None:
    df = make_table(60, seed=1)
    with pytest.raises(PolytaskError, match=r"db_mtl.*no task weights"):
        polytask.fit(df, balancing={"method": "db_mtl", "ema": 0.5}, **{**FIT, "epochs": 1})
    with pytest.raises(PolytaskError, match=r"every.*greater than or equal to 1"):
        polytask.build_config(balancing={"method": "mgda", "every": 0})
    assert NO_WEIGHTS == ["excess_mtl", "graddrop", "trimmed_mean"]
    assert isinstance(balancing.get("db_mtl", every=2), GradientModified)
    bal = {"method": "db_mtl", "every": 2, "jacobian": "representation"}  # it has weights there
    model = polytask.fit(df, balancing=bal, **{**FIT, "epochs": 1})
    assert np.isfinite(list(model.history[-1]["train"]["loss"].values())).all()


def test_the_readme_example_runs_and_prints_what_it_says(capsys: pytest.CaptureFixture) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("### Modifiers of any method")[1].split("```python\n")[1].split("```")[0]
    exec(compile(block, "README.md", "exec"), {})
    said = block.split("items()})  # ")[1].splitlines()[0]  # rounded: the solver's last bit varies
    assert capsys.readouterr().out.strip() == said


def test_cli_trains_a_new_method_with_modifiers_and_rejects_a_bad_one(tmp_path: Path) -> None:
    make_table(120, seed=4).to_csv(tmp_path / "d.csv", index=False)
    args = ["train", "--data", tmp_path / "d.csv", "--task", "y_reg:regression",
            "--task", "y_bin:binary", "--drop", "id", "--epochs", "1", "--quiet",
            "--no-report"]  # fmt: skip
    good = "balancing: {method: fairgrad, alpha: 2.0, ema: 0.5, every: 2}\nmodel: {hidden: [8]}\n"
    (tmp_path / "good.yaml").write_text(good, encoding="utf-8")
    result = call_cli([*args, "--config", tmp_path / "good.yaml", "--out", tmp_path / "run"])
    assert result.rc == 0, result.err
    saved = (tmp_path / "run" / "config.yaml").read_text(encoding="utf-8")
    assert "ema: 0.5" in saved and "every: 2" in saved
    (tmp_path / "bad.yaml").write_text("balancing: {method: krum, every: 0}\n", encoding="utf-8")
    bad = call_cli([*args, "--config", tmp_path / "bad.yaml", "--out", tmp_path / "r2"])
    assert_user_error(bad, "every")
    (tmp_path / "no.yaml").write_text("balancing: {method: graddrop, ema: 0.5}\n", encoding="utf-8")
    no = call_cli([*args, "--config", tmp_path / "no.yaml", "--out", tmp_path / "r3"])
    assert_user_error(no, "graddrop", "drop ema and every")
