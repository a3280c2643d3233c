import os

import keras
import numpy as np

import keras_sagdq as ks
from keras_sagdq.layers import ActivationQuantizer
from keras_sagdq.layers import SharedGrid
from keras_sagdq.layers import activation_quantizers
from keras_sagdq.layers import share_grids
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import randomize_batchnorms
from tests.test_case import to_numpy

layers = keras.layers


def densenet_style(merge="concatenate"):
    """A transition (BN -> ReLU -> 1x1 conv -> 2x2 average pooling), then a merge."""
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    y = layers.ReLU()(layers.BatchNormalization()(x))
    y = layers.Conv2D(8, 1, use_bias=False, name="transition")(y)
    y = layers.AveragePooling2D(2, name="pool")(y)
    z = layers.ReLU()(layers.BatchNormalization()(y))
    if merge == "concatenate":
        z = layers.Conv2D(4, 3, padding="same", use_bias=False, name="growth")(z)
        x = layers.Concatenate(name="cat")([y, z])
    else:
        z = layers.Conv2D(8, 3, padding="same", use_bias=False, name="growth")(z)
        x = layers.Add(name="add")([y, z])
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    return randomize_batchnorms(keras.Model(inputs, layers.Dense(5)(x)))


class SharedGridTest(TestCase):
    def _rounding(self, bits, signed, step):
        source = ActivationQuantizer(bits=bits, signed=signed, initialized=True)
        source.step.assign(step)
        rounding = SharedGrid(source=source.name, mode="hard")
        rounding.copy_grid(source)
        return rounding

    def test_ties_round_half_away_from_zero_in_the_files_integers(self):
        # 4-bit unsigned grid: the file stores q + 112 (zero point 127 - 15),
        # so every tie of q is a positive tie and rounds up.
        rounding = self._rounding(4, False, 0.5)
        x = np.array([0.25, 0.75, 1.25, 0.625, 7.5], "float32")  # 0.5 1.5 2.5 1.25 15
        np.testing.assert_allclose(
            to_numpy(rounding(x)), [0.5, 1.0, 1.5, 0.5, 7.5], atol=1e-6
        )
        # 8-bit signed grid: the file stores q itself; ties round away from 0,
        # where keras.ops.round would give -2 and 2 for -2.5 and 2.5.
        rounding = self._rounding(8, True, 0.5)
        x = np.array([-1.25, 1.25, -0.75, 0.75], "float32")  # -2.5 2.5 -1.5 1.5
        np.testing.assert_allclose(
            to_numpy(rounding(x)), [-1.5, 1.5, -1.0, 1.0], atol=1e-6
        )

    def test_learns_nothing_and_copies_its_source(self):
        rounding = self._rounding(4, False, 0.25)
        self.assertFalse(rounding.trainable_weights)
        rounding.initialize(np.ones(10, "float32") * 100.0)
        self.assertAllClose(rounding.step, 0.25)

    def test_unknown_source_is_a_clear_error(self):
        inputs = keras.Input((4,))
        model = keras.Model(inputs, SharedGrid(source="nowhere")(inputs))
        with self.assertRaisesRegex(ValueError, "nowhere"):
            share_grids(model)


class AveragePoolingRewriteTest(TestCase):
    def setUp(self):
        super().setUp()
        keras.utils.set_random_seed(0)
        self.images = random_images(32, (16, 16, 3))
        self.qmodel = ks.quantize_model(
            densenet_style(), ks.QuantConfig(4, 4), calibration_data=self.images
        )

    def test_pool_output_is_rounded_onto_its_input_grid(self):
        rows = {row.name: row for row in self.qmodel.quantization_report}
        self.assertIn("rounded onto its input's grid", rows["pool"].reason)
        (rounding,) = [
            q for q in activation_quantizers(self.qmodel) if isinstance(q, SharedGrid)
        ]
        source = self.qmodel.get_layer(rounding.source)
        transition = self.qmodel.get_layer("transition")
        self.assertEqual(source.input.name, transition.output.name)
        self.assertAllClose(rounding.step, source.step)
        self.assertEqual(rounding.integer_range, source.integer_range)

    def test_concatenation_inputs_read_only_there_have_no_grid_of_their_own(self):
        growth = self.qmodel.get_layer("growth").output
        readers = [q for q in activation_quantizers(self.qmodel) if q.input is growth]
        self.assertEqual(readers, [])

    def test_saving_round_trip_keeps_the_shared_grid(self):
        path = os.path.join(self.temp_dir(), "q.keras")
        self.qmodel.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        self.assertAllClose(loaded(self.images[:4]), self.qmodel(self.images[:4]))

    def test_file_computes_the_keras_models_integers(self):
        # The converter refuses an AVERAGE_POOL_2D with two scales; with the
        # shared grid and the tie rule the file is exact, the pooling run by
        # TFLite's kernel (XNNPACK takes average pooling in float only). An
        # Add, not the concatenation: the pooled grid would reach that on
        # another scale through XNNPACK's int8 requantization, whose 8-bit
        # fraction multiplier the Keras model does not copy (docs).
        qmodel = ks.quantize_model(
            densenet_style("add"), ks.QuantConfig(4, 4), calibration_data=self.images
        )
        path = os.path.join(self.temp_dir(), "densenet.tflite")
        ks.export_tflite(qmodel, path, representative_data=self.images)
        agreement = ks.verify_tflite(
            path, qmodel, random_images(32, (16, 16, 3), seed=1)
        )
        self.assertEqual(agreement.max_error_steps, 0.0)
        self.assertEqual(agreement.ops_outside_delegate, ("AVERAGE_POOL_2D",))
