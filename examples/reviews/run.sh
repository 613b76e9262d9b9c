#!/usr/bin/env bash
# Drug reviews: fetch the data (once), train, evaluate, predict. Run from anywhere.
# CONFIG=config_sentence.yaml uses frozen sentence embeddings (pip install 'polytask[sentence]').
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
PT="${POLYTASK:-$here/../../.venv/bin/polytask}"
PY="$(dirname "$PT")/python"
[ -f data/train.csv ] || PYTHON="$PY" sh data.sh
"$PT" train --config "${CONFIG:-config.yaml}" --out runs/reviews --overwrite --quiet
"$PT" predict runs/reviews --data data/test.csv --output runs/predictions.csv --overwrite
head -3 runs/predictions.csv
