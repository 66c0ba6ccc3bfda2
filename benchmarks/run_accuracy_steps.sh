#!/usr/bin/env bash
# Every method on the datasets of the accuracy benchmark, with the same net and the same number of
# training steps: as many as deep coloring reached in its 15 minutes on that dataset (read from its
# result file, written by run_accuracy.sh), so that a busy machine changes how long this takes but not
# how much the nets train. One thread per run. The trained models are kept in $MODELS
# (default /tmp/deepcolor-models) for study.
set -eu
cd "$(dirname "$0")/.."
for dataset in ${DATASETS:-bbbc039 bbbc010 usiigaci}; do
  steps=$(python -c "import json; print(json.load(open('benchmarks/results/accuracy_${dataset}_coloring.json'))['iterations'])")
  for method in ${METHODS:-coloring boundary semiconv dcme metric}; do
    python benchmarks/accuracy.py --dataset "$dataset" --method "$method" --iterations "$steps" --threads 1 \
      --model-out "${MODELS:-/tmp/deepcolor-models}/${dataset}_${method}.safetensors" \
      > "benchmarks/results/accuracy_${dataset}_${method}.log" 2>&1 &
  done
  wait
done
