#!/usr/bin/env bash
# The zoo rows of docs/benchmarks.md (issue 10), one model after another:
#   nohup bash scripts/run_zoo_benchmarks.sh [model ...] > zoo.log 2>&1 &
# Per model: float; round-to-nearest on real, Gaussian and GENIE images; block
# reconstruction (fast profile) on GENIE and real images; W4A4 and W3A3, plus
# W2A4 on the first two zoo models; every quantized model exported without
# `input_range`. 512 calibration images (real: the first 512 training images).
# Rows go to benchmarks/results_zoo.json as each model finishes. Hours on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export KERAS_BACKEND="${KERAS_BACKEND:-tensorflow}" TF_CPP_MIN_LOG_LEVEL=2
models=("$@")
if [ ${#models[@]} -eq 0 ]; then
    models=(mobilenet_unit_range vgg_raw_pixels resnet_standardized vgg_biased cnn_momentum099 se_hardswish)
fi
for model in "${models[@]}"; do
    bits=W4A4,W3A3
    case "${model}" in mobilenet_unit_range|vgg_raw_pixels) bits=W4A4,W3A3,W2A4 ;; esac
    common=(--models="${model}" --bits="${bits}" --num_samples=512 --results=benchmarks/results_zoo.json)
    python benchmarks/harness.py "${common[@]}" --calibration=genie,real --methods=rtn,reconstruct \
        --export_dir=/tmp/keras_sagdq_zoo_export --models_dir=benchmarks/quantized
    python benchmarks/harness.py "${common[@]}" --calibration=gaussian --methods=rtn
done
