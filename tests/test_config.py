"""The config schema: unknown keys name the closest key, task specs, option validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from polytask import build_config
from polytask.config import RunConfig, load_config, parse_config, parse_task_spec
from polytask.errors import PolytaskError
from polytask.tasks import make_task, task_class


@pytest.mark.parametrize(
    ("data", "key", "suggestion"),
    [
        ({"training": {"epocs": 3}}, "training.epocs", "epochs"),
        ({"trainig": {"epochs": 3}}, "trainig", "training"),
        ({"model": {"hiden": [8]}}, "model.hiden", "hidden"),
        ({"data": {"validaton": "v.csv"}}, "data.validaton", "validation"),
        ({"features": {"dorp": ["id"]}}, "features.dorp", "drop"),
    ],
)
def test_unknown_key_names_the_closest_key(data: dict, key: str, suggestion: str) -> None:
    with pytest.raises(PolytaskError) as info:
        parse_config(data)
    msg = str(info.value)
    assert f"unknown key '{key}'" in msg
    assert f"did you mean '{suggestion}'?" in msg
    assert "\n" not in msg


def test_wrong_value_type_names_the_key() -> None:
    with pytest.raises(PolytaskError, match=r"'training\.epochs'.*got 'many'"):
        parse_config({"training": {"epochs": "many"}})
    with pytest.raises(PolytaskError, match=r"training\.epochs"):
        parse_config({"training": {"epochs": 0}})


def test_config_values_are_parsed() -> None:
    cfg = parse_config(
        {
            "tasks": [
                {"name": "dead", "kind": "binary", "positive": "yes"},
                {"column": "slos", "kind": "regression", "transform": "log1p"},
                {"name": "tags", "kind": "multilabel", "columns": ["a", "b"]},
            ],
            "training": {"epochs": 7, "batch_size": 32},
        }
    )
    assert cfg.training.epochs == 7 and cfg.training.batch_size == 32
    t0, t1, t2 = cfg.tasks
    assert t0.label_columns == ["dead"] and t0.options == {"positive": "yes"}
    assert t1.name == "slos" and t1.options == {"transform": "log1p"}
    assert t2.label_columns == ["a", "b"] and t2.options == {}


def test_defaults() -> None:
    cfg = RunConfig()
    assert cfg.training.epochs == "auto" and cfg.training.batch_size == "auto"  # from the table
    assert cfg.data.validation_fraction == 0.15 and cfg.data.test_fraction == 0.15
    assert cfg.balancing.method == "ew" and cfg.model.architecture == "hard"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("hospdead:binary", {"name": "hospdead", "column": "hospdead", "kind": "binary"}),
        (
            "slos:regression:transform=log1p",
            {"name": "slos", "column": "slos", "kind": "regression", "transform": "log1p"},
        ),
        (
            "outcome:binary:positive=died:pos_weight=balanced",
            {
                "name": "outcome",
                "column": "outcome",
                "kind": "binary",
                "positive": "died",
                "pos_weight": "balanced",
            },
        ),
        (
            "y:binary:positive=a=b",
            {"name": "y", "column": "y", "kind": "binary", "positive": "a=b"},
        ),
    ],
)
def test_task_spec_parsing(spec: str, expected: dict) -> None:
    assert parse_task_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("hospdead", "is not COLUMN:KIND"),
        (":binary", "is not COLUMN:KIND"),
        ("y:", "is not COLUMN:KIND"),
        ("y:binary:positive", "is not OPTION=VALUE"),
        ("y:binary:kind=regression", "cannot be set"),
    ],
)
def test_bad_task_specs(spec: str, needle: str) -> None:
    with pytest.raises(PolytaskError, match=needle):
        parse_task_spec(spec)


def test_spec_options_are_validated_and_converted() -> None:
    spec = parse_task_spec("y:regression:loss=huber:huber_delta=0.5:standardize=false")
    task = make_task(spec["name"], spec["kind"], [spec["column"]], spec_options(spec))
    assert task.options.loss == "huber"
    assert task.options.huber_delta == 0.5
    assert task.options.standardize is False
    spec = parse_task_spec("y:binary:pos_weight=2:threshold=0.3")
    task = make_task("y", "binary", ["y"], spec_options(spec))
    assert task.options.pos_weight == 2.0 and task.options.threshold == 0.3


def spec_options(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k not in ("name", "column", "kind")}


@pytest.mark.parametrize(
    ("kind", "options", "needle"),
    [
        ("binary", {"postive": "yes"}, "did you mean 'positive'?"),
        ("regression", {"foo": 1}, "unknown key 'foo'"),
        ("count", {"transform": "log1p"}, "unknown key 'transform'"),
        ("regression", {"loss": "l1"}, "'loss'"),
        ("regression", {"huber_delta": "-1"}, "'huber_delta'"),
        ("binary", {"threshold": "abc"}, "'threshold'"),
        ("multiclass", {"class_weight": "equal"}, "'class_weight'"),
    ],
)
def test_unknown_or_invalid_task_option(kind: str, options: dict, needle: str) -> None:
    with pytest.raises(PolytaskError) as info:
        make_task("y", kind, ["y"], options)
    msg = str(info.value)
    assert msg.startswith(f"task 'y' ({kind})")
    assert needle in msg


def test_unknown_task_kind_suggests_the_closest() -> None:
    with pytest.raises(
        PolytaskError, match=r"unknown task kind 'regresion' \(did you mean 'regression'"
    ):
        task_class("regresion")
    with pytest.raises(PolytaskError, match="choose one of regression, binary, multiclass"):
        task_class("zzz")


def test_build_config_overrides_and_unknown_option() -> None:
    cfg = build_config(None, ["y:regression"], epochs=3, hidden=[16], balancing="ew", drop=["id"])
    assert cfg.training.epochs == 3
    assert cfg.model.hidden == [16]
    assert cfg.balancing.method == "ew"
    assert cfg.features.drop == ["id"]
    assert cfg.tasks[0].name == "y"
    with pytest.raises(PolytaskError, match=r"unknown option 'epoch' \(did you mean 'epochs'"):
        build_config(None, ["y:regression"], epoch=3)


def test_build_config_accepts_task_mappings() -> None:
    cfg = build_config(
        None, {"dead": "binary", "slos": {"kind": "regression", "transform": "none"}}
    )
    assert [(t.name, t.kind) for t in cfg.tasks] == [("dead", "binary"), ("slos", "regression")]
    assert cfg.tasks[1].options == {"transform": "none"}


def test_load_config_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "run.yaml"
    path.write_text("data: {path: d.csv}\ntasks: [{name: y, kind: regression}]\n")
    cfg = load_config(path)
    assert cfg.data.path == str((tmp_path / "sub" / "d.csv").resolve())  # relative to the file
    path.write_text("training: {epocs: 3}\n")
    with pytest.raises(PolytaskError, match=r"config 'run.yaml': unknown key 'training.epocs'"):
        load_config(path)
    path.write_text("training: [unclosed\n")
    with pytest.raises(PolytaskError, match="not valid YAML"):
        load_config(path)
    path.write_text("")
    with pytest.raises(PolytaskError, match="is empty"):
        load_config(path)
    with pytest.raises(PolytaskError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


# -- one source of truth: the schema's fields declare flags, keywords and defaults -------------

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_config_block() -> dict:
    from polytask.config import load_yaml

    text = README.read_text(encoding="utf-8").split("## Config file", 1)[1]
    return load_yaml(text.split("```yaml\n", 1)[1].split("```", 1)[0])


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def test_readme_config_block_holds_every_key_with_the_schema_default() -> None:
    """A changed default, a new key or a removed one fails this until the README says it."""
    block = _readme_config_block()
    parse_config(block)  # every key in it is a key of the schema
    # data.path and tasks hold examples; sources and sampling have their own README section
    shown = {k: v for k, v in _flat(block).items() if k not in ("data.path", "tasks")}
    defaults = {
        k: v
        for k, v in _flat(RunConfig().to_dict()).items()
        if k not in ("data.path", "tasks", "sources") and not k.startswith("sampling.")
    }
    assert shown == defaults


def test_flags_and_keywords_come_from_the_schema() -> None:
    from polytask.config.keys import FLAGS, KEYWORDS

    flags = {f.name: path for path, f in FLAGS.items()}
    assert flags["--epochs"] == "training.epochs" and flags["--drop"] == "features.drop"
    assert flags["--balancing"] == "balancing.method" and flags["--mlflow"] == "tracking.mlflow.uri"
    assert KEYWORDS["drop"] == "features.drop" and KEYWORDS["features"] == "features.include"
    assert KEYWORDS["text"] == "model.text"  # model keys by their name; --text is features.text
    for name in ("epochs", "lr", "weight_decay", "checkpoint_every", "hidden", "dropout"):
        assert KEYWORDS[name].endswith("." + name)


def test_build_config_balancing_keyword_replaces_the_section() -> None:
    base = {"balancing": {"method": "cagrad", "c": 0.2}, "training": {"epochs": 7}}
    cfg = build_config(base, ["y:regression"], balancing="uw", batch_size=8)
    assert cfg.balancing.method == "uw" and cfg.balancing.options == {}
    assert cfg.training.epochs == 7 and cfg.training.batch_size == 8
    assert base == {"balancing": {"method": "cagrad", "c": 0.2}, "training": {"epochs": 7}}
    cfg = build_config(None, ["y:regression"], balancing={"method": "cagrad", "c": 0.3})
    assert cfg.balancing.options == {"c": 0.3}
