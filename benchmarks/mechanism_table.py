"""The table of `sadag_mechanism.py` rows: the mechanism and the paired comparison.

Per model and bit setting, only the rows of the newest commit that has any
(one comparison, one code). Differences are paired by seed against the
cost-matched control (`genie_equal_time`, else `genie`), with a 95 %
Student-t interval over the seeds both arms have.
"""

import numpy as np
from provenance import commit_time

# Two-sided 95 % quantiles of Student's t, by degrees of freedom.
_T95 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    12: 2.179,
    15: 2.131,
    20: 2.086,
    30: 2.042,
}
ARMS = (
    "genie",
    "genie_equal_time",
    "sadag",
    "sadag_gm0",
    "sadag_div0",
    "sadag_random",
    "sadag_blocks",
)


def t95(dof):
    """The two-sided 95 % t quantile for `dof` degrees of freedom (rounded down)."""
    return _T95[max(k for k in _T95 if k <= dof)] if dof >= 1 else float("nan")


def paired(differences):
    """`mean ± half-width` text of paired differences (95 % t interval)."""
    d = np.asarray(differences, np.float64)
    if len(d) < 2:
        return f"{d.mean():+.4g} (1 seed)" if len(d) else ""
    half = t95(len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return f"{d.mean():+.4g} ± {half:.2g}"


def _get(row, *path):
    for key in path:
        if not isinstance(row, dict) or row.get(key) is None:
            return None
        row = row[key]
    return row


def _mean(rows, *path):
    values = [_get(r, *path) for r in rows]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _text(value, digits=3):
    return "" if value is None else f"{value:.{digits}f}"


def table(rows):
    """Markdown lines of the mechanism table (newest commit per model and bits)."""
    lines = [
        "| model | bits | arm | seeds | synthesis s (× GENIE) | cos head q0 / init | "
        "cos blocks q0 / init | SADAG cosine first → last | KL ×1000 | Δ KL ×1000 vs "
        "control | top-1 % | Δ top-1 vs control | commit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = {}
    for r in rows:
        options = ", ".join(
            f"{k}={v}" for k, v in sorted(r.get("synthesis_options", {}).items())
        )
        bits = r["bits"] + (f" ({options})" if options else "")
        groups.setdefault((r["model"], bits), []).append(r)
    for (model, bits), group in sorted(groups.items()):
        commit = max((r["commit"] for r in group), key=commit_time)
        group = [r for r in group if r["commit"] == commit]
        by_arm = {}
        for r in group:
            by_arm.setdefault(r["arm"], {})[r["seed"]] = r
        control = "genie_equal_time" if "genie_equal_time" in by_arm else "genie"
        genie_seconds = _mean(
            list(by_arm.get("genie", {}).values()), "synthesis_seconds"
        )
        for arm in [a for a in ARMS if a in by_arm] + sorted(set(by_arm) - set(ARMS)):
            seeds = by_arm[arm]
            arm_rows = list(seeds.values())
            seconds = _mean(arm_rows, "synthesis_seconds")
            ratio = f" ({seconds / genie_seconds:.2f}×)" if genie_seconds else ""
            cos = [
                _text(_mean(arm_rows, "mechanism", point, *key))
                for key in (("head",), ("mean", "all"))
                for point in ("q0", "init")
            ]
            first = _mean(arm_rows, "refinement", "first", "cosine")
            last = _mean(arm_rows, "refinement", "last", "cosine")
            refinement = f"{first:.3f} → {last:.3f}" if first is not None else ""
            kl = _mean(arm_rows, "fidelity_train", "kl")
            top1 = _mean(arm_rows, "top1")
            shared = sorted(set(seeds) & set(by_arm[control]))
            delta_kl = delta_top1 = ""
            if arm != control and shared and kl is not None:
                delta_kl = paired(
                    [
                        1000 * (seeds[s]["fidelity_train"]["kl"])
                        - 1000 * (by_arm[control][s]["fidelity_train"]["kl"])
                        for s in shared
                    ]
                )
                delta_top1 = paired(
                    [
                        100 * (seeds[s]["top1"] - by_arm[control][s]["top1"])
                        for s in shared
                    ]
                )
            lines.append(
                f"| {model} | {bits} | {arm} | {','.join(map(str, sorted(seeds)))} | "
                f"{_text(seconds, 0)}{ratio} | {cos[0]} / {cos[1]} | "
                f"{cos[2]} / {cos[3]} | "
                f"{refinement} | {_text(None if kl is None else 1000 * kl, 2)} | "
                f"{delta_kl} | {_text(None if top1 is None else 100 * top1, 2)} | "
                f"{delta_top1} | {commit} |"
            )
    return lines
