#!/usr/bin/env bash
# Times the README's main job exactly as written: a clean clone of this
# repository's HEAD in a fresh virtual environment, on this machine. Keep
# the machine otherwise idle. Prints the job's output and its wall time, and
# adds a row (the job's report summary, the wall time, the load average, the
# clone's commit and environment) to benchmarks/results_main_job.json of
# this checkout, from which README's main-job table is made.
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
wall=$(($(date +%s) - start))
load="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "main job wall time: ${wall} s; load average: ${load}"
WALL="${wall}" LOAD="${load}" RESULTS="${repo}/benchmarks/results_main_job.json" python - <<'PY'
import json
import os
import sys

sys.path.insert(0, "benchmarks")
from provenance import git_commit, save_row

with open("out/resnet20_w4a4/report.json") as f:
    summary = json.load(f)
summary.pop("layers")
summary.pop("files")
row = {
    "what": "main job",
    "commit": git_commit(),
    "wall_seconds": int(os.environ["WALL"]),
    "load_average": os.environ["LOAD"],
    "summary": summary,
}
save_row(os.environ["RESULTS"], row, key=("what",))
print("row added to", os.environ["RESULTS"])
PY
