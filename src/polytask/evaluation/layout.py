"""A comparison's layout: what is compared (variants, seeds, their run configs) and where
each run and result file lives. :mod:`polytask.compare` runs it; the summary and the
renderers read it back.

One single-task model per task (the same encoder, budget and splits as the multi-task
models, hard sharing with one head, plain loss) and one multi-task model per balancing
method x architecture, each once per seed. Every finished run is saved under the output
folder with a small result file beside it; a rerun skips the runs whose result exists and
whose config is the same, so an interrupted comparison picks up where it stopped. A run
that fails is recorded as failed and the others go on.

Layout::

    OUT/
      compare.json               what was asked (config, methods, architectures, seeds)
      runs/VARIANT/seed-S/       each run directory (see polytask.run_dir)
      runs/VARIANT/seed-S.json   its result: metrics, parameters, time, or the error
      results.json|.md|.csv      the summary (see polytask.evaluation.summary)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polytask import run_dir
from polytask.architectures import ARCHITECTURES, architecture_class
from polytask.balancing import get as get_balancer
from polytask.config import RunConfig, parse_config, validate_options
from polytask.config.tune import BALANCING_PRESETS
from polytask.errors import PolytaskError
from polytask.training.monitor import kept_for

SPEC = "compare.json"
RUNS = "runs"


@dataclass(frozen=True)
class Variant:
    """One model configuration of a comparison."""

    #: "single" (one model for ``task``) or "multi"
    kind: str
    method: str
    architecture: str
    task: str | None = None

    @property
    def name(self) -> str:
        if self.kind == "single":
            return f"single-task {self.task}"
        return f"{self.method} ({self.architecture})"

    @property
    def slug(self) -> str:
        raw = (
            f"single-{self.task}" if self.kind == "single" else f"{self.architecture}-{self.method}"
        )
        return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "slug": self.slug,
            "kind": self.kind,
            "method": self.method,
            "architecture": self.architecture,
            "task": self.task,
        }


@dataclass(frozen=True)
class CompareSpec:
    config: RunConfig
    methods: list[str]
    architectures: list[str]
    seeds: list[int]
    affinity_every: int
    #: options per architecture name (default: the config's model.options for its own
    #: architecture, the architecture's defaults for the others)
    architecture_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def variants(self) -> list[Variant]:
        singles = [Variant("single", "ew", "hard", t.name) for t in self.config.tasks]
        multis = [Variant("multi", m, a) for a in self.architectures for m in self.methods]
        return singles + multis

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "methods": self.methods,
            "architectures": self.architectures,
            "seeds": self.seeds,
            "affinity_every": self.affinity_every,
            "architecture_options": self.architecture_options,
            "variants": [v.to_dict() for v in self.variants()],
        }


def make_spec(
    cfg: RunConfig,
    methods: Sequence[str] | None = None,
    architectures: Sequence[str] | None = None,
    seeds: int = 3,
    affinity_every: int = 10,
    architecture_options: dict[str, dict[str, Any]] | None = None,
) -> CompareSpec:
    """Validate what to compare before any work: known methods and architectures (and
    their options), at least two tasks, at least one seed."""
    if len(cfg.tasks) < 2:
        raise PolytaskError(
            "compare needs at least two tasks to compare multi-task models with single-task "
            "ones; add another task (`tasks`)"
        )
    names = [t.name for t in cfg.tasks]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise PolytaskError(f"task name '{sorted(dup)[0]}' is used twice; task names must differ")
    if seeds < 1:
        raise PolytaskError(f"`seeds` must be at least 1, got {seeds}")
    if affinity_every < 0:
        raise PolytaskError(f"`affinity_every` must be 0 (off) or more, got {affinity_every}")
    methods = _unique(methods or [cfg.balancing.method])
    architectures = _unique(architectures or [cfg.model.architecture])
    for m in (m for m in methods if m not in BALANCING_PRESETS):  # unknown: fails here
        get_balancer(m, **(cfg.balancing.options if m == cfg.balancing.method else {}))
    options = {a: dict(o) for a, o in (architecture_options or {}).items()}
    for a in options:
        if a not in architectures:
            raise PolytaskError(f"options given for architecture '{a}', which is not compared")
    for a in architectures:
        validate_options(architecture_class(a).Options, options.get(a, {}), f"architecture '{a}'")
    if "hard" not in ARCHITECTURES:  # the single-task baselines use hard sharing
        raise PolytaskError("the 'hard' architecture is not registered; it is needed")
    base = cfg.training.seed
    return CompareSpec(
        cfg, methods, architectures, [base + s for s in range(seeds)], affinity_every, options
    )


def _unique(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def variant_config(
    base: RunConfig,
    variant: Variant,
    seed: int,
    architecture_options: dict[str, dict[str, Any]] | None = None,
) -> RunConfig:
    """The run config of one variant and seed. Method and architecture options from the
    base config carry over only to the method and architecture they belong to, unless
    ``architecture_options`` names the architecture's. A single-task model drops the
    other tasks' label columns from its features."""
    data = base.to_dict()
    data["training"]["seed"] = seed
    data["training"]["progress"] = False
    bal = data["balancing"]
    if variant.method != base.balancing.method:
        data["balancing"] = {
            **BALANCING_PRESETS.get(variant.method, {"method": variant.method}),
            "jacobian": bal["jacobian"],
            "log_every": bal["log_every"],
        }
    if variant.architecture != base.model.architecture:
        data["model"]["architecture"] = variant.architecture
        data["model"]["options"] = {}
    options = architecture_options or {}
    if variant.kind == "multi" and variant.architecture in options:
        data["model"]["options"] = dict(options[variant.architecture])
    if variant.kind == "single" and data["sources"]:
        # the task's own source alone, with that task only
        source = next(
            src for src in data["sources"] if any(t["name"] == variant.task for t in src["tasks"])
        )
        source["tasks"] = [t for t in source["tasks"] if t["name"] == variant.task]
        data["sources"], data["tasks"] = [source], []
        kind = next(t["kind"] for t in source["tasks"])
        data["training"]["monitor"] = kept_for(data["training"]["monitor"], variant.task, kind)
        return parse_config(data)
    if variant.kind == "single":
        keep = [t for t in data["tasks"] if t["name"] == variant.task]
        others = [c for t in base.tasks if t.name != variant.task for c in t.label_columns]
        own = set(next(t for t in base.tasks if t.name == variant.task).label_columns)
        data["tasks"] = keep
        feats = data["features"]
        if feats.get("include") is not None:
            feats["include"] = [c for c in feats["include"] if c not in others]
        else:
            feats["drop"] = [*feats["drop"], *[c for c in others if c not in own]]
        kind = keep[0]["kind"]
        data["training"]["monitor"] = kept_for(data["training"]["monitor"], variant.task, kind)
    return parse_config(data)


