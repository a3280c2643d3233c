"""Every `>>>` example in the library's docstrings runs.

Examples that show an output are checked against it (ellipsis allowed);
examples that show none only have to run. The `fast` presets are cut to a
few steps here so that examples calling `synthesize` or `reconstruct` run
in seconds: the code path is the one users run, the step count is not.
"""

import dataclasses
import doctest
import importlib
import os
import pkgutil
import tempfile
from unittest import mock

import keras
import numpy as np
from absl.testing import parameterized

import keras_sagdq as ks
from keras_sagdq import reconstruction
from keras_sagdq.datasets import fashion_mnist
from tests.test_case import TestCase
from tests.test_case import randomize_batchnorms

# The module, not the function `ks.synthesis.synthesize` of the same name.
synthesize_module = importlib.import_module("keras_sagdq.synthesis.synthesize")

MODULES = sorted(
    ["keras_sagdq"]
    + [
        name
        for _, name, _ in pkgutil.walk_packages(ks.__path__, "keras_sagdq.")
        # The command-line entry point of the export child process.
        if name != "keras_sagdq.export.convert"
    ]
)


def _has_data():
    try:
        fashion_mnist.load_fashion_mnist("test")
    except FileNotFoundError:
        return False
    return True


_HAS_DATA = _has_data()


def _small_model():
    """A small [0, 1]-input classifier (3 blocks): the `model` of the examples."""
    inputs = keras.Input((28, 28, 1))
    x = inputs
    for name, filters in (("stem_conv", 8), ("block1_conv", 16)):
        x = keras.layers.Conv2D(
            filters, 3, strides=2, padding="same", use_bias=False, name=name
        )(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return randomize_batchnorms(
        keras.Model(inputs, keras.layers.Dense(10, name="head")(x))
    )


class _ShownOutputChecker(doctest.OutputChecker):
    def check_output(self, want, got, optionflags):
        return not want or super().check_output(want, got, optionflags)


def _examples(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(module, module_name) if t.examples]


def _fast_presets():
    genie = dataclasses.replace(
        synthesize_module.PROFILES[("genie", "fast")], steps=2, input_space_steps=2
    )
    zeroq = dataclasses.replace(synthesize_module.PROFILES[("zeroq", "fast")], steps=2)
    sadag = dataclasses.replace(
        synthesize_module.PROFILES[("sadag", "fast")],
        steps=2,
        input_space_steps=2,
        refine_steps=2,
        warmup_reconstruction_steps=2,
    )
    return [
        mock.patch.dict(
            synthesize_module.PROFILES,
            {
                ("genie", "fast"): genie,
                ("zeroq", "fast"): zeroq,
                ("sadag", "fast"): sadag,
            },
        ),
        mock.patch.dict(
            reconstruction.PROFILES,
            {"fast": dataclasses.replace(reconstruction.PROFILES["fast"], steps=4)},
        ),
    ]


class DocstringExamplesTest(TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        model = _small_model()
        images = rng.uniform(0, 1, (16, 28, 28, 1)).astype("float32")
        if _HAS_DATA:
            x, y = fashion_mnist.load_fashion_mnist("test")
            x, y = x[:1000], y[:1000]
        else:
            x = rng.uniform(0, 1, (1000, 28, 28, 1)).astype("float32")
            y = rng.integers(0, 10, len(x))
        qmodel = ks.quantize_model(model, calibration_data=images)
        cls.globs = dict(
            ks=ks,
            np=np,
            keras=keras,
            model=model,
            qmodel=qmodel,
            images=images,
            synthetic_images=images,
            calibration_images=images,
            x_train=x,
            y_train=y,
            x_test=x,
            y_test=y,
            space=ks.synthesis.InputSpace(
                np.float32([0.29]), np.float32([0.35]), "given"
            ),
        )

    @parameterized.named_parameters((name.replace(".", "_"), name) for name in MODULES)
    def test_examples_run(self, module_name):
        tests = _examples(module_name)
        if module_name.endswith("fashion_mnist") and not _HAS_DATA:
            self.skipTest("Fashion-MNIST is not installed")
        flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
        runner = doctest.DocTestRunner(checker=_ShownOutputChecker(), optionflags=flags)
        cwd = os.getcwd()
        patches = _fast_presets()
        try:
            os.chdir(tempfile.mkdtemp())
            for patch in patches:
                patch.start()
            for test in tests:
                test.globs = {**test.globs, **self.globs}
                keras.utils.set_random_seed(0)
                runner.run(test, out=lambda text: self._report.append(text))
        finally:
            for patch in patches:
                patch.stop()
            os.chdir(cwd)
        failed, attempted = runner.summarize(verbose=False)
        self.assertEqual(failed, 0, "".join(self._report))

    def setUp(self):
        super().setUp()
        self._report = []
