#!/usr/bin/env bash
# Fresh machine: the main job end to end on the embedded default (synthetic data, CPU).
#   train -> evaluate -> export (conditional, masked, flat) -> parity of every form
#   -> INT8 calibration + INT8 parity -> Jetson Orin bundle -> ONNX Runtime benchmark
# Results in $OUT (default runs/pipeline). Real CIFAR-10 instead:
#   DATA="--data imagefolder --data-root ROOT" bash scripts/pipeline.sh   # ROOT/{train,test}/<class>/*.jpg
# EPOCHS (default 8) and SUBSET (training images, default 4000) size the training: EPOCHS=1 SUBSET=600 for a quick
# look at the plumbing only (its gates have not learned to skip yet, so every graph is dense, 0 If; and its model is
# too weak for INT8 parity, so step 5 may stop there). On a machine busy with other work, THREADS=1 (PyTorch's CPU
# threads; default: one a core) keeps training from slowing down several-fold. Run again with the same settings, it
# continues; with other settings, the earlier run is moved aside to $RUN.previous-<time> and training starts anew.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
. .venv/bin/activate
OUT=${OUT:-runs/pipeline}   # runs/pipeline/balanced-resnet20 is the embedded default model (cosinegate/defaults.py)
DATA=${DATA:---data synthetic}
EPOCHS=${EPOCHS:-8}
SUBSET=${SUBSET:-4000}
RUN=$OUT/balanced-resnet20
CKPT=$RUN/best.pt
step() { printf '\n=== %s\n' "$*"; }

step "1/8 train a small predictive CosineGate (balanced preset, $EPOCHS epochs, $SUBSET images)"
SETTINGS="--config balanced $DATA --epochs $EPOCHS --subset $SUBSET"
RESUME=""
if [ -f "$RUN/last.pt" ]; then
  # same settings, or a run from before they were recorded: continue it (train.py refuses another config, naming it)
  if [ ! -f "$RUN/pipeline-settings.txt" ] || [ "$(cat "$RUN/pipeline-settings.txt")" = "$SETTINGS" ]; then
    RESUME="--resume"
  else
    ASIDE="$RUN.previous-$(date +%Y%m%d-%H%M%S)"
    echo "note: $RUN was trained with other settings; moved to $ASIDE, training anew"
    mv "$RUN" "$ASIDE"
  fi
fi
mkdir -p "$RUN" && echo "$SETTINGS" > "$RUN/pipeline-settings.txt"
python train/train.py $SETTINGS --out "$RUN" $RESUME ${THREADS:+--threads "$THREADS"}

step "2/8 evaluate with hard decisions on the test split"
python train/evaluate.py --checkpoint "$CKPT" $DATA --json "$OUT/eval.json" --plot "$OUT/executed_macs.png"

step "3/8 export the conditional, masked and flat ONNX forms"
for form in conditional masked flat; do
  python deploy/export_onnx.py --checkpoint "$CKPT" --form $form --out "$OUT/onnx/model.$form.onnx"
done

step "4/8 parity against PyTorch (outputs and skip decisions), every form"
for form in conditional masked flat; do
  python deploy/parity.py --checkpoint "$CKPT" --onnx "$OUT/onnx/model.$form.onnx" $DATA --test-images 200 \
    --json "$OUT/parity/$form.json" --save-reference "$OUT/parity/$form.ref.json"
done

step "5/8 INT8 calibration (TensorRT 10.3) and INT8 parity: entropy, TensorRT's default; minmax, percentile if it fails"
# which method keeps a model's decisions depends on the model (and a model trained on another CPU differs in its
# last bits): the first that passes the int8 parity profile is kept, as build-engine's INT8 advice would suggest
for method in entropy minmax percentile; do
  python calibration/calibrate.py --checkpoint "$CKPT" $DATA --calib-images 512 --method $method --trt-version 10.3 \
    --out "$OUT/int8"
  if python deploy/parity.py --checkpoint "$CKPT" --onnx "$OUT/int8/model.qdq.conditional.onnx" $DATA --test-images 200 \
      --int8 --json "$OUT/parity/int8-conditional.json"; then
    break
  fi
  [ $method != percentile ] || { echo "error: no calibration method passes INT8 parity on this model ($OUT/parity/)" >&2; exit 1; }
  echo "INT8 parity fails with $method calibration here; trying the next method"
done

step "6/8 TensorRT engine for jetson-orin, or (no TensorRT here) the bundle to build it on the board"
python deploy/build_engine.py --target jetson-orin --checkpoint "$CKPT" $DATA

step "7/8 benchmark on ONNX Runtime (batch 1, 1 thread) against the best dense graph"
python deploy/bench.py --checkpoint "$CKPT" --backend onnxrt --compare-dense $DATA --threads 1 \
  --json "$OUT/bench.json" --csv "$OUT/bench.csv" --plot "$OUT/latency.png"

step "8/8 done: $OUT (eval.json, onnx/, parity/, int8/, bench.json) and $RUN/engines/jetson-orin/"
