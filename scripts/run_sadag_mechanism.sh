#!/usr/bin/env bash
# Issue 30's comparison: ResNet-20 W2A4 and W3A3, seeds 0-5, on one GENIE
# warm-up per seed. The core arms (GENIE, SADAG, SADAG matching every
# block, GENIE given SADAG's time) run first for every seed, then SADAG's
# ablations on the same warm-ups and q0, then the core arms again on an
# 800-step warm-up (converged where 200 may not be). Each arm is calibrated (block
# reconstruction, fast) and judged by KL on the 60 000 training images.
# Rows go to benchmarks/results_sadag_mechanism.json as arms finish; a
# rerun at the same commit skips the arms that have rows, so run it from a
# checkout of one commit, in the background, across sessions:
#   git worktree add /tmp/mech <commit>
#   nohup nice -n 5 bash /tmp/mech/scripts/run_sadag_mechanism.sh > /tmp/mech/mechanism.log 2>&1 &
# then copy the rows into main with scripts/merge_results.py.
set -uo pipefail
cd "$(dirname "$0")/../benchmarks"
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}" TF_CPP_MIN_LOG_LEVEL=2
# The keras_sagdq of this checkout, not an installed one.
export PYTHONPATH="$(cd .. && pwd)${PYTHONPATH:+:${PYTHONPATH}}"
models="${MODELS:-resnet20_fashion_mnist}"
bits="${BITS:-W2A4,W3A3}"
seeds="${SEEDS:-0 1 2 3 4 5}"
for arms in genie,sadag,sadag_blocks,genie_equal_time sadag,sadag_gm0,sadag_div0,sadag_random; do
    for seed in ${seeds}; do
        python sadag_mechanism.py --models="${models}" --bits="${bits}" --seeds="${seed}" \
            --arms="${arms}" --calibrate
    done
done
# The second warm-up arm: GENIE long enough to converge (800 steps).
for seed in ${seeds}; do
    python sadag_mechanism.py --models="${models}" --bits="${bits}" --seeds="${seed}" \
        --arms=genie,sadag,sadag_blocks,genie_equal_time --synthesis_options=steps=800 \
        --calibrate
done
