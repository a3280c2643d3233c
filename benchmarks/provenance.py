"""Where a benchmark row comes from: the commit it was measured at."""

import os
import subprocess

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_commit():
    """The checked-out commit, with "+changes" if the library differs from it."""

    def git(*args):
        result = subprocess.run(
            ["git", *args], cwd=_ROOT, capture_output=True, text=True
        )
        return result.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git(
        "status",
        "--porcelain",
        "--untracked-files=no",
        "keras_sagdq",
        "benchmarks/*.py",
    )
    return commit + ("+changes" if dirty else "")
