#!/usr/bin/env bash
# Install keras_sagdq with its test extras, then run the test suite on both
# Keras backends. Extra arguments go to pytest (e.g. `-m slow`, `-k rewrite`).
set -euo pipefail
cd "$(dirname "$0")/.."

# torch first and pinned: a bare `torch` requirement would pull a multi-GB
# CUDA build on a CPU machine; 2.13.0 then satisfies `torch>=2.13`.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test]"

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
status=0
for backend in tensorflow torch; do
    echo "=== KERAS_BACKEND=${backend} ==="
    KERAS_BACKEND="${backend}" python -m pytest "$@" || status=$?
done
exit "${status}"
