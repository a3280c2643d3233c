"""Write every generated table of the docs from the results files, or check them.

    python benchmarks/tables.py           # rewrite the sections in place
    python benchmarks/tables.py --check   # exit 1 if a committed table differs

Each table stands between `<!-- name:begin -->` and `<!-- name:end -->` in a
markdown file and is made only from rows in `benchmarks/results*.json`, each
row showing its commit: docs/benchmarks.md (`results`, `export`, `zoo` by
`harness.py`; `zero_shot_issue28` by `zero_shot_gap.py`; `accuracy_tier` and
`sabotage` by `accuracy_tier.py` and `sabotage_tier.py`), README.md
(`main_job` by `scripts/time_main_job.sh`), docs/deployment.md
(`phone` by `phone_networks.py`) and docs/sadag.md (`sadag`, `sadag_heldout`
by `sadag_table.py`; `sadag_mechanism` by `mechanism_table.py`).
`tests/test_doc_tables.py` runs the check.
"""

import glob
import json
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BENCHMARKS = os.path.join(_ROOT, "benchmarks")


def _rows(pattern):
    rows = []
    for path in sorted(glob.glob(os.path.join(_BENCHMARKS, pattern))):
        with open(path) as f:
            rows += json.load(f)
    return rows


def phone_table(rows):
    """docs/deployment.md's table of `phone_networks.py` rows."""
    lines = [
        "| model | bits | top-1 agreement | within one step | output values within "
        "one step | output error max / mean (steps) | max logit gap | partitions "
        "(outside) | size / float | int8 / float latency | commit |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        model = r["model"]
        if r.get("batchnorm_statistics", "initial") != "initial":
            model += " (BatchNorm statistics re-estimated)"
        if "error" in r:
            error = r["error"][:160].replace("|", "/")
            lines.append(
                f"| {model} | {r['bits']} | {error} ... | | | | | | | | {r['commit']} |"
            )
            continue
        values = r.get("values_within_step")
        values = "-" if values is None else f"{100 * values:.2f} %"
        outside = ", ".join(r["ops_outside_delegate"]) or "-"
        lines.append(
            f"| {model} | {r['bits']} | {100 * r['top1_agreement']:.2f} % | "
            f"{100 * r['top1_agreement_within_step']:.2f} % | {values} | "
            f"{r['max_error_steps']:.2f} / {r['mean_error_steps']:.3f} | "
            f"{r['max_logit_gap']:.3g} | {r['partitions']} ({outside}) | "
            f"{r['size_ratio']:.2f} | {r['latency_ratio']:.2f} | {r['commit']} |"
        )
    return "\n".join(lines)


def _newest(rows, key):
    """The row of each key measured with the newest code, in key order."""
    from provenance import newest

    return sorted(newest(rows, key), key=key)


def _value(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def accuracy_tier_table(rows):
    """docs/benchmarks.md's table of `accuracy_tier.py` rows (newest per run)."""
    lines = ["| run | backend | quantity | value | commit |", "|---|---|---|---|---|"]
    for r in _newest(rows, lambda r: (r["what"], r["backend"])):
        start = f"| {r['what']} | {r['backend']} |"
        for key, value in r["numbers"].items():
            lines.append(f"{start} {key} | {_value(value)} | {r['commit']} |")
        seconds = ", ".join(f"{k} {v:.0f}" for k, v in r["seconds"].items())
        lines.append(f"{start} seconds | {seconds} | {r['commit']} |")
    return lines


def sabotage_table(rows):
    """docs/benchmarks.md's table of `sabotage_tier.py` rows (newest per sabotage)."""
    lines = [
        "| sabotage | backend | test | outcome | message | commit |",
        "|---|---|---|---|---|---|",
    ]
    for r in _newest(rows, lambda r: (r["sabotage"], r["backend"])):
        for test, result in r["tests"].items():
            message = result["message"].replace("|", "/")
            lines.append(
                f"| {r['sabotage']} | {r['backend']} | `{test.split('::')[-1]}` | "
                f"{result['outcome']} | {message} | {r['commit']} |"
            )
    return lines


def main_job_table(rows):
    """README's table of `scripts/time_main_job.sh` rows (newest first)."""
    lines = [
        "| commit | wall time | synthesis | reconstruction | export | top-1 float / "
        "quantized / .tflite | load average | cores |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in reversed(_newest(rows, lambda r: (r["commit"],))):
        seconds, top1 = r["summary"]["seconds"], r["summary"]["top1"]
        accuracy = " / ".join(
            f"{100 * top1[k]:.2f} %" for k in ("float", "quantized", "tflite")
        )
        lines.append(
            f"| {r['commit']} | {r['wall_seconds'] / 60:.1f} min "
            f"({r['wall_seconds']} s) | {seconds['synthesis']:.0f} s | "
            f"{seconds['reconstruction']:.0f} s | "
            f"{seconds['export']:.0f} s | {accuracy} | {r['load_average']} | "
            f"{r['environment']['cpu_count']} |"
        )
    return lines


def sections():
    """`{(doc path, section name): markdown lines}` for every generated table."""
    # Imported here: they load the library (seconds).
    import harness
    import mechanism_table
    import sadag_table
    import zero_shot_gap
    from provenance import commit_time

    benchmarks_md = os.path.join(_ROOT, "docs", "benchmarks.md")
    result = {
        (benchmarks_md, name): lines
        for name, lines in harness.table_sections(
            harness.accuracy_rows(_BENCHMARKS)
        ).items()
    }
    # Oldest code first: where rows repeat (a float top-1), the newest wins.
    issue28 = sorted(
        _rows("results_zoo_issue28*.json"),
        key=lambda r: commit_time(r.get("commit")),
    )
    result[(benchmarks_md, "zero_shot_issue28")] = zero_shot_gap.markdown(
        issue28
    ).splitlines()
    readme = os.path.join(_ROOT, "README.md")
    result[(readme, "main_job")] = main_job_table(_rows("results_main_job.json"))
    result[(benchmarks_md, "accuracy_tier")] = accuracy_tier_table(
        _rows("results_accuracy_tier.json")
    )
    result[(benchmarks_md, "sabotage")] = sabotage_table(
        _rows("results_sabotage_tier.json")
    )
    deployment_md = os.path.join(_ROOT, "docs", "deployment.md")
    result[(deployment_md, "phone")] = phone_table(
        _rows("results_phone_networks.json")
    ).splitlines()
    sadag_md = os.path.join(_ROOT, "docs", "sadag.md")
    result[(sadag_md, "sadag")] = sadag_table.table(_rows("results_sadag.json"))
    result[(sadag_md, "sadag_mechanism")] = mechanism_table.table(
        _rows("results_sadag_mechanism.json")
    )
    result[(sadag_md, "sadag_heldout")] = sadag_table.table(
        _rows("results_sadag_heldout.json"), ("val_top1", "top1")
    )
    return result


def current(path, name):
    """The lines now standing in section `name` of `path` (None if absent)."""
    with open(path) as f:
        text = f.read()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in text or end not in text:
        return None
    inside = text.split(begin, 1)[1].split(end, 1)[0]
    return [line for line in inside.split("\n") if line]


def main(argv):
    sys.path.insert(0, _BENCHMARKS)
    from harness import replace_section

    stale = []
    for (path, name), lines in sections().items():
        if "--check" in argv:
            if current(path, name) != [line for line in lines if line]:
                stale.append(f"{os.path.relpath(path, _ROOT)}: {name}")
        else:
            replace_section(path, name, lines)
    if stale:
        print(
            "These tables differ from what the results files give; run "
            "`python benchmarks/tables.py` and commit:\n  " + "\n  ".join(stale)
        )
        return 1
    if "--check" not in argv:
        print("rewrote every generated table")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
