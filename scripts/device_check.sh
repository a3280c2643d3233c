#!/usr/bin/env bash
# Issue 15's GPU check, for a session whose task is lent a device machine.
#
# The device machine has PyTorch with CUDA but neither Keras nor TensorFlow,
# and a TensorFlow wheel (over 500 MB) cannot travel there (64 MiB per call),
# so this checks the torch backend only. Two steps:
#
#   bash scripts/device_check.sh prepare   # here: Keras wheels into .whl/,
#                                          # the Fashion-MNIST test split and
#                                          # the commit into .device_data/
#   bash scripts/device_check.sh run       # there, with the device tool:
#       run(command="bash scripts/device_check.sh run",
#           carry=[".whl", ".device_data"], timeout_s=600)
#
# `run` writes one log per part and the JSON rows under $OUT (default
# /tmp/device_check). Each part has its own time limit, most valuable first,
# so one 10-minute call always brings back the early parts. DRY=1 shrinks
# every part to a few steps (a dry run on a CPU machine).
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"

prepare() {
    set -e
    grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >>.git/info/exclude
    grep -qx '/.device_data/' .git/info/exclude || echo '/.device_data/' >>.git/info/exclude
    rm -rf .whl .device_data
    mkdir -p .device_data
    # Keras and what it needs that the machine's Python 3.12 lacks.
    python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 \
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl \
        "keras==$(python -c 'import keras; print(keras.__version__)')" namex optree
    local data="${KERAS_SAGDQ_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"
    cp "${data}"/t10k-*-idx*-ubyte* .device_data/
    git rev-parse --short HEAD >.device_data/commit
    du -sh .whl .device_data
}

part() {
    # part NAME SECONDS COMMAND...: run, keep its log, never stop the script.
    local name="$1" limit="$2"
    shift 2
    echo "=== ${name} (limit ${limit} s)"
    local start=${SECONDS}
    timeout "${limit}" "$@" 2>&1 | tee "${out}/${name}.log"
    echo "=== ${name}: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s" |
        tee -a "${out}/${name}.log"
}

run() {
    out="${OUT:-/tmp/device_check}"
    mkdir -p "${out}"
    # A dry run uses this machine's packages.
    [[ -n "${DRY:-}" ]] || python3 -m pip install -q --no-index --no-deps \
        --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:${PWD}${PYTHONPATH:+:${PYTHONPATH}}" KERAS_BACKEND=torch PYTHONUNBUFFERED=1 \
        KERAS_SAGDQ_FASHION_MNIST="${PWD}/.device_data" \
        KERAS_SAGDQ_COMMIT="$(cat .device_data/commit 2>/dev/null || echo unknown)"
    local steps=20 samples=512 batch=128 recon=() big=() tests_k=""
    if [[ -n "${DRY:-}" ]]; then
        steps=2 samples=32 batch=8
        recon=(--options=steps=2 --synthesis_options=steps=2 --quick)
        big=(--synthesis_steps=2 --reconstruction_steps=2 --models=mobilenet_v2)
        tests_k="bn_loss_falls"
    fi
    part device 60 python3 -c "
import keras, torch
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')
print('keras', keras.__version__, keras.backend.backend(),
      keras.ops.ones(1).device)"
    # GENIE and SADAG refinement steps of both reference models, batch 128.
    part synthesis_speed 120 python3 benchmarks/synthesis_speed.py \
        --steps="${steps}" --batch_size="${batch}" \
        --results="${out}/synthesis_speed.json"
    # Zero-shot W4A4 ResNet-20 end to end, with its accuracy on the test split.
    part harness 240 python3 benchmarks/harness.py \
        --models=resnet20_fashion_mnist --bits=W4A4 --seeds=0 --calibration=genie \
        --num_samples="${samples}" --methods=reconstruct "${recon[@]}" \
        --synthetic_dir="${out}/synthetic" --results="${out}/harness.json" \
        --table="${out}/table.md"
    # 224x224 keras.applications models (export needs TensorFlow: left out).
    part large_inputs 150 python3 benchmarks/large_inputs.py \
        --stages=load,synthesis,reconstruction "${big[@]}" \
        --results="${out}/large_inputs.json"
    # The library's tests that need no TensorFlow, on the GPU.
    part tests 120 python3 -m pytest -q -x -p no:cacheprovider \
        tests/test_backend.py tests/test_quantizers.py tests/test_synthesize.py \
        tests/test_reconstruction.py ${tests_k:+-k "${tests_k}"}
    rm -rf "${out}/synthetic"
}

case "${mode}" in
prepare) prepare ;;
run) run ;;
*)
    echo "usage: $0 prepare|run" >&2
    exit 2
    ;;
esac
