#!/usr/bin/env bash
# Multi-Fashion: build the data (once), train, evaluate, predict. Run from anywhere.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
PT="${POLYTASK:-$here/../../.venv/bin/polytask}"
PY="$(dirname "$PT")/python"
[ -f data/train.npz ] || PYTHON="$PY" sh data.sh
"$PT" train --config config.yaml --out runs/fashion --overwrite --quiet
"$PT" predict runs/fashion --data data/test.npz --output runs/predictions.csv --overwrite
head -3 runs/predictions.csv
