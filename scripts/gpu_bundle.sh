#!/usr/bin/env bash
# Train the bundled CTC reader on a lent GPU machine (the device tool): the CPU recipe
# (--preset bundle-cpu) for longer — its time budget is what the LR schedule anneals within, so
# no speed probe is needed. MNIST travels as .gz in .devcarry/mnist (made from the verified
# cache) and the training fonts in .devcarry/fonts (the machine reaches no npm registry);
# results land in $OUT.
set -euo pipefail
export PYTHONPATH=$PWD/src DIGITSEQ_MNIST_DIR=$PWD/.devcarry/mnist DIGITSEQ_HOME=/tmp/dsh
export PYTHONUNBUFFERED=1
BUDGET=${BUDGET:-480}   # seconds of training
WORKERS=${WORKERS:-14}
mkdir -p "$DIGITSEQ_HOME" && cp -r .devcarry/fonts "$DIGITSEQ_HOME/fonts"
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
start=$(date +%s)
ds_train -v --preset "${PRESET:-bundle-cpu}" --epochs "${EPOCHS:-400}" --batch-size 256 \
  --workers "$WORKERS" ${EXTRA:-} --out /tmp/run --time-limit "$(( BUDGET / 60 ))" 2>&1 \
  | grep -v "num/s" | tee "$OUT/train.log"
echo "trained in $(( $(date +%s) - start ))s" | tee -a "$OUT/train.log"
cp /tmp/run/best.pth /tmp/run/weights.pth /tmp/run/config.json /tmp/run/history.json \
  /tmp/run/history.csv "$OUT/"
