#!/usr/bin/env bash
# The torch_mnist CNN on one GPU, data resident on the device: test accuracy per epoch against
# training seconds (bench/torch_cnn_standalone.py). Runs from a folder holding bench/, projects/
# and mnist/ (the device tool carries it: see the README's "GPU" note), with the machine's own
# python3 (PyTorch preinstalled; nothing is installed).
#   bash bench/gpu_torch_cnn.sh [folder]      # default: this checkout, data from $MLRECIPES_DATA_DIR/mnist
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"
DATA=${MLRECIPES_DATA_DIR:+$MLRECIPES_DATA_DIR/mnist}
DATA=${DATA:-mnist}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
run() { echo "== $*"; PYTHONUNBUFFERED=1 python3 bench/torch_cnn_standalone.py --device cuda --data "$DATA" "$@"; }
# label smoothing 0.1 and bfloat16 autocast as the project's config (train.label_smoothing, precision: auto)
run --epochs 7 --batch-size 256 --lr 0.006 --label-smoothing 0.1 --bf16    # the project's CPU schedule (conf/arch/cnn.yaml)
run --epochs 10 --batch-size 1024 --lr 0.01 --label-smoothing 0.1 --bf16   # a GPU schedule: the reported figure
run --epochs 10 --batch-size 1024 --lr 0.01 --label-smoothing 0.1          # the same in float32
