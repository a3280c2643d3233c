"""Saved synthesis batches: one `.npy` per finished batch plus a settings file.

A rerun with the same settings loads the finished batches and synthesizes
only the missing ones, so an interrupted run loses at most one batch.
Files are written to a temporary name and renamed, so a crash never leaves a
half-written batch; they are read without pickle.
"""

import json
import os
import zipfile

import numpy as np

_SETTINGS = "synthesis.json"


class BatchStore:
    """A directory of synthesized batches made with one set of settings.

    Args:
        directory: where the batches live (created if missing).
        settings: JSON-serializable dict describing how the batches are made;
            it must equal the one stored there, if any.
        settings_file: name of the settings file in `directory`.

    Raises:
        ValueError: if the directory holds batches made with other settings.
    """

    def __init__(self, directory, settings, settings_file=_SETTINGS):
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, settings_file)
        settings = json.loads(json.dumps(settings))
        if os.path.exists(path):
            try:
                with open(path) as f:
                    stored = json.load(f)
            except (OSError, ValueError) as error:
                raise ValueError(
                    f"Cannot read the settings file {path!r} ({error}); "
                    "delete the directory or use another one. Received: "
                    f"directory={self.directory!r}"
                ) from None
            detail = settings_differences(stored, settings)
            if detail:
                raise ValueError(
                    f"Directory {self.directory!r} holds files made with other "
                    f"settings ({detail}). Use another directory, or delete it to "
                    f"start over. Received: directory={self.directory!r}"
                )
        else:
            _write_atomically(
                path, lambda f: f.write(json.dumps(settings, indent=1).encode())
            )

    def path(self, index):
        return os.path.join(self.directory, f"batch_{index:05d}.npy")

    def load(self, index, shape):
        """The saved batch `index`, or None if it is not there yet.

        Raises:
            ValueError: if the file exists but is unreadable or has the wrong
                shape (it is left in place for the user to inspect).
        """
        path = self.path(index)
        if not os.path.exists(path):
            return None
        try:
            images = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"Saved batch {path!r} is unreadable ({error}); delete it to "
                "synthesize that batch again."
            ) from None
        if images.shape != tuple(shape) or images.dtype != np.float32:
            raise ValueError(
                f"Saved batch {path!r} has shape {images.shape} and dtype "
                f"{images.dtype}, expected {tuple(shape)} float32; delete it to "
                "synthesize that batch again."
            )
        return images

    def save(self, index, images):
        _write_atomically(
            self.path(index), lambda f: np.save(f, images, allow_pickle=False)
        )

    def arrays_path(self, index):
        return os.path.join(self.directory, f"state_{index:05d}.npz")

    def has_arrays(self, index):
        """Whether batch `index` has saved arrays (checked without reading them)."""
        return os.path.exists(self.arrays_path(index))

    def save_arrays(self, index, arrays):
        """Save named numpy arrays for batch `index` (e.g. its generator state)."""
        _write_atomically(self.arrays_path(index), lambda f: np.savez(f, **arrays))

    def load_arrays(self, index):
        """The arrays saved by `save_arrays`, or None if they are not there.

        Raises:
            ValueError: if the file exists but is unreadable.
        """
        path = self.arrays_path(index)
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise ValueError(
                f"Saved state {path!r} is unreadable ({error}); delete it to "
                "synthesize that batch again."
            ) from None

    def load_json(self, name):
        """A JSON file saved by `save_json`, or None if it is not there.

        Raises:
            ValueError: if the file exists but is not valid JSON.
        """
        path = os.path.join(self.directory, name)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"Saved file {path!r} is unreadable ({error}); delete it."
            ) from None

    def save_json(self, name, data):
        path = os.path.join(self.directory, name)
        _write_atomically(path, lambda f: f.write(json.dumps(data, indent=1).encode()))


def settings_differences(stored, now, ignore=()):
    """The fields where two settings dicts differ, as one line; "" if none.

    Nested dicts are compared field by field, each named by its dotted path
    (`config.steps: stored 100, now 200`); top-level keys in `ignore` are
    left out.
    """
    stored = _flatten({k: v for k, v in stored.items() if k not in ignore})
    now = _flatten({k: v for k, v in now.items() if k not in ignore})
    differences = sorted(
        k for k in set(stored) | set(now) if stored.get(k) != now.get(k)
    )
    return "; ".join(
        f"{k}: stored {stored.get(k)!r}, now {now.get(k)!r}" for k in differences
    )


def _flatten(settings, prefix=""):
    """Nested dicts as one dict with dotted keys, so a difference names its field."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _write_atomically(path, write):
    # One temporary name per process: shards may write the same file at once.
    temporary = f"{path}.{os.getpid()}.partial"
    with open(temporary, "wb") as f:
        write(f)
    os.replace(temporary, path)
