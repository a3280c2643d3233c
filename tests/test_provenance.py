import importlib.util
import json
import os

from tests.test_case import TestCase

_PATH = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "provenance.py")


def _provenance():
    spec = importlib.util.spec_from_file_location("provenance", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SaveRowTest(TestCase):
    def setUp(self):
        super().setUp()
        self.provenance = _provenance()
        self.path = os.path.join(self.temp_dir(), "rows.json")

    def _save(self, top1, commit="abc", configs=None):
        row = {"model": "m", "top1": top1, "commit": commit, "configs": configs}
        return self.provenance.save_row(self.path, row, ("model",))

    def test_a_rerun_of_the_same_code_and_configs_replaces_its_row(self):
        self._save(0.5)
        rows = self._save(0.6)
        self.assertEqual([r["top1"] for r in rows], [0.6])

    def test_rows_of_other_code_or_configs_stay_beside(self):
        self._save(0.5)
        self._save(0.6, commit="def")
        rows = self._save(0.7, commit="def", configs={"steps": 10})
        self.assertEqual([r["top1"] for r in rows], [0.5, 0.6, 0.7])
        with open(self.path) as f:
            self.assertEqual(len(json.load(f)), 3)

    def test_rows_record_the_imported_library_and_the_machine(self):
        (row,) = self._save(0.5)
        environment = row["environment"]
        self.assertTrue(environment["library_path"].endswith("keras_sagdq"))
        self.assertEqual(environment["cpu_count"], os.cpu_count())
        self.assertIn("keras", environment["versions"])
        self.assertIsNotNone(environment["versions"]["keras"])
