"""The Python API: ``fit`` a multi-task model on a table, ``load`` a saved run."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polytask import run_dir
from polytask.architectures import MultiTaskNet, architecture_class
from polytask.balancing import get as get_balancer
from polytask.balancing.base import Balancer
from polytask.balancing.modifiers import check_level
from polytask.config import RunConfig

# build_config and TaskSpec live with the config (the CLI builds configs without torch)
from polytask.config.build import TaskSpec as TaskSpec
from polytask.config.build import build_config as build_config
from polytask.encoders.backbone import load_pretrained
from polytask.encoders.build import cache_frozen, image_options, text_options
from polytask.encoders.image_weights import weights_path
from polytask.encoders.resnet import BACKBONES
from polytask.errors import PolytaskError
from polytask.evaluation.start import start_lines
from polytask.features.augment import Augment
from polytask.features.batches import TensorTable
from polytask.features.io import check_frame, read_table
from polytask.features.pretrained import model_folder
from polytask.metrics.corrections import fit_corrections
from polytask.metrics.scoring import score, split_outputs
from polytask.model import MultiTaskModel, build_net, build_tasks
from polytask.multi_source import prepare_sources
from polytask.predict_stream import evaluate_file as evaluate_file
from polytask.predict_stream import predict_file as predict_file
from polytask.predict_stream import streams as streams
from polytask.prepare import PreparedData, prepare_single
from polytask.prepare_stream import prepare_stream, wants_streaming
from polytask.tasks import Task
from polytask.training import Callback, Trainer, distributed, tracking
from polytask.training import staging as run_staging
from polytask.training.trainer import TrainResult


def _check_run(cfg: RunConfig) -> Balancer:
    """Everything that can fail without data fails here, before any work: the tasks,
    the balancing method, the encoder options and the tracking package."""
    if not cfg.tasks:
        raise PolytaskError(
            "no tasks given; add one to `tasks` as COLUMN:KIND (e.g. price:regression)"
        )
    names = [t.name for t in cfg.tasks]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise PolytaskError(f"task name '{sorted(dup)[0]}' is used twice; task names must differ")
    balancer = get_balancer(cfg.balancing.method, **cfg.balancing.options)
    check_level(balancer, cfg.balancing.jacobian)
    text = text_options(cfg.model)
    if text.encoder == "pretrained":
        model_folder(text.model)  # a model that is not there fails before the data is read
    images = image_options(cfg.model)
    if images.weights_wanted:  # the weights file is there (the error says where to put it)
        weights_path(BACKBONES[images.backbone], images.pretrained)
    tracking.check_available(cfg.tracking)
    return balancer


def _prepare(
    cfg: RunConfig,
    tasks: list[Task],
    frames: tuple[pd.DataFrame | None, pd.DataFrame | None, pd.DataFrame | None],
    ctx: distributed.DistContext | None,
    root: str | Path | None = None,
) -> PreparedData:
    """The run's data, one source or several: the same prepared type either way."""
    if not cfg.multi_source:
        folder = Path(root) if root else None
        if all(f is None for f in frames) and wants_streaming(cfg.data, folder):
            rank, world = (0, 1) if ctx is None else (ctx.rank, ctx.world_size)
            return prepare_stream(cfg, tasks, rank, world, folder)
        return prepare_single(cfg, tasks, *frames)
    if any(f is not None for f in frames):
        raise PolytaskError("a config with sources reads each source's data itself")
    if ctx is not None:
        raise PolytaskError("a multi-source model trains in one process; run it without torchrun")
    return prepare_sources(cfg, tasks)


def _print_start(cfg: RunConfig, prepared: PreparedData, tasks: list[Task]) -> None:
    """Rows per split, inferred feature types, tasks and their labels, before training
    (on stderr, with the progress bar and the epoch lines)."""
    import sys

    if prepared.names is None:
        lines = start_lines(
            tasks, prepared.rows[0], prepared.feature_types[0], prepared.split("train")
        )
        print("\n".join(lines), file=sys.stderr)
        return
    for source, rows, types in zip(cfg.sources, prepared.rows, prepared.feature_types, strict=True):
        own = {t.name for t in source.tasks}
        lines = start_lines([t for t in tasks if t.name in own], rows, types, None)
        print(f"source {source.name}: " + "\n".join(lines), file=sys.stderr)


def _augment(cfg: RunConfig, prepared: PreparedData, tasks: list[Task]) -> Augment | None:
    """The training batches' image augmentation that ``model.image`` asks for, if any."""
    images = image_options(cfg.model)
    if not images.flip and images.crop is None:
        return None
    pres = prepared.preprocessors
    if len(pres) != 1 or not pres[0].images:
        raise PolytaskError(
            "model.image.flip/crop augment image columns, but this model has none (or has "
            "several data sources); drop the option"
        )
    first = len(pres[0].text)  # Batch.extra holds the text columns, then the image ones
    slots = list(range(first, first + len(pres[0].images)))
    dense = [i for i, t in enumerate(tasks) if t.dense]
    return Augment(slots, dense, images.flip, images.crop, cfg.training.seed)


