#!/usr/bin/env bash
# The embedding methods on the datasets of the coloring benchmark, with the same net and the same
# number of training steps that deep coloring reached in its 15 minutes on that dataset (read from its
# result file), so that a busy machine changes how long this takes but not how much the nets train.
set -eu
cd "$(dirname "$0")/.."
for dataset in ${DATASETS:-bbbc010 usiigaci}; do
  steps=$(python -c "import json; print(json.load(open('benchmarks/results/accuracy_${dataset}_coloring.json'))['iterations'])")
  for method in semiconv dcme metric; do
    python benchmarks/accuracy.py --dataset "$dataset" --method "$method" --iterations "$steps" --threads 1 \
      > "benchmarks/results/accuracy_${dataset}_${method}.log" 2>&1 &
  done
done
wait
