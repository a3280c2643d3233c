#!/usr/bin/env bash
# Times the README's main job exactly as written: a clean clone of this
# repository's HEAD in a fresh virtual environment, on this machine. Keep
# the machine otherwise idle. Prints the job's output and its wall time.
#
#   bash scripts/time_main_job.sh [/tmp/fresh]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
folder="${1:-/tmp/fresh}"
rm -rf "${folder}"
git clone -q "${repo}" "${folder}"
cd "${folder}"
git log --oneline -1
python -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
start=$(date +%s)
bash -c 'python -m pip install "torch==2.13.0" && python -m pip install -e . && keras-sagdq --reference=resnet20_fashion_mnist --num_samples=512 --eval=fashion_mnist --output_dir=out/resnet20_w4a4'
echo "main job wall time: $(($(date +%s) - start)) s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
