#!/usr/bin/env bash
# Install keras_sagdq with its test extras, then run the test suite on both
# Keras backends. Extra arguments go to pytest (e.g. `-m slow`, `-k rewrite`).
set -euo pipefail
cd "$(dirname "$0")/.."

# torch first and pinned: a bare `torch` requirement would pull a multi-GB
# CUDA build on a CPU machine; 2.13.0 then satisfies `torch>=2.13`.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[test]"

# The accuracy tests read the real Fashion-MNIST test split from Debian's
# package; install it where apt-get can (as root), else those tests skip.
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${KERAS_SAGDQ_FASHION_MNIST:-}" ] \
    && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
        || echo "warning: could not install dataset-fashion-mnist; accuracy tests will skip"
fi

# Lint and format check first: a style slip fails as fast as a broken test.
ruff check .
ruff format --check .

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
status=0
for backend in tensorflow torch; do
    echo "=== KERAS_BACKEND=${backend} ==="
    KERAS_BACKEND="${backend}" python -m pytest "$@" || status=$?
done
exit "${status}"
