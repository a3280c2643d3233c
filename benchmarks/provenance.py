"""Where a benchmark row comes from: the commit it was measured at."""

import json
import os
import subprocess

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit():
    """The checked-out commit, with "+changes" if the library differs from it."""

    def git(*args):
        try:
            result = subprocess.run(
                ["git", *args], cwd=_ROOT, capture_output=True, text=True
            )
        except OSError:  # no git on this machine
            return ""
        return result.stdout.strip()

    # A copy without `.git` (e.g. on a device machine) names its commit in
    # KERAS_SAGDQ_COMMIT.
    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return os.environ.get("KERAS_SAGDQ_COMMIT", "unknown")
    dirty = git(
        "status",
        "--porcelain",
        "--untracked-files=no",
        "keras_sagdq",
        "benchmarks/*.py",
    )
    return commit + ("+changes" if dirty else "")


def save_row(path, row, key, defaults=None):
    """Merge `row` into the JSON list of rows at `path` and write it back.

    A stored row with the same values under `key` is replaced, as a rerun
    of the same measurement should be; the others stay. The file is written
    to a temporary name first, so a run stopped mid-write loses nothing.

    Args:
        path: the results file (created if missing).
        row: a dict holding every field of `key`.
        key: field names that identify a measurement, or a function from a
            row to its identity (for keys that are not plain fields).
        defaults: values of key fields that older rows lack (field names
            only).

    Returns:
        The rows now stored.
    """
    defaults = defaults or {}
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = json.load(f)

    def identity(r):
        if callable(key):
            return key(r)
        return [r.get(k, defaults.get(k)) for k in key]

    rows = [r for r in rows if identity(r) != identity(row)] + [row]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".partial", "w") as f:
        json.dump(rows, f, indent=1)
    os.replace(path + ".partial", path)
    return rows
