"""Merge the rows of a results file written elsewhere (a worktree) into ours.

    python scripts/merge_results.py /work/bench2/benchmarks/results_sadag.json \
        benchmarks/results_sadag.json f2b773c

Only rows measured at the given commit are taken (the worktree's file also
holds the older rows it was checked out with). They are copied unchanged; a
row replaces ours with the same key, as a rerun of the harness would
(`row_key` in benchmarks/harness.py). Rows only ours has stay.
"""

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
from harness import row_key  # noqa: E402


def main(source, target, commit):
    with open(source) as f:
        theirs = [r for r in json.load(f) if r.get("commit") == commit]
    ours = []
    if os.path.exists(target):
        with open(target) as f:
            ours = json.load(f)
    known = {json.dumps(r, sort_keys=True) for r in ours}
    new = [r for r in theirs if json.dumps(r, sort_keys=True) not in known]
    keys = {row_key(r) for r in new}
    merged = [r for r in ours if row_key(r) not in keys] + new
    with open(target, "w") as f:
        json.dump(merged, f, indent=1)
    print(f"{len(new)} new rows from {source}; {len(merged)} rows in {target}")


if __name__ == "__main__":
    main(*sys.argv[1:])
