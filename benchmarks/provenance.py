"""Where a benchmark row comes from: the commit it was measured at."""

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
