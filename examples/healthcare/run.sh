#!/usr/bin/env bash
# Train, evaluate and predict with the healthcare config. Run from anywhere:
#   bash examples/healthcare/run.sh            (uses polytask from PATH or ../../.venv)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
PT="${POLYTASK:-polytask}"
command -v "$PT" >/dev/null 2>&1 || PT="$here/../../.venv/bin/polytask"
PY="$(dirname "$(command -v "$PT" || echo "$PT")")/python"
"$PY" -c "from polytask.datasets import load_support2; load_support2().to_csv('support2.csv', index=False)"
"$PT" train --config config.yaml --out runs/support2 --overwrite --quiet
"$PT" evaluate runs/support2 --data support2.csv --json > runs/metrics_all_rows.json
"$PT" predict runs/support2 --data support2.csv --output runs/predictions.csv --keep sno --overwrite
head -3 runs/predictions.csv
