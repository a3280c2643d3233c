"""Zero-shot against real-data reconstruction, paired by model, bits and seed.

    python benchmarks/zero_shot_gap.py benchmarks/results_zoo_issue28_a510b79.json

Prints the markdown table of issue 28's target from `harness.py` rows
(`--methods=reconstruct --calibration=genie,real`): per model and bit width,
the real and GENIE top-1 of each seed, GENIE minus real per seed and its mean
(with a 95 % t-interval over seeds when there are several), against the
target (W4A4 within 1 pt, W3A3 within 2 pt). A pair counts only when both
rows come from one commit.
"""

import collections
import json
import sys

TARGETS = {"W4A4": 1.0, "W3A3": 2.0}
# Two-sided 95 % Student t quantiles by degrees of freedom.
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57}


def pairs(rows):
    """`{(model, bits, method, commit): [(seed, real, genie, commit)]}`.

    The method label carries any QuantConfig overrides, so rows with other
    options pair only among themselves.
    """
    found = collections.defaultdict(dict)
    floats = {}
    for r in rows:
        if r["method"] == "float":
            floats[r["model"]] = r["top1"]
        if not r["method"].startswith("reconstruct") or r["bits"] not in TARGETS:
            continue
        source = r["calibration"].split(" ")[0]
        key = (r["model"], r["bits"], r["method"], r["seed"], r["commit"])
        found[key][source] = r["top1"]
    table = collections.defaultdict(list)
    for (model, bits, method, seed, commit), top1 in sorted(found.items()):
        if "real" in top1 and "genie" in top1:
            table[(model, bits, method, commit)].append(
                (seed, top1["real"], top1["genie"], commit)
            )
    return table, floats


def markdown(rows):
    table, floats = pairs(rows)
    lines = [
        "| model (float) | bits | method | seeds | recon. real | recon. GENIE | GENIE "
        "− real (per seed) | mean (95 % CI) | target | commit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (model, bits, method, _), runs in table.items():
        gaps = [100 * (g - r) for _, r, g, _ in runs]
        mean = sum(gaps) / len(gaps)
        spread = ""
        if 1 < len(gaps) <= 6:
            sd = (sum((d - mean) ** 2 for d in gaps) / (len(gaps) - 1)) ** 0.5
            spread = f" ± {_T95[len(gaps) - 1] * sd / len(gaps) ** 0.5:.2f}"
        target = TARGETS[bits]
        verdict = "met" if mean >= -target else f"missed by {-mean - target:.2f}"
        lines.append(
            f"| {model} ({100 * floats.get(model, float('nan')):.2f}) | {bits} | "
            f"{method} | "
            f"{', '.join(str(s) for s, *_ in runs)} | "
            f"{', '.join(f'{100 * r:.2f}' for _, r, _, _ in runs)} | "
            f"{', '.join(f'{100 * g:.2f}' for _, _, g, _ in runs)} | "
            f"{', '.join(f'{d:+.2f}' for d in gaps)} | {mean:+.2f}{spread} | "
            f"within {target:g} pt: {verdict} | "
            f"{', '.join(sorted({c for *_, c in runs}))} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    rows = []
    for path in sys.argv[1:]:
        with open(path) as f:
            rows += json.load(f)
    print(markdown(rows))
