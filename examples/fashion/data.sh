#!/bin/sh
# Build data/train.npz and data/test.npz (Multi-Fashion) from Debian's Fashion-MNIST
# package, installing it first when it is missing (apt-get needs root).
set -e
cd "$(dirname "$0")"
PY="${PYTHON:-../../.venv/bin/python}"
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y dataset-fashion-mnist
fi
"$PY" -m polytask.datasets.multi_fashion data --train 8000 --test 2000
