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
# package; install it where apt-get can (as root). Without it the accuracy
# guard would skip and the run pass: that is an error, unless
# KERAS_SAGDQ_ALLOW_MISSING_DATA=1 says a partial run is meant.
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${KERAS_SAGDQ_FASHION_MNIST:-}" ] \
    && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
        || echo "warning: could not install dataset-fashion-mnist"
fi
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -z "${KERAS_SAGDQ_FASHION_MNIST:-}" ] \
    && [ -z "${KERAS_SAGDQ_ALLOW_MISSING_DATA:-}" ]; then
    echo "error: the real Fashion-MNIST data is missing, so the accuracy tests would" \
        "skip. Install it (sudo apt-get install dataset-fashion-mnist), point" \
        "KERAS_SAGDQ_FASHION_MNIST at a folder holding its four .gz files, or set" \
        "KERAS_SAGDQ_ALLOW_MISSING_DATA=1 to run without them." >&2
    exit 1
fi

# Lint and format check first: a style slip fails as fast as a broken test.
ruff check .
ruff format --check .

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# The two backends run at the same time: much of a test's time is
# single-threaded (Python, graph tracing), so two processes share 2 cores
# better than one after the other. Each writes its own log, printed whole
# at the end. KERAS_SAGDQ_SERIAL_TESTS=1 runs them one after the other.
logs="$(mktemp -d)"
trap 'rm -rf "${logs}"' EXIT
run_backend() {
    # The 30 slowest tests at the end of each log: where CI time goes.
    KERAS_BACKEND="$1" python -m pytest -p no:cacheprovider --durations=30 "${@:2}"
}
status=0
if [ -n "${KERAS_SAGDQ_SERIAL_TESTS:-}" ]; then
    for backend in tensorflow torch; do
        echo "=== KERAS_BACKEND=${backend} ==="
        run_backend "${backend}" "$@" || status=$?
    done
    exit "${status}"
fi
declare -A pids
for backend in tensorflow torch; do
    run_backend "${backend}" "$@" >"${logs}/${backend}.log" 2>&1 &
    pids[${backend}]=$!
done
for backend in tensorflow torch; do
    backend_status=0
    wait "${pids[${backend}]}" || backend_status=$?
    echo "=== KERAS_BACKEND=${backend} (exit ${backend_status}) ==="
    cat "${logs}/${backend}.log"
    [ "${backend_status}" = 0 ] || status="${backend_status}"
done
exit "${status}"
