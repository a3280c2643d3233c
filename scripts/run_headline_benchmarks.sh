#!/usr/bin/env bash
# The headline rows (issue 29), every one from the same code: per model,
# float; round to nearest on real, Gaussian and GENIE images; block
# reconstruction (fast profile) on GENIE and real images; W4A4, W3A3 and
# W2A4; every quantized model exported and its file evaluated. 512
# calibration images, seed 0, 10 000 test images. Rows go to
# benchmarks/results_headline.json as they finish. About an hour per model
# on 2 cores, so run it in the background from a checkout of one commit
# and pass the models not done yet to a later run:
#   git worktree add /tmp/headline <commit>
#   cd /tmp/headline && nohup nice -n 19 bash scripts/run_headline_benchmarks.sh [model ...] > headline.log 2>&1 &
# then copy the rows into main with scripts/merge_results.py.
set -euo pipefail
cd "$(dirname "$0")/.."
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}" TF_CPP_MIN_LOG_LEVEL=2
# The keras_sagdq of this checkout, not an installed one.
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
    models=(resnet20_fashion_mnist mobilenet_v2_fashion_mnist mobilenet_unit_range
        vgg_raw_pixels resnet_standardized vgg_biased cnn_momentum099 se_hardswish
        mobilenet_v3_style efficientnet_style separable_xception_style)
fi
for model in "${models[@]}"; do
    common=(--models="${model}" --bits=W4A4,W3A3,W2A4 --num_samples=512 --seeds=0
        --results=benchmarks/results_headline.json)
    python benchmarks/harness.py "${common[@]}" --calibration=genie,real \
        --methods=rtn,reconstruct --export_dir=/tmp/keras_sagdq_headline_export
    python benchmarks/harness.py "${common[@]}" --calibration=gaussian --methods=rtn
done
