"""Where a benchmark row comes from: the library it imported, the machine, the configs.

Every row a benchmark saves with `save_row` carries `environment()`: the
commit of the `keras_sagdq` that was imported (not of the checkout that
holds the script) and whether that package's tree had changes, the versions
of the frameworks, the backend and the core count. A row is never replaced
by one from other code or other configs: it is added beside it.
"""

import functools
import json
import os
import platform
import subprocess
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Fields that say which code and settings made a row: rows that differ in
# any of them are kept side by side.
_PROVENANCE_FIELDS = ("commit", "configs", "quant_config")


def _git(directory, *args):
    try:
        result = subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True
        )
    except OSError:  # no git on this machine
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def _library_directory():
    import keras_sagdq

    return os.path.dirname(os.path.abspath(keras_sagdq.__file__))


def library_state():
    """`(commit, dirty)` of the imported `keras_sagdq` package's git checkout.

    A copy without `.git` (e.g. on a device machine) names its commit in
    `KERAS_SAGDQ_COMMIT`; its dirtiness is then unknown (None).
    """
    directory = _library_directory()
    commit = _git(directory, "rev-parse", "--short", "HEAD")
    if not commit:
        return os.environ.get("KERAS_SAGDQ_COMMIT", "unknown"), None
    changes = _git(directory, "status", "--porcelain", "--untracked-files=no", ".")
    return commit, bool(changes)


def git_commit():
    """The imported library's commit, with "+changes" if its tree differs from it."""
    commit, dirty = library_state()
    return commit + ("+changes" if dirty else "")


def _version(module_name):
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = __import__(module_name)
        except ImportError:
            return None
    return getattr(module, "__version__", None)


def environment():
    """The imported library, the framework versions, the backend and the machine."""
    import keras

    commit, dirty = library_state()
    return {
        "library_commit": commit,
        "library_dirty": dirty,
        "library_path": _library_directory(),
        "versions": {
            name: _version(name)
            for name in ("keras_sagdq", "keras", "tensorflow", "torch", "numpy")
        },
        "python": platform.python_version(),
        "backend": keras.backend.backend(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }


def _fingerprint(row):
    return json.dumps(
        [row.get(field) for field in _PROVENANCE_FIELDS], sort_keys=True, default=str
    )


def save_row(path, row, key, defaults=None):
    """Add `row` to the JSON list of rows at `path` and write it back.

    The row gets `environment()` (unless it has one). A stored row with the
    same values under `key` *and* the same commit and configs is replaced,
    as a rerun of the same measurement should be; one from another commit
    or with other configs stays, and the new row goes beside it. The file
    is written to a temporary name first, so a run stopped mid-write loses
    nothing.

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
    row.setdefault("environment", environment())
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = json.load(f)

    def identity(r):
        if callable(key):
            return [key(r), _fingerprint(r)]
        return [[r.get(k, defaults.get(k)) for k in key], _fingerprint(r)]

    rows = [r for r in rows if identity(r) != identity(row)] + [row]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".partial", "w") as f:
        json.dump(rows, f, indent=1, default=str)
    os.replace(path + ".partial", path)
    return rows


@functools.cache
def commit_time(commit):
    """Seconds since the epoch of `commit` (its "+changes" ignored); 0 if unknown."""
    if not commit:
        return 0
    text = _git(_ROOT, "show", "-s", "--format=%ct", commit.split("+")[0])
    return int(text) if text.isdigit() else 0


def newest(rows, key):
    """Of the rows sharing `key(row)`, the one measured with the newest code.

    Rows are ordered by their commit's time; of rows from one commit, the
    later in `rows` wins. Returns one row per key.
    """
    chosen = {}
    for r in sorted(rows, key=lambda r: commit_time(r.get("commit"))):
        chosen[key(r)] = r
    return list(chosen.values())