def _scores(
    net: MultiTaskNet,
    tasks: list[Task],
    prepared: PreparedData,
    batch_size: int,
    device: torch.device,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The corrections fitted on validation (the run's calibration.json), then every
    split's scores with them (splits without rows left out)."""
    splits = {"validation": prepared.split("validation"), "test": prepared.split("test")}
    calibration = fit_corrections(net, tasks, splits, batch_size, device)
    return _final_metrics(net, tasks, prepared, batch_size, device), calibration


def _final_metrics(
    net: MultiTaskNet,
    tasks: list[Task],
    prepared: PreparedData,
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """Every split's scores with the trained network (splits without rows left out)."""
    metrics: dict[str, Any] = {}
    for split in prepared.tables:
        table = prepared.split(split)
        if table is not None:
            outs, targets, masks = split_outputs(net, table, batch_size, device)
            metrics[split] = score(tasks, outs, targets, masks)
    return metrics


def _cache_frozen(net: MultiTaskNet, prepared: PreparedData) -> None:
    """A frozen encoder's vectors, computed once per split before training (see
    :func:`polytask.encoders.build.cache_frozen`)."""
    encoder = getattr(net, "encoder", None)
    for table in prepared.tables.values():
        if isinstance(table, TensorTable):
            cache_frozen(encoder, table.features)


def _run_info(prepared: PreparedData, result: TrainResult, device: torch.device) -> dict[str, Any]:
    """The run's info file, less the versions that ``MultiTaskModel`` adds."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **prepared.info(),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.seconds, 3),
        "device": str(device),
    }


def _pin_architecture_options(cfg: RunConfig) -> RunConfig:
    """The config with the architecture's defaults that depend on other keys stated
    (see :meth:`MultiTaskNet.pinned_options`), so the saved run loads as it trained."""
    m = cfg.model
    pinned = architecture_class(m.architecture).pinned_options(
        dict(m.options), list(m.hidden), len(cfg.tasks)
    )
    if pinned == m.options:
        return cfg
    return cfg.model_copy(update={"model": m.model_copy(update={"options": pinned})})


def _fingerprint(prepared: PreparedData) -> str:
    """What resuming checks: a streamed table's files, else a hash of the frames read."""
    return prepared.fingerprint or run_staging.data_fingerprint(*prepared.frames)


def _network(
    cfg: RunConfig, prepared: PreparedData, tasks: list[Task], pretrained: bool
) -> MultiTaskNet:
    """The seeded network, with its backbone's pretrained weights (a resumed run has its
    own in its checkpoint instead) and frozen encoders' vectors cached."""
    torch.manual_seed(cfg.training.seed)
    net = build_net(cfg, prepared.preprocessors, tasks)
    if pretrained:
        load_pretrained(net)
    _cache_frozen(net, prepared)
    return net


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
    balancer = _check_run(cfg)
    cfg = _pin_architecture_options(cfg)
    out_path = Path(out) if out is not None else None
    ctx = distributed.start(cfg.training.device)  # None unless started by torchrun
    stage = run_staging.Staging(out_path, overwrite, resume, ctx)  # fail before any work
    tasks = build_tasks(cfg)
    prepared = _prepare(cfg, tasks, (data, validation, test), ctx, data_root)
    net = _network(cfg, prepared, tasks, pretrained=not resume)
    fingerprint = _fingerprint(prepared) if out_path is not None else None
    b = cfg.balancing
    with stage.session(cfg, fingerprint) as tmp, tracking.session(cfg, callbacks) as callbacks:
        trainer = Trainer(
            net,
            tasks,
            balancer,
            cfg.training,
            history_path=tmp / run_dir.HISTORY if tmp is not None else None,
            verbose=verbose,
            jacobian=b.jacobian,
            log_every=b.log_every,
            callbacks=list(callbacks),
            distributed=ctx,
            augment=_augment(cfg, prepared, tasks),
        )
        train, val = prepared.tables["train"], prepared.split("validation")
        if trainer.verbose:  # after every check that can fail before training
            _print_start(cfg, prepared, tasks)
        result = trainer.fit(train, val, stage.checkpointer, stage.resume_state)  # type: ignore[arg-type]
        net, device = trainer.net, trainer.device
        metrics, calibration = _scores(net, tasks, prepared, cfg.training.eval_batch_size, device)
        tracking.log_final(callbacks, metrics, result.best_epoch)
        info = _run_info(prepared, result, device)
        pres, history = prepared.preprocessors, result.history
        model = MultiTaskModel(cfg, pres, tasks, net.cpu(), metrics, history, info)
        model.calibration = calibration
        if tmp is not None and out_path is not None:
            try:
                model._write(tmp)
            except OSError as err:
                raise run_dir.write_error(out_path, err) from None
            stage.publish(tmp)
    return model


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
