import json
import os

import numpy as np

from keras_sagdq.synthesis.storage import BatchStore
from tests.test_case import TestCase

_SETTINGS = {"method": "genie", "steps": 3, "shape": (2, 2)}


class BatchStoreTest(TestCase):
    def test_round_trip_and_missing_batch(self):
        store = BatchStore(self.temp_dir(), _SETTINGS)
        self.assertIsNone(store.load(0, (2, 4, 4, 1)))
        images = np.random.default_rng(0).normal(size=(2, 4, 4, 1)).astype("float32")
        store.save(0, images)
        np.testing.assert_array_equal(store.load(0, (2, 4, 4, 1)), images)
        store.save_json("extra.json", {"a": [1, 2]})
        self.assertEqual(store.load_json("extra.json"), {"a": [1, 2]})
        self.assertIsNone(store.load_json("absent.json"))
        # No temporary file is left behind.
        self.assertEqual(
            sorted(os.listdir(store.directory)),
            ["batch_00000.npy", "extra.json", "synthesis.json"],
        )

    def test_same_settings_reopen_other_settings_refused(self):
        folder = self.temp_dir()
        BatchStore(folder, _SETTINGS).save(0, np.zeros((1, 2), np.float32))
        reopened = BatchStore(folder, dict(_SETTINGS))  # tuples vs lists: same JSON
        self.assertIsNotNone(reopened.load(0, (1, 2)))
        with self.assertRaisesRegex(ValueError, "steps: stored 3, now 4"):
            BatchStore(folder, dict(_SETTINGS, steps=4))

    def test_corrupt_files_are_reported_and_kept(self):
        folder = self.temp_dir()
        store = BatchStore(folder, _SETTINGS)
        with open(store.path(0), "wb") as f:
            f.write(b"garbage")
        with self.assertRaisesRegex(ValueError, "unreadable"):
            store.load(0, (1, 2))
        self.assertTrue(os.path.exists(store.path(0)))
        store.save(1, np.zeros((3, 2), np.float32))
        with self.assertRaisesRegex(ValueError, r"shape \(3, 2\).*expected \(1, 2\)"):
            store.load(1, (1, 2))
        with open(os.path.join(folder, "synthesis.json"), "w") as f:
            f.write("{not json")
        with self.assertRaisesRegex(ValueError, "Cannot read the settings file"):
            BatchStore(folder, _SETTINGS)

    def test_pickled_arrays_are_not_loaded(self):
        store = BatchStore(self.temp_dir(), _SETTINGS)
        np.save(store.path(0), np.array([{"a": 1}], dtype=object), allow_pickle=True)
        with self.assertRaisesRegex(ValueError, "unreadable"):
            store.load(0, (1,))
        with open(os.path.join(store.directory, "bad.json"), "w") as f:
            json.dump([1], f)
        self.assertEqual(store.load_json("bad.json"), [1])
