"""The `keras-sagdq` command: files, summary, resume, and one-line errors."""

import contextlib
import io
import json
import os
import subprocess
import sys
from unittest import mock

import keras
import numpy as np
from absl import flags
from absl.testing import flagsaver

from keras_sagdq import cli
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import tiny_resnet

_TINY_BUDGET = (
    "--num_samples=8",
    "--synthesis=steps=3,batch_size=4,latent_dim=16,input_space_steps=3",
    "--reconstruction=steps=3,batch_size=4",
    "--verbose=0",
)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
    """Run the command in this process; returns (exit code, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with flagsaver.flagsaver():
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["keras-sagdq", *args])
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = cli.run_command()
    return code, stdout.getvalue(), stderr.getvalue()


@keras.saving.register_keras_serializable(package="keras_sagdq_tests")
class _Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3)
        self.bn = keras.layers.BatchNormalization()
        self.head = keras.layers.Dense(2)

    def call(self, x):
        return self.head(keras.ops.mean(self.bn(self.conv(x)), axis=(1, 2)))


class CommandTest(TestCase):
    def test_quantizes_exports_reports_and_resumes(self):
        folder = self.temp_dir()
        model_path = os.path.join(folder, "tiny.keras")
        tiny_resnet().save(model_path)
        eval_path = os.path.join(folder, "eval.npz")
        np.savez(eval_path, x=random_images(20), y=np.arange(20) % 5)
        output = os.path.join(folder, "out")
        args = (
            f"--model={model_path}",
            f"--output_dir={output}",
            f"--eval={eval_path}",
        )
        code, stdout, stderr = run_cli(*args, "--weight_bits=3", *_TINY_BUDGET)
        self.assertEqual(code, 0, msg=stderr)
        with open(os.path.join(output, "work", "synthetic", "input_space.json")) as f:
            self.assertEqual(json.load(f)["source"], "inferred")
        for name in (
            "quantized.keras",
            "quantized.tflite",
            "report.txt",
            "report.json",
            "synthetic_images.png",
        ):
            self.assertTrue(os.path.isfile(os.path.join(output, name)), msg=name)
        self.assertIn("tiny.keras W3A4, calibration: genie (8 images", stdout)
        self.assertRegex(stdout, r"top-1 on .*eval.npz: float \d+\.\d\d%, quantized ")
        self.assertIn("tflite", stdout)
        with open(os.path.join(output, "report.json")) as f:
            report = json.load(f)
        self.assertEqual(report["bits"], "W3A4")
        self.assertEqual(set(report["top1"]), {"float", "quantized", "tflite"})
        statuses = {row["name"]: row["status"] for row in report["layers"]}
        self.assertEqual(statuses["b1_c1"], "quantized")
        self.assertEqual(statuses["b1_bn1"], "folded")
        qmodel = keras.saving.load_model(
            os.path.join(output, "quantized.keras"), safe_mode=True
        )
        x = random_images(20)
        top1 = float(
            np.mean(np.argmax(qmodel.predict(x, verbose=0), -1) == np.arange(20) % 5)
        )
        self.assertAlmostEqual(report["top1"]["quantized"], round(top1, 4))
        # Same command again: everything is loaded from the work folder.
        code, stdout_again, _ = run_cli(*args, "--weight_bits=3", *_TINY_BUDGET)
        self.assertEqual(code, 0)
        with open(os.path.join(output, "report.json")) as f:
            self.assertEqual(json.load(f)["top1"], report["top1"])
        # Another shard of the same run writes nothing and says who does.
        code, stdout_shard, stderr = run_cli(
            *args, "--weight_bits=3", "--shard=1/2", *_TINY_BUDGET
        )
        self.assertEqual(code, 0, msg=stderr)
        self.assertIn("shard 0 writes the files", stdout_shard)
        self.assertNotIn("top-1", stdout_shard)
        # The input space can be given instead of inferred.
        given = os.path.join(folder, "given")
        code, _, stderr = run_cli(
            f"--model={model_path}",
            f"--output_dir={given}",
            "--notflite",
            "--input_mean=127.5",
            "--input_std=64",
            *_TINY_BUDGET,
        )
        self.assertEqual(code, 0, msg=stderr)
        self.assertFalse(os.path.exists(os.path.join(given, "quantized.tflite")))
        with open(os.path.join(given, "work", "synthetic", "input_space.json")) as f:
            space = json.load(f)
        self.assertEqual(
            (space["source"], space["mean"], space["std"]),
            ("given", [127.5] * 3, [64.0] * 3),
        )
        # Other settings in the same folder are refused, not mixed in.
        code, _, stderr = run_cli(*args, "--seed=1", "--weight_bits=3", *_TINY_BUDGET)
        self.assertEqual(code, 1)
        self.assertIn("other settings", stderr)

    def test_missing_test_data_is_a_warning_and_files_are_still_written(self):
        folder = self.temp_dir()
        model_path = os.path.join(folder, "tiny.keras")
        tiny_resnet().save(model_path)
        output = os.path.join(folder, "out")
        empty = os.path.join(folder, "no_data")
        os.makedirs(empty)
        with mock.patch.dict(os.environ, {"KERAS_SAGDQ_FASHION_MNIST": empty}):
            code, stdout, stderr = run_cli(
                f"--model={model_path}",
                f"--output_dir={output}",
                "--notflite",
                "--eval=fashion_mnist",
                *_TINY_BUDGET,
            )
        self.assertEqual(code, 0, msg=stderr)
        (line,) = stderr.strip().splitlines()
        self.assertIn("apt-get install dataset-fashion-mnist", line)
        self.assertNotIn("top-1", stdout)
        self.assertTrue(os.path.isfile(os.path.join(output, "quantized.keras")))

    def test_bad_input_is_one_line_and_exit_code_1(self):
        folder = self.temp_dir()
        corrupt = os.path.join(folder, "corrupt.keras")
        with open(corrupt, "wb") as f:
            f.write(b"not a zip file")
        no_bn = os.path.join(folder, "no_bn.keras")
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.Conv2D(4, 3)(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        keras.Model(inputs, keras.layers.Dense(2)(x)).save(no_bn)
        subclassed = os.path.join(folder, "subclassed.keras")
        model = _Subclassed()
        model(np.zeros((1, 8, 8, 1), np.float32))
        model.save(subclassed)
        good = os.path.join(folder, "tiny.keras")
        tiny_resnet().save(good)
        a_file = os.path.join(folder, "a_file")
        open(a_file, "w").close()
        bad_npz = os.path.join(folder, "bad.npz")
        np.savez(bad_npz, images=random_images(2))
        out = f"--output_dir={folder}/out"
        cases = {
            "no such model file": ("--model=/nonexistent/m.keras", out),
            "cannot load": (f"--model={corrupt}", out),
            "must be a `.keras` file": (f"--model={a_file}", out),
            "exactly one of --model": (out,),
            "weight_bits=9": (f"--model={good}", "--weight_bits=9", out),
            "activation_bits=1": (f"--model={good}", "--activation_bits=1", out),
            "cannot write to --output_dir": (
                f"--model={good}",
                f"--output_dir={a_file}/x",
            ),
            "BatchNormalization": (f"--model={no_bn}", out, *_TINY_BUDGET),
            "subclassed": (f"--model={subclassed}", out),
            "arrays `x` and `y`": (f"--model={good}", f"--eval={bad_npz}", out),
            "index=2, count=2": (f"--model={good}", "--shard=2/2", out),
            "Unknown SynthesisConfig field": (
                f"--model={good}",
                "--synthesis=stepz=3",
                out,
            ),
        }
        for expected, args in cases.items():
            code, _, stderr = run_cli(*args)
            self.assertEqual(code, 1, msg=expected)
            lines = stderr.strip().splitlines()
            self.assertLen(lines, 1, msg=stderr)
            self.assertTrue(lines[0].startswith("keras-sagdq: error: "), msg=stderr)
            self.assertIn(expected, lines[0])

    def test_console_entry_point(self):
        env = dict(os.environ, PYTHONPATH=_ROOT)
        command = [sys.executable, "-m", "keras_sagdq"]
        done = subprocess.run(
            [*command, "--reference=resnet20_fashion_mnist", "--weight_bits=9"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(done.returncode, 1)
        self.assertNotIn("Traceback", done.stderr)
        self.assertEqual(
            done.stderr.strip().splitlines()[-1],
            "keras-sagdq: error: `weight_bits` must be between 2 and 8. "
            "Received: weight_bits=9",
        )
        done = subprocess.run(
            [*command, "--helpfull"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        # absl prints the help and exits; every flag of the command is listed.
        for flag in (
            "--model",
            "--reference",
            "--eval",
            "--output_dir",
            "--[no]tflite",
        ):
            self.assertIn(flag, done.stdout)