# -- result files -------------------------------------------------------------------------------


def run_path(out: Path, variant: Variant, seed: int) -> Path:
    return slug_run_path(out, variant.slug, seed)


def slug_run_path(out: Path, slug: str, seed: int) -> Path:
    """The run directory of the variant whose folder name is ``slug``."""
    return out / RUNS / slug / f"seed-{seed}"


def result_path(out: Path, variant: Variant, seed: int) -> Path:
    return out / RUNS / variant.slug / f"seed-{seed}.json"


def read_result(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return run_dir.read_json(path)
    except PolytaskError:
        return None  # a damaged result file: the run is redone


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    """A config with its data paths made absolute (the same file named two ways is the
    same run)."""
    data = dict(cfg.get("data") or {})
    for key in ("path", "validation", "test"):
        if data.get(key):
            data[key] = os.path.abspath(data[key])
    return {**cfg, "data": data}


def is_done(result: dict[str, Any] | None, cfg: RunConfig, run: Path) -> bool:
    """A finished run of exactly this config whose run directory is still there."""
    return (
        result is not None
        and result.get("status") == "ok"
        and _comparable(result.get("config", {})) == _comparable(cfg.to_dict())
        and (run / run_dir.WEIGHTS).is_file()
    )


# -- running -------------------------------------------------------------------------------------


def check_out(out: Path, spec: CompareSpec, overwrite: bool) -> None:
    """Refuse to mix with other files: OUT is new, empty or an earlier comparison; a
    finished run of a different config is replaced only with ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise PolytaskError(f"'{out}' exists and is not a folder; choose another `out`")
    if out.is_dir() and any(out.iterdir()) and not (out / SPEC).is_file():
        raise PolytaskError(
            f"'{out}' is not empty and holds no comparison ({SPEC}); choose another `out`"
        )
    if overwrite:
        return
    for seed in spec.seeds:
        for v in spec.variants():
            old = read_result(result_path(out, v, seed))
            cfg = variant_config(spec.config, v, seed, spec.architecture_options)
            if (
                old is not None
                and old.get("status") == "ok"
                and _comparable(old.get("config", {})) != _comparable(cfg.to_dict())
            ):
                raise PolytaskError(
                    f"'{out}' already holds a run of {v.name}, seed {seed} with a different "
                    "config; pass `overwrite=True` to replace such runs, or choose another `out`"
                )


def load_spec(out: Path) -> dict[str, Any]:
    """What a comparison folder says was asked (``compare.json``)."""
    if not (out / SPEC).is_file():
        raise PolytaskError(
            f"'{out}' holds no comparison ({SPEC} is missing); pass the `out` of a "
            "polytask compare run"
        )
    return run_dir.read_json(out / SPEC)


def spec_variants(spec: dict[str, Any]) -> list[Variant]:
    """The variants a written ``compare.json`` lists, in its order."""
    return [
        Variant(**{k: v[k] for k in ("kind", "method", "architecture", "task")})
        for v in spec["variants"]
    ]


def is_comparison(folder: Path) -> bool:
    return (folder / SPEC).is_file()
