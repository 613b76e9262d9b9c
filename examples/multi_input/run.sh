#!/usr/bin/env bash
# Three inputs, three tasks: build the data (once), train, predict per source.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
PT="${POLYTASK:-$here/../../.venv/bin/polytask}"
PY="$(dirname "$PT")/python"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist
fi
[ -f data/items.npz ] || "$PY" data.py data
"$PT" train --config config.yaml --out runs/multi_input --overwrite --quiet
"$PT" predict runs/multi_input --data data/diabetes.csv --output runs/trial.csv --overwrite
head -3 runs/trial.csv
