"""`ks.quantize`: the one-call path, for every method, with resume and errors."""

import os

import keras
import numpy as np
from absl.testing import parameterized

import keras_sagdq as ks
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import tiny_resnet
from tests.test_case import to_numpy
from tests.test_synthesize import _Interrupt

_SYNTHESIS = dict(batch_size=4, latent_dim=16, steps=3)
_RECONSTRUCTION = dict(steps=4, batch_size=4)
_SPACE = dict(input_mean=127.5, input_std=64.0)


def _quantize(model, **kwargs):
    kwargs = dict(
        dict(num_samples=8, seed=3, verbose=0, reconstruction=_RECONSTRUCTION),
        **kwargs,
    )
    return ks.quantize(model, **kwargs)


class QuantizeTest(TestCase):
    @parameterized.named_parameters(
        ("genie", "genie", _SYNTHESIS),
        ("zeroq", "zeroq", dict(steps=3, batch_size=4)),
        (
            "sadag",
            "sadag",
            dict(_SYNTHESIS, refine_steps=2, warmup_reconstruction_steps=2),
        ),
        ("gaussian", "gaussian", None),
    )
    def test_method(self, method, synthesis):
        model = tiny_resnet()
        before = [w.copy() for w in model.get_weights()]
        result = _quantize(
            model,
            weight_bits=3,
            activation_bits=4,
            method=method,
            synthesis=synthesis,
            **_SPACE,
        )
        for w, b in zip(model.get_weights(), before):
            np.testing.assert_array_equal(w, b)  # the input model is untouched
        self.assertEqual(result.data.shape, (8, 12, 12, 3))
        self.assertEqual(result.data.dtype, np.float32)
        self.assertEqual(result.method, method)
        self.assertEqual(
            (result.quant_config.weight_bits, result.quant_config.activation_bits),
            (3, 4),
        )
        x = random_images(4)
        self.assertEqual(to_numpy(result.model(x)).shape, (4, 5))
        self.assertEqual(
            set(result.seconds), {"synthesis", "quantization", "reconstruction"}
        )
        # One log per block (the tiny model has 4), each with a loss per epoch.
        self.assertLen(result.histories["reconstruction"], 4)
        self.assertIn("loss", result.histories["reconstruction"][0])
        synthesized_batches = (
            0 if method == "gaussian" else 2 * (1 + (method == "sadag"))
        )
        self.assertLen(result.histories["synthesis"], synthesized_batches)

    def test_report_measures_the_learned_rounding(self):
        model = tiny_resnet()
        result = _quantize(
            model, images=random_images(8), reconstruction=dict(steps=30, batch_size=4)
        )
        report = result.report
        self.assertIs(report, result.model.quantization_report)
        statuses = {row.name: row.status for row in report}
        self.assertEqual(statuses["stem_bn"], "folded")
        self.assertEqual(statuses["head"], "quantized")
        rtn = {
            row.name: row.weight_sqnr_db
            for row in ks.quantize_model(model, result.quant_config).quantization_report
            if row.status == "quantized"
        }
        learned = {r.name: r.weight_sqnr_db for r in report.quantized_layers}
        self.assertEqual(set(learned), set(rtn))
        # The reported SQNR is that of the weights the model now computes with.
        self.assertTrue(any(learned[n] != rtn[n] for n in rtn))
        for name, sqnr in learned.items():
            layer = result.model.get_layer(name)
            kernel = to_numpy(layer.kernel)
            used = layer.integer_kernel() * to_numpy(layer.weight_step)
            noise = np.sum((kernel - used) ** 2)
            self.assertAlmostEqual(
                sqnr, 10 * np.log10(np.sum(kernel**2) / noise), places=4, msg=name
            )
        self.assertIn("W4A4, calibration: images (8 images)", result.summary())

    def test_interrupted_run_resumes_to_the_same_model(self):
        model = tiny_resnet()
        options = dict(method="genie", synthesis=_SYNTHESIS, **_SPACE)
        full = _quantize(
            model, directory=os.path.join(self.temp_dir(), "full"), **options
        )
        directory = os.path.join(self.temp_dir(), "resumed")
        # fit calls: synthesis batches 1-2, then blocks 1-4; stop inside block 2.
        with self.assertRaises(KeyboardInterrupt):
            _quantize(
                model, directory=directory, callbacks=[_Interrupt(4, 2)], **options
            )
        self.assertEqual(sorted(os.listdir(directory)), ["reconstruction", "synthetic"])
        resumed = _quantize(model, directory=directory, **options)
        np.testing.assert_array_equal(resumed.data, full.data)
        self.assertEmpty(resumed.histories["synthesis"])  # loaded, not synthesized
        self.assertLen(resumed.histories["reconstruction"], 3)  # blocks 2-4
        x = random_images(8)
        self.assertAllClose(resumed.model(x), full.model(x), atol=1e-6)

    def test_errors(self):
        model = tiny_resnet()
        x = random_images(8)
        with self.assertRaisesRegex(ValueError, "not both.*method='genie'"):
            ks.quantize(model, method="genie", images=x)
        with self.assertRaisesRegex(ValueError, r"\(N, 12, 12, 3\).*\(8, 6, 6, 3\)"):
            ks.quantize(model, images=x[:, :6, :6])
        with self.assertRaisesRegex(ValueError, "weight_bits=9"):
            ks.quantize(model, weight_bits=9, images=x)
        with self.assertRaisesRegex(ValueError, "`method` must be one of.*'genius'"):
            ks.quantize(model, method="genius")
        with self.assertRaisesRegex(
            ValueError, "weight_bits=3, quant_config.weight_bits=4"
        ):
            ks.quantize(
                model, weight_bits=3, quant_config=ks.QuantConfig(4, 4), images=x
            )
        with self.assertRaisesRegex(
            TypeError, "`reconstruction` must be a `ReconstructionConfig`"
        ):
            ks.quantize(model, images=x, reconstruction=ks.SynthesisConfig())
        with self.assertRaisesRegex(ValueError, "takes no `synthesis`"):
            ks.quantize(model, images=x, synthesis={"steps": 3})
        with self.assertRaisesRegex(ValueError, "Unknown SynthesisConfig field.*stepz"):
            ks.quantize(model, synthesis={"stepz": 3})
        with self.assertRaisesRegex(TypeError, "subclassed"):
            ks.quantize(_Subclassed(), images=x)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)
