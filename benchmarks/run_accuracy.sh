#!/usr/bin/env bash
# The coloring-vs-baseline accuracy benchmark: each dataset, both methods side by side
# (one thread each, so both get the same share of the machine), 15 minutes of training each.
set -eu
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-15}
for dataset in ${DATASETS:-bbbc039 bbbc010 usiigaci}; do
  for method in coloring boundary; do
    python benchmarks/accuracy.py --dataset "$dataset" --method "$method" --minutes "$MINUTES" --threads 1 \
      > "benchmarks/results/accuracy_${dataset}_${method}.log" 2>&1 &
  done
  wait
done
