"""The summary of a comparison: per-task metrics (mean ± std over seeds), Δm against the
single-task models, mean rank, time per epoch, parameter count, the variant chosen on
validation with its per-task verdicts, and task affinity and gradient conflict.

Selection uses the validation split (the variant with the lowest validation Δm);
reported numbers come from the test split. Δm is computed from the mean metrics over
seeds; its ± is the standard deviation of the per-seed Δm (each seed against the
single-task models of the same seed, which share its split and initial seed).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from polytask import run_dir
from polytask.analysis.affinity import AffinitySummary, summarise_affinity
from polytask.analysis.conflict import ConflictSummary, summarise_conflict
from polytask.analysis.grouping import MAX_TASKS
from polytask.config import parse_config
from polytask.evaluation.layout import (
    SPEC,
    Variant,
    load_spec,
    read_result,
    result_path,
    run_path,
    spec_variants,
)
from polytask.metrics.delta_m import FORMULA, delta_m, headline_of
from polytask.metrics.verdict import Verdict, compare_values
from polytask.model import build_tasks

SINGLE = "single-task"


@dataclass
class Row:
    name: str
    kind: str
    method: str | None
    architecture: str | None
    #: seeds with a finished run (for single-task: every task's model finished)
    seeds: list[int]
    #: {task: {metric: {"mean", "std", "values"}}} on the test split
    test: dict[str, dict[str, dict[str, Any]]]
    #: {task: {metric: mean}} on the validation split
    validation: dict[str, dict[str, float]]
    delta_m: float | None = None
    delta_m_std: float | None = None
    delta_m_validation: float | None = None
    delta_m_terms: dict[str, float] = field(default_factory=dict)
    mean_rank: float | None = None
    seconds_per_epoch: float | None = None
    params: int | None = None
    #: runs that failed: [{"seed", "error", "model"}]
    failures: list[dict[str, Any]] = field(default_factory=list)
    slug: str | None = None


@dataclass
class Comparison:
    """A comparison's summary, the one object the Markdown, CSV, JSON, terminal and HTML
    renderers all read (none goes back to the run files for what is here)."""

    tasks: list[str]
    headline: dict[str, dict[str, bool]]
    seeds: list[int]
    rows: list[Row]
    chosen: str | None
    verdicts: list[Verdict]
    formula: str = FORMULA
    #: task affinity in the analysis variant's training (see ``analysis_variant``)
    affinity: AffinitySummary | None = None
    #: gradient conflict in the analysis variant's training
    conflict: ConflictSummary | None = None
    notes: list[str] = field(default_factory=list)
    #: what was compared, as asked (compare.json); not part of results.json
    methods: list[str] = field(default_factory=list)
    architectures: list[str] = field(default_factory=list)

    def row(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [{"variant": r.name, **f} for r in self.rows for f in r.failures]

    def to_dict(self) -> dict[str, Any]:
        return {
            "formula": self.formula,
            "tasks": self.tasks,
            "headline": self.headline,
            "seeds": self.seeds,
            "chosen_on_validation": self.chosen,
            "rows": [asdict(r) for r in self.rows],
            "verdicts": [v.to_dict() for v in self.verdicts],
            "failures": self.failures,
            "affinity": self.affinity.to_dict() if self.affinity else None,
            "conflict": self.conflict.to_dict() if self.conflict else None,
            "notes": self.notes,
        }


# -- aggregation ------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=float)
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0,
        "values": [float(v) for v in arr],
    }


def _metric(result: dict[str, Any], split: str, task: str, metric: str) -> float | None:
    value = result.get("metrics", {}).get(split, {}).get(task, {}).get(metric)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _collect(
    per_seed: dict[int, dict[str, Any]],
    headline: dict[str, dict[str, bool]],
    split: str,
    single: bool = False,
) -> dict[str, dict[str, list[float]]]:
    """{task: {metric: [value per ok seed]}}; ``per_seed[seed]`` is one result or, for the
    single-task row, a mapping task -> result."""
    out: dict[str, dict[str, list[float]]] = {}
    for seed in sorted(per_seed):
        entry = per_seed[seed]
        for task, metrics in headline.items():
            result = entry[task] if single else entry
            for metric in metrics:
                v = _metric(result, split, task, metric)
                if v is not None:
                    out.setdefault(task, {}).setdefault(metric, []).append(v)
    return out


def _scores_of(entry: dict[str, Any], split: str, single: bool) -> dict[str, dict[str, Any]]:
    """{task: {metric: value}} of one seed's run (or single-task runs)."""
    if single:
        return {t: r.get("metrics", {}).get(split, {}).get(t, {}) for t, r in entry.items()}
    return entry.get("metrics", {}).get(split, {})


