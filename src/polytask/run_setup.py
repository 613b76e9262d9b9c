"""What a training run does around the trainer: the checks that need no data, the
data, the table-fitted defaults, the network, the race of ``balancing: auto``, and the
scores and info of the trained run (:func:`polytask.api.train_run` calls them in order)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polytask import run_dir
from polytask.architectures import MultiTaskNet, architecture_class
from polytask.auto import AUTO
from polytask.auto.fit import check_auto
from polytask.auto.fit import resolve as race_methods
from polytask.balancing import get as get_balancer
from polytask.balancing.base import Balancer
from polytask.balancing.modifiers import check_level
from polytask.config import RunConfig, table_defaults

# build_config and TaskSpec live with the config (the CLI builds configs without torch)
from polytask.encoders.backbone import load_pretrained
from polytask.encoders.build import cache_frozen, image_options, text_options
from polytask.encoders.image_weights import weights_path
from polytask.encoders.resnet import BACKBONES
from polytask.errors import PolytaskError
from polytask.evaluation.start import start_lines
from polytask.features.augment import Augment
from polytask.features.batches import TensorTable
from polytask.features.preprocess import Preprocessor
from polytask.features.pretrained import model_folder
from polytask.io import write_json
from polytask.metrics.corrections import fit_corrections
from polytask.metrics.scoring import score, split_outputs
from polytask.model import build_net
from polytask.multi_source import prepare_sources
from polytask.prepare import PreparedData, prepare_single
from polytask.prepare_stream import prepare_stream, wants_streaming
from polytask.tasks import Task
from polytask.training import Callback, Trainer, distributed, tracking
from polytask.training import staging as run_staging
from polytask.training.trainer import TrainResult


def check_run(cfg: RunConfig) -> Balancer | None:
    """Everything that can fail without data fails here, before any work: the tasks,
    the balancing method (None for ``auto``: the race picks it), the encoder options and
    the tracking package."""
    if not cfg.tasks:
        raise PolytaskError(
            "no tasks given; add one to `tasks` as COLUMN:KIND (e.g. price:regression)"
        )
    names = [t.name for t in cfg.tasks]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise PolytaskError(f"task name '{sorted(dup)[0]}' is used twice; task names must differ")
    balancer = None
    if cfg.balancing.method == AUTO:
        check_auto(cfg)
    else:
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


def prepare(
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


def fill_defaults(cfg: RunConfig, prepared: PreparedData) -> tuple[RunConfig, str | None]:
    """The config with ``auto`` training keys chosen from the training rows and features
    (:mod:`polytask.config.table_defaults`), and the start summary's line saying so."""
    rows = sum(r.get("train", 0) for r in prepared.rows)
    features = sum(len(t) for t in prepared.feature_types)
    training, chosen = table_defaults.fill(cfg.training, rows, features)
    if not chosen:
        return cfg, None
    line = table_defaults.describe(chosen, rows, features)
    return cfg.model_copy(update={"training": training}), line


def print_start(
    cfg: RunConfig, prepared: PreparedData, tasks: list[Task], chosen: str | None
) -> None:
    """Rows per split, inferred feature types, tasks and their labels, the training keys
    chosen from the table, before training (on stderr, with the progress bar)."""
    import sys

    if chosen:
        print(chosen, file=sys.stderr)
    if prepared.names is None:
        lines = start_lines(
            tasks, prepared.rows[0], prepared.feature_types[0], prepared.split("train")
        )
        lines += cyclical_lines(cfg, prepared.preprocessors[0])
        print("\n".join(lines), file=sys.stderr)
        return
    for source, rows, types in zip(cfg.sources, prepared.rows, prepared.feature_types, strict=True):
        own = {t.name for t in source.tasks}
        lines = start_lines([t for t in tasks if t.name in own], rows, types, None)
        print(f"source {source.name}: " + "\n".join(lines), file=sys.stderr)


def cyclical_lines(cfg: RunConfig, pre: Preprocessor) -> list[str]:
    """The cyclical columns and their periods, each said configured or inferred."""
    found = [
        f"{c.name} (period {c.period:g}"
        + (")" if c.name in cfg.features.cyclical else ", inferred from its name)")
        for c in pre.numeric
        if c.period
    ]
    return [f"cyclical as sin and cos: {', '.join(found)}"] if found else []


