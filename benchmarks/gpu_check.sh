#!/usr/bin/env bash
# The text and image examples on a GPU: step time (median, after 3 warm-up steps) and
# peak memory per example, as Markdown rows for benchmarks/RESULTS.md. Meant to finish in
# under five minutes on one recent GPU (2 epochs each; --epochs N changes that).
#
#   bash benchmarks/gpu_check.sh [--cpu] [--epochs N] [--rows N] [--out FILE]
#
# --cpu runs the same on the CPU (a check of the script itself; use --rows 256 there).
# The examples' data must be built first (examples/*/data.sh) or carried to the machine:
# nothing is downloaded here. Rows are appended to --out (default: printed only).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$root/.venv/bin/python}"
device=cuda epochs=2 rows="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) device=cpu ;;
    --epochs) epochs="$2"; shift ;;
    --rows) rows="$2"; shift ;;
    --out) out="$2"; shift ;;
    *) echo "unknown option $1; see the header of $0" >&2; exit 2 ;;
  esac
  shift
done
if [ "$device" = cuda ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "no GPU visible to torch; run with --cpu to check the script on a CPU" >&2
  exit 2
fi
text_cfg="$root/examples/reviews/config_finetune.yaml"
[ -f "$text_cfg" ] || text_cfg="$root/examples/reviews/config.yaml"
configs=("$text_cfg" "$root/examples/fashion/config.yaml" "$root/examples/fashion/config_resnet18.yaml")
header="| example | device | trained on | precision | steps | ms/step | peak MiB | wall s | test scores (first task) |"
rule="|---|---|---|---|---:|---:|---:|---:|---|"
table="$header"$'\n'"$rule"
for cfg in "${configs[@]}"; do
  data_dir="$(dirname "$cfg")/data"
  if [ ! -d "$data_dir" ]; then
    echo "skipping $cfg: $data_dir is missing (run $(dirname "$cfg")/data.sh first)" >&2
    continue
  fi
  args=("$cfg" --epochs "$epochs" --device "$device")
  [ -n "$rows" ] && args+=(--rows "$rows")
  for precision in auto fp32; do
    [ "$device" = cpu ] && [ "$precision" = fp32 ] && continue  # auto is fp32 on a CPU
    row="$(PYTHONPATH="$root/src" "$PY" "$root/benchmarks/gpu_check.py" "${args[@]}" --precision "$precision" | tail -1)"
    echo "$row"
    table="$table"$'\n'"$row"
  done
done
echo
echo "$table"
if [ -n "$out" ]; then
  { echo; echo "$table"; } >> "$out"
fi