def _means(values: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    return {t: {m: float(np.mean(v)) for m, v in ms.items()} for t, ms in values.items()}


Results = dict[Variant, dict[int, dict[str, Any]]]


def summarise_comparison(out: str | Path) -> Comparison:
    """Everything the comparison's tables and report show, from the files under ``out``."""
    out = Path(out)
    spec = load_spec(out)
    cfg = parse_config(spec["config"], where=str(out / SPEC))
    headline = headline_of(build_tasks(cfg))
    seeds = [int(s) for s in spec["seeds"]]
    variants = spec_variants(spec)
    results: Results = {v: _results_of(out, v, seeds) for v in variants}
    stl_row, stl_seed = _single_task_row(variants, results, headline, seeds)
    rows = [stl_row]
    rows += [
        _multi_task_row(v, results[v], stl_seed, headline) for v in variants if v.kind == "multi"
    ]
    if stl_seed:
        stl_row.delta_m = 0.0
        stl_row.delta_m_validation = 0.0
    _rank(rows, headline)
    notes: list[str] = []
    candidates = [r for r in rows[1:] if r.delta_m_validation is not None]
    chosen = min(candidates, key=_validation_delta_m).name if candidates else None
    if chosen is None:
        notes.append(
            "no multi-task variant could be chosen: it needs finished single-task and "
            "multi-task runs with validation metrics"
        )
    verdicts = _verdicts(rows, chosen, headline, stl_seed, results, variants)
    comparison = Comparison(
        list(headline),
        headline,
        seeds,
        rows,
        chosen,
        verdicts,
        notes=notes,
        methods=list(spec["methods"]),
        architectures=list(spec["architectures"]),
    )
    _add_analysis(comparison, out, variants, results, spec)
    return comparison


def _validation_delta_m(row: Row) -> float:
    return math.inf if row.delta_m_validation is None else row.delta_m_validation


def _results_of(out: Path, v: Variant, seeds: list[int]) -> dict[int, dict[str, Any]]:
    """{seed: result record} of the seeds with a (readable) result file."""
    found = {seed: read_result(result_path(out, v, seed)) for seed in seeds}
    return {seed: r for seed, r in found.items() if r is not None}


def _single_task_row(
    variants: list[Variant],
    results: Results,
    headline: dict[str, dict[str, bool]],
    seeds: list[int],
) -> tuple[Row, dict[int, dict[str, Any]]]:
    """The single-task row (every task's own model, per seed) and, per seed where every
    task's model finished, those results by task."""
    singles = {v.task: v for v in variants if v.kind == "single" and v.task is not None}
    row = Row(SINGLE, "single", None, "hard", [], {}, {})
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        entry = {}
        for task, v in singles.items():
            r = results[v].get(seed)
            if r is not None and r.get("status") == "ok":
                entry[task] = r
            elif r is not None:
                row.failures.append({"seed": seed, "model": task, "error": r.get("error")})
        if len(entry) == len(singles):
            per_seed[seed] = entry
            row.seeds.append(seed)
    test = _collect(per_seed, headline, "test", single=True)
    row.test = {t: {m: _stats(v) for m, v in ms.items()} for t, ms in test.items()}
    row.validation = _means(_collect(per_seed, headline, "validation", single=True))
    if per_seed:
        row.params = int(sum(next(iter(per_seed.values()))[t]["params"] for t in singles))
        row.seconds_per_epoch = float(
            sum(
                float(np.mean([per_seed[s][t]["seconds_per_epoch"] for s in per_seed]))
                for t in singles
            )
        )
    return row, per_seed


def _multi_task_row(
    v: Variant,
    results: dict[int, dict[str, Any]],
    stl_seed: dict[int, dict[str, Any]],
    headline: dict[str, dict[str, bool]],
) -> Row:
    """One multi-task variant's row: its metrics over seeds and Δm against single-task."""
    row = Row(v.name, "multi", v.method, v.architecture, [], {}, {}, slug=v.slug)
    ok: dict[int, dict[str, Any]] = {}
    for seed, r in results.items():
        if r.get("status") == "ok":
            ok[seed] = r
            row.seeds.append(seed)
        else:
            row.failures.append({"seed": seed, "error": r.get("error")})
    row.seeds.sort()
    test_values = _collect(ok, headline, "test")
    row.test = {t: {m: _stats(vals) for m, vals in ms.items()} for t, ms in test_values.items()}
    row.validation = _means(_collect(ok, headline, "validation"))
    if ok:
        row.params = int(next(iter(ok.values()))["params"])
        row.seconds_per_epoch = float(np.mean([r["seconds_per_epoch"] for r in ok.values()]))
    if stl_seed and ok:
        _add_delta_m(row, _means(test_values), ok, stl_seed, headline)
    return row


def _add_delta_m(
    row: Row,
    test_means: dict[str, dict[str, float]],
    ok: dict[int, dict[str, Any]],
    stl_seed: dict[int, dict[str, Any]],
    headline: dict[str, dict[str, bool]],
) -> None:
    """Δm on test and validation from the mean metrics; its ± from the per-seed Δm."""
    stl_test = _means(_collect(stl_seed, headline, "test", single=True))
    stl_val = _means(_collect(stl_seed, headline, "validation", single=True))
    dm = delta_m(test_means, stl_test, headline)
    row.delta_m, row.delta_m_terms = dm.value, dm.terms
    row.delta_m_validation = delta_m(row.validation, stl_val, headline).value
    values = [
        delta_m(
            _scores_of(ok[s], "test", False), _scores_of(stl_seed[s], "test", True), headline
        ).value
        for s in ok
        if s in stl_seed
    ]
    per_seed = [x for x in values if x is not None]
    if len(per_seed) > 1:
        row.delta_m_std = float(np.std(per_seed, ddof=1))


def _rank(rows: list[Row], headline: dict[str, dict[str, bool]]) -> None:
    """Mean over headline metrics of each row's rank (1 = best) among rows with a value."""
    ranks: dict[str, list[float]] = {r.name: [] for r in rows}
    for task, metrics in headline.items():
        for metric, higher in metrics.items():
            have = [r for r in rows if metric in r.test.get(task, {})]
            if len(have) < 2:
                continue
            values = np.array([r.test[task][metric]["mean"] for r in have])
            for r, rank in zip(have, rankdata(-values if higher else values), strict=True):
                ranks[r.name].append(float(rank))
    for r in rows:
        if ranks[r.name]:
            r.mean_rank = float(np.mean(ranks[r.name]))


def _verdicts(
    rows: list[Row],
    chosen: str | None,
    headline: dict[str, dict[str, bool]],
    stl_seed: dict[int, dict[str, Any]],
    results: Results,
    variants: list[Variant],
) -> list[Verdict]:
    if chosen is None:
        return []
    v = next(x for x in variants if x.kind == "multi" and x.name == chosen)
    ok = {s: r for s, r in results[v].items() if r.get("status") == "ok"}
    out = []
    for task, metrics in headline.items():
        for metric, higher in metrics.items():
            stl = [_metric(stl_seed[s][task], "test", task, metric) for s in sorted(stl_seed)]
            mtl = [_metric(ok[s], "test", task, metric) for s in sorted(ok)]
            stl_v = [x for x in stl if x is not None]
            mtl_v = [x for x in mtl if x is not None]
            if stl_v and mtl_v:
                out.append(compare_values(task, metric, higher, stl_v, mtl_v))
    return out


# -- affinity and conflict ----------------------------------------------------------------------


def analysis_variant(comparison: Comparison, variants: list[Variant]) -> Variant | None:
    """Whose training the affinity and conflict sections show: TAG measures affinity in a
    model that trains all tasks with the plain sum of losses, so ``ew`` on the chosen
    variant's architecture where it was run; else the chosen variant."""
    multis = [v for v in variants if v.kind == "multi"]
    if not multis:
        return None
    chosen = next((v for v in multis if v.name == comparison.chosen), multis[0])
    ew = next(
        (v for v in multis if v.method == "ew" and v.architecture == chosen.architecture), None
    )
    return ew or chosen


def _add_analysis(
    comparison: Comparison,
    out: Path,
    variants: list[Variant],
    results: Results,
    spec: dict[str, Any],
) -> None:
    v = analysis_variant(comparison, variants)
    if v is None:
        return
    seeds = [s for s, r in results[v].items() if r.get("status") == "ok"]
    histories = [run_dir.read_history(run_path(out, v, s)) for s in sorted(seeds)]
    histories = [h for h in histories if h]
    if not histories:
        return
    affinity = summarise_affinity(histories, v.name)
    if affinity is not None:
        if len(affinity.tasks) > MAX_TASKS:
            comparison.notes.append(
                f"no grouping recommendation: the exhaustive search stops at {MAX_TASKS} tasks"
            )
        comparison.affinity = replace(
            affinity, every=spec.get("affinity_every"), seconds=round(affinity.seconds, 3)
        )
    comparison.conflict = summarise_conflict(histories, v.name)
