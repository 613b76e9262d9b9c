"""SUPPORT2: 9,105 seriously ill hospitalised adults (the SUPPORT study).

See ``SUPPORT2.md`` beside this file for the source, licence and the choice of columns.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

#: recorded after admission or derived from outcomes: never used as features
SUPPORT2_LEAKY = [
    "death",
    "d.time",
    "hospdead",
    "slos",
    "sfdm2",  # outcomes (and the targets)
    "surv2m",
    "surv6m",
    "prg2m",
    "prg6m",  # model/physician survival estimates
    "dnr",
    "dnrday",  # do-not-resuscitate order, its day
    "aps",
    "sps",
    "avtisst",  # scores built from follow-up data
    "adlp",
    "adls",
    "adlsc",  # activities of daily living (later)
    "charges",
    "totcst",
    "totmcst",  # hospital costs (known at discharge)
    "sno",  # row number
]

#: known at study entry (day 3 of the study for the physiology)
SUPPORT2_FEATURES = [
    "age",
    "sex",
    "race",
    "edu",
    "income",
    "dzgroup",
    "dzclass",
    "num.co",
    "diabetes",
    "dementia",
    "ca",
    "hday",
    "scoma",
    "meanbp",
    "wblc",
    "hrt",
    "resp",
    "temp",
    "pafi",
    "alb",
    "bili",
    "crea",
    "sod",
    "ph",
    "glucose",
    "bun",
    "urine",
]

#: the demo's three tasks (sfdm2 is unlabelled for about 1,400 patients)
SUPPORT2_TASKS = ["hospdead:binary", "slos:regression:transform=log1p", "sfdm2:multiclass"]


def load_support2() -> pd.DataFrame:
    """The full table (9,105 rows, 48 columns) as distributed."""
    with resources.files("polytask.datasets").joinpath("support2.csv.xz").open("rb") as f:
        return pd.read_csv(f, compression="xz", low_memory=False)
