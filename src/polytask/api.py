"""The Python API: ``fit`` a multi-task model on a table, ``load`` a saved run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from polytask import run_dir
from polytask import run_setup as setup
from polytask.config import RunConfig

# build_config and TaskSpec live with the config (the CLI builds configs without torch)
from polytask.config.build import TaskSpec as TaskSpec
from polytask.config.build import build_config as build_config
from polytask.errors import PolytaskError
from polytask.features.io import check_frame, read_table
from polytask.model import MultiTaskModel, build_tasks
from polytask.predict_stream import evaluate_file as evaluate_file
from polytask.predict_stream import predict_file as predict_file
from polytask.predict_stream import streams as streams
from polytask.prepare_stream import wants_streaming
from polytask.training import Callback, distributed, tracking
from polytask.training import staging as run_staging


def train_run(
    cfg: RunConfig,
    data: pd.DataFrame | None = None,
    validation: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    verbose: bool = True,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    data_root: str | Path | None = None,
) -> MultiTaskModel:
    """Train one run from a validated config (the CLI and :func:`fit` both end here).
    ``callbacks`` hook into the loop (see :class:`polytask.training.Callback`). With
    ``out`` the run trains in ``out.partial`` with checkpoints; ``resume=True`` continues
    from its last checkpoint (see :func:`resume`). Under torchrun it trains in several
    processes (see :mod:`polytask.training.distributed`). ``data_root``: where relative
    paths of a streamed table start (a resumed run's: the folder it started in)."""
    balancer = setup.check_run(cfg)
    cfg = setup.pin_architecture_options(cfg)
    out_path = Path(out) if out is not None else None
    ctx = distributed.start(cfg.training.device)  # None unless started by torchrun
    stage = run_staging.Staging(out_path, overwrite, resume, ctx)  # fail before any work
    tasks = build_tasks(cfg)
    prepared = setup.prepare(cfg, tasks, (data, validation, test), ctx, data_root)
    cfg, chosen = setup.fill_defaults(cfg, prepared)  # stated in the saved config

    cfg, balancer, race = setup.race(cfg, balancer, prepared, tasks)
    net = setup.network(cfg, prepared, tasks, pretrained=not resume)
    fingerprint = setup.fingerprint(prepared) if out_path is not None else None
    with stage.session(cfg, fingerprint) as tmp, tracking.session(cfg, callbacks) as callbacks:
        race = setup.keep_race(tmp, race)
        trainer = setup.trainer(cfg, net, tasks, balancer, prepared, tmp, verbose, callbacks, ctx)
        train, val = prepared.tables["train"], prepared.split("validation")
        if trainer.verbose:  # after every check that can fail before training
            setup.print_start(cfg, prepared, tasks, chosen)
        result = trainer.fit(train, val, stage.checkpointer, stage.resume_state)  # type: ignore[arg-type]
        net, device = trainer.net, trainer.device
        metrics, calibration = setup.scores(
            net, tasks, prepared, cfg.training.eval_batch_size, device
        )
        tracking.log_final(callbacks, metrics, result.best_epoch)
        info = setup.run_info(prepared, result, device, race)
        pres, history = prepared.preprocessors, result.history
        model = MultiTaskModel(cfg, pres, tasks, net.cpu(), metrics, history, info)
        model.calibration = calibration
        if tmp is not None and out_path is not None:
            _write_run(model, tmp, out_path)
            stage.publish(tmp)
    return model


def _write_run(model: MultiTaskModel, tmp: Path, out: Path) -> None:
    try:
        model._write(tmp)
    except OSError as err:
        raise run_dir.write_error(out, err) from None


def resume(
    out: str | Path,
    config: RunConfig | None = None,
    data: pd.DataFrame | None = None,
    validation: pd.DataFrame | None = None,
    test: pd.DataFrame | None = None,
    overwrite: bool = False,
    verbose: bool = True,
    callbacks: Sequence[Callback] = (),
) -> MultiTaskModel:
    """Continue the unfinished run ``out`` (trained in ``out.partial``) from its last
    checkpoint, with the config it was started with; a ``config`` given here must not
    differ from it. The data files of the config are read again (relative paths from the
    folder the run started in); frames given here replace them and must hold the same
    rows. Resuming a finished run is an error."""
    final = run_dir.run_of_partial(Path(out))
    saved, info = run_staging.saved_config(final)
    if config is not None:
        conflicts = run_staging.config_conflicts(saved, config)
        if conflicts:
            more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
            raise PolytaskError(
                f"a resumed run keeps its saved config, but {conflicts[0]}{more}; drop the "
                "flags that change it, or start a new run"
            )
    started_in = Path(info.get("cwd") or ".")

    streamed = wants_streaming(saved.data, started_in) and data is None  # streams again

    def frame(given: pd.DataFrame | None, path: str | None) -> pd.DataFrame | None:
        if given is not None or not path or streamed:
            return given
        return read_table(Path(path) if Path(path).is_absolute() else started_in / path)

    return train_run(
        saved,
        frame(data, saved.data.path),
        frame(validation, saved.data.validation),
        frame(test, saved.data.test),
        out=final,
        overwrite=overwrite or bool(info.get("overwrite")),
        verbose=verbose,
        callbacks=callbacks,
        resume=True,
        data_root=started_in,
    )


def fit(
    data: pd.DataFrame | str | Path | None = None,
    tasks: Sequence[TaskSpec] | Mapping[str, Any] | None = None,
    *,
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    validation: pd.DataFrame | str | Path | None = None,
    test: pd.DataFrame | str | Path | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
    verbose: bool = False,
    **options: Any,
) -> MultiTaskModel:
    """Train one model for several target columns of a table.

    ``tasks`` takes specs like ``["hospdead:binary", "slos:regression"]``, a mapping
    ``{"hospdead": "binary", "slos": {"kind": "regression", "transform": "log1p"}}``, or
    task dicts as in a config file. Keyword ``options`` override config keys, e.g.
    ``epochs=30, batch_size=128, seed=1, balancing="ew", hidden=[128, 64], drop=["id"]``.
    With ``out`` the run is also saved there. Returns a :class:`MultiTaskModel`.
    """
    cfg = build_config(config, tasks, **options)

    def frame(x: pd.DataFrame | str | Path | None) -> pd.DataFrame | None:
        if x is None:
            return None
        return check_frame(x.copy(deep=False)) if isinstance(x, pd.DataFrame) else read_table(x)

    if isinstance(data, (str, Path)):
        cfg.data.path = str(data)
        data = None
    return train_run(
        cfg,
        frame(data),
        frame(validation),
        frame(test),
        out=out,
        overwrite=overwrite,
        verbose=verbose,
    )


def load(path: str | Path) -> MultiTaskModel:
    """Load a saved run directory."""
    return MultiTaskModel.load(path)
