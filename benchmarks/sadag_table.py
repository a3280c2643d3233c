"""Issue 12's table: SADAG vs GENIE vs GENIE with SADAG's extra time, over seeds.

Reads the rows `scripts/run_sadag_benchmarks.sh` wrote (benchmarks/results_sadag.json)
and writes, between the `sadag` markers of docs/sadag.md, top-1 mean ± std over
seeds per (model, bits, calibration), and the per-seed differences to GENIE (paired
by seed: the same GENIE warm-up batches start SADAG's refinement).

    python benchmarks/sadag_table.py            # print and rewrite docs/sadag.md
"""

import collections
import json
import os
import statistics
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_RESULTS = os.path.join(_ROOT, "benchmarks", "results_sadag.json")
_DOC = os.path.join(_ROOT, "docs", "sadag.md")
_GENIE = "genie (512, profile=fast)"


def _mean_std(values):
    values = [100 * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def table(rows):
    rows = [r for r in rows if r.get("method", "").startswith("reconstruct")]
    groups = collections.defaultdict(dict)
    for r in rows:
        groups[(r["model"], r["bits"], r["calibration"])][r["seed"]] = r
    lines = [
        "| model | bits | calibration | seeds | top-1 % (mean ± std) | per seed | "
        "Δ vs GENIE, paired (mean ± std) | commits |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (model, bits, calibration), by_seed in sorted(groups.items()):
        seeds = sorted(by_seed)
        top1 = [by_seed[s]["top1"] for s in seeds]
        genie = groups.get((model, bits, _GENIE), {})
        paired = [by_seed[s]["top1"] - genie[s]["top1"] for s in seeds if s in genie]
        delta = "" if calibration == _GENIE or not paired else _mean_std(paired)
        if delta and not delta.startswith("-"):
            delta = "+" + delta
        commits = ", ".join(sorted({by_seed[s]["commit"] for s in seeds}))
        per_seed = " / ".join(f"{100 * t:.2f}" for t in top1)
        lines.append(
            f"| {model} | {bits} | {calibration} | {','.join(map(str, seeds))} | "
            f"{_mean_std(top1)} | {per_seed} | {delta} | {commits} |"
        )
    return lines


def main():
    with open(_RESULTS) as f:
        lines = table(json.load(f))
    print("\n".join(lines))
    if "--print" in sys.argv:
        return
    # The harness's section writer (importing it loads the library: seconds).
    from harness import replace_section

    replace_section(_DOC, "sadag", lines)


if __name__ == "__main__":
    main()
