#!/usr/bin/env bash
# Train the bundled CTC reader on a lent GPU machine (the device tool): a short speed probe picks
# the number of epochs that fits the time budget, then the real run. MNIST travels as .gz in
# .devcarry/mnist (made from the verified cache); results land in $OUT.
set -euo pipefail
export PYTHONPATH=$PWD/src DIGITSEQ_MNIST_DIR=$PWD/.devcarry/mnist DIGITSEQ_HOME=/tmp/dsh
export PYTHONUNBUFFERED=1
BUDGET=${BUDGET:-420}   # seconds of training
WORKERS=${WORKERS:-14}
STEPS=800               # steps per epoch of the bundle preset (batch 256)
# Only the train command is imported: the GPU image has no FastAPI/Streamlit for the other ones.
ds_train() {
  python3 - "$@" <<'PY'
import argparse, logging, sys
from digitseq.apps.cli import train
p = argparse.ArgumentParser(prog="digitseq")
p.add_argument("-q", "--quiet", action="store_true")
p.add_argument("-v", "--verbose", action="count", default=0)
train.add_parser(p.add_subparsers(dest="command"))
args = p.parse_args(["-q" if "-q" in sys.argv[1:2] else "-v", "train", *[a for a in sys.argv[1:] if a not in ("-q", "-v")]])
logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
sys.exit(args.handler(args))
PY
}
nvidia-smi -L
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)"
if [ -z "${EPOCHS:-}" ]; then  # EPOCHS given: no probe (a second run of a known speed)
  ds_train -q --preset bundle --epochs 1 --steps-per-epoch 150 --val-size 2000 \
    --workers "$WORKERS" --out /tmp/probe
  secs=$(python3 -c "import json; print(json.load(open('/tmp/probe/history.json'))[0]['seconds'])")
  EPOCHS=$(python3 -c "r = 150 / $secs; print(max(3, min(60, int($BUDGET * r / $STEPS))))")
  echo "probe: 150 steps in ${secs}s -> $EPOCHS epochs of $STEPS x 256"
fi
start=$(date +%s)
ds_train -v --preset "${PRESET:-bundle}" --epochs "$EPOCHS" --workers "$WORKERS" ${EXTRA:-} \
  --out /tmp/run --time-limit $(( BUDGET / 60 + 2 )) 2>&1 | grep -v "num/s" | tee "$OUT/train.log"
echo "trained in $(( $(date +%s) - start ))s" | tee -a "$OUT/train.log"
cp /tmp/run/best.pth /tmp/run/weights.pth /tmp/run/config.json /tmp/run/history.json \
  /tmp/run/history.csv "$OUT/"
