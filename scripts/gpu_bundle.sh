#!/usr/bin/env bash
# Train the bundled model on a lent GPU machine (the device tool): a short speed probe picks
# the number of epochs that fits the time budget, then the real run. MNIST travels as .gz in
# .devcarry/mnist (made from the verified cache); results land in $OUT.
set -euo pipefail
export PYTHONPATH=$PWD/src DIGITSEQ_MNIST_DIR=$PWD/.devcarry/mnist DIGITSEQ_HOME=/tmp/dsh
export PYTHONUNBUFFERED=1
BUDGET=${BUDGET:-400}   # seconds of training
WORKERS=${WORKERS:-12}
nvidia-smi -L
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"
python3 -m digitseq -q train --preset bundle --epochs 1 --steps-per-epoch 120 --val-size 2000 \
  --workers "$WORKERS" --out /tmp/probe
secs=$(python3 -c "import json; print(json.load(open('/tmp/probe/history.json'))[0]['seconds'])")
EPOCHS=$(python3 -c "r = 120 * 512 / $secs; print(max(4, min(80, int($BUDGET * r / (600 * 512)))))")
echo "probe: 120 steps in ${secs}s -> $EPOCHS epochs of 600 x 512"
start=$(date +%s)
python3 -m digitseq -v train --preset bundle --epochs "$EPOCHS" --workers "$WORKERS" \
  --out /tmp/run --time-limit $(( BUDGET / 60 + 2 )) 2>&1 | grep -v "it/s\|seq/s" | tee "$OUT/train.log"
echo "trained in $(( $(date +%s) - start ))s" | tee -a "$OUT/train.log"
cp /tmp/run/best.pth /tmp/run/weights.pth /tmp/run/config.json /tmp/run/history.json \
  /tmp/run/history.csv "$OUT/"
