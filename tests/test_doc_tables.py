import os
import subprocess
import sys

from tests.test_case import TestCase

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DocTablesTest(TestCase):
    def test_committed_tables_are_what_the_results_files_give(self):
        # Every generated table in the docs, remade from benchmarks/results*.json.
        # Of rows with one key the newest code's is shown, found by commit
        # date: without the history (a shallow clone) the order is unknown.
        try:
            shallow = subprocess.run(
                ["git", "rev-parse", "--is-shallow-repository"],
                cwd=_ROOT,
                capture_output=True,
                text=True,
            )
        except OSError:  # no git
            shallow = None
        if shallow is None or shallow.stdout.strip() != "false":
            self.skipTest("needs the git history (not a shallow clone)")
        result = subprocess.run(
            [sys.executable, os.path.join("benchmarks", "tables.py"), "--check"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr[-2000:])