def augment(cfg: RunConfig, prepared: PreparedData, tasks: list[Task]) -> Augment | None:
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


def scores(
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
    return final_metrics(net, tasks, prepared, batch_size, device), calibration


def final_metrics(
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


def cache_frozen_splits(net: MultiTaskNet, prepared: PreparedData) -> None:
    """A frozen encoder's vectors, computed once per split before training (see
    :func:`polytask.encoders.build.cache_frozen`)."""
    encoder = getattr(net, "encoder", None)
    for table in prepared.tables.values():
        if isinstance(table, TensorTable):
            cache_frozen(encoder, table.features)


def run_info(
    prepared: PreparedData,
    result: TrainResult,
    device: torch.device,
    race: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run's info file, less the versions that ``MultiTaskModel`` adds (and the
    winner of ``balancing: auto``'s race, whose record is race.json)."""
    won = {"balancing_race": {"winner": race["winner"], "file": run_dir.RACE}} if race else {}
    return won | {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **prepared.info(),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.seconds, 3),
        "device": str(device),
    }


def pin_architecture_options(cfg: RunConfig) -> RunConfig:
    """The config with the architecture's defaults that depend on other keys stated
    (see :meth:`MultiTaskNet.pinned_options`), so the saved run loads as it trained."""
    m = cfg.model
    pinned = architecture_class(m.architecture).pinned_options(
        dict(m.options), list(m.hidden), len(cfg.tasks)
    )
    if pinned == m.options:
        return cfg
    return cfg.model_copy(update={"model": m.model_copy(update={"options": pinned})})


def fingerprint(prepared: PreparedData) -> str:
    """What resuming checks: a streamed table's files, else a hash of the frames read."""
    return prepared.fingerprint or run_staging.data_fingerprint(*prepared.frames)


def network(
    cfg: RunConfig, prepared: PreparedData, tasks: list[Task], pretrained: bool
) -> MultiTaskNet:
    """The seeded network, with its backbone's pretrained weights (a resumed run has its
    own in its checkpoint instead) and frozen encoders' vectors cached."""
    torch.manual_seed(cfg.training.seed)
    net = build_net(cfg, prepared.preprocessors, tasks)
    if pretrained:
        load_pretrained(net)
    cache_frozen_splits(net, prepared)
    return net


def race(
    cfg: RunConfig, balancer: Balancer | None, prepared: PreparedData, tasks: list[Task]
) -> tuple[RunConfig, Balancer, dict[str, Any] | None]:
    """``balancing: auto`` (no balancer yet): a short race on validation picks the
    method (:mod:`polytask.auto`); the config with the winner, its balancer, the race."""
    if balancer is not None:
        return cfg, balancer, None
    cfg, race = race_methods(cfg, prepared, tasks, lambda c: network(c, prepared, tasks, True))
    return cfg, get_balancer(cfg.balancing.method, **cfg.balancing.options), race


def keep_race(tmp: Path | None, race: dict[str, Any] | None) -> dict[str, Any] | None:
    """The race goes into the unfinished run at once; a resumed run reads it back."""
    if tmp is None:
        return race
    if race is not None:
        write_json(tmp / run_dir.RACE, race)
        return race
    saved = tmp / run_dir.RACE
    return run_dir.read_json(saved) if saved.is_file() else None


def trainer(
    cfg: RunConfig,
    net: MultiTaskNet,
    tasks: list[Task],
    balancer: Balancer,
    prepared: PreparedData,
    tmp: Path | None,
    verbose: bool,
    callbacks: Sequence[Callback],
    ctx: distributed.DistContext | None,
) -> Trainer:
    """The loop for this run: history in the unfinished run, augmentation if asked."""
    return Trainer(
        net,
        tasks,
        balancer,
        cfg.training,
        history_path=tmp / run_dir.HISTORY if tmp is not None else None,
        verbose=verbose,
        jacobian=cfg.balancing.jacobian,
        log_every=cfg.balancing.log_every,
        callbacks=list(callbacks),
        distributed=ctx,
        augment=augment(cfg, prepared, tasks),
    )
