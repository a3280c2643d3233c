import os

import keras
import numpy as np
from absl.testing import parameterized
from ai_edge_litert.interpreter import Interpreter

import keras_sagdq as ks
from keras_sagdq import private_api
from keras_sagdq.export.fake_quant_graph import FakeQuantGraph
from keras_sagdq.export.fake_quant_graph import deployed_weights
from keras_sagdq.layers import QuantConv2D
from keras_sagdq.layers import QuantDepthwiseConv2D
from keras_sagdq.layers import weight_layers
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import randomize_batchnorms
from tests.test_case import tiny_resnet
from tests.test_case import to_numpy

# Ops that only move data between the float and integer worlds, and the
# XNNPACK delegate node that wraps the integer ops.
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE", "DELEGATE"}


def _tflite_layout(layer):
    """The layer's weight integers in TFLite's layout."""
    integers = layer.integer_kernel()
    if isinstance(layer, QuantConv2D):
        return integers.transpose(3, 0, 1, 2)  # HWIO -> OHWI
    if isinstance(layer, QuantDepthwiseConv2D):
        return integers.reshape(1, *integers.shape[:2], -1)  # (1, H, W, C * M)
    return integers.T[:, None, None, :]  # Dense as a 1x1 convolution


def _constant_tensors(interpreter):
    result = []
    for details in interpreter.get_tensor_details():
        try:
            result.append((details, interpreter.get_tensor(details["index"])))
        except ValueError:  # activations hold no data before invoke()
            pass
    return result


class ActivationGridTest(TestCase):
    @parameterized.parameters((4, False), (4, True), (3, True), (8, False))
    def test_exact_grid_matches_the_quantizer(self, bits, signed):
        quantizer = ks.layers.ActivationQuantizer(
            bits=bits, signed=signed, mode="hard", initialized=True
        )
        quantizer.step.assign(0.37)
        qmin, qmax = quantizer.integer_range
        # Points between grid values (no ties), inside and outside the range.
        x = (np.arange(qmin - 6, qmax + 6) + 0.3).astype("float32") * 0.37
        expected = to_numpy(quantizer(x))
        graph = FakeQuantGraph.__new__(FakeQuantGraph)
        graph.activation_grid = "exact"
        actual = to_numpy(graph._quantize_activation(x, qmin, qmax, 0.37))
        np.testing.assert_allclose(actual, expected, atol=1e-5)


class _FilesTest(TestCase):
    """Seeded; a folder for the class's files and 64 images in [0, 255]."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        keras.utils.set_random_seed(0)
        cls.folder = __import__("tempfile").mkdtemp()
        cls.images = random_images(64)

    @classmethod
    def tearDownClass(cls):
        __import__("shutil").rmtree(cls.folder, ignore_errors=True)
        super().tearDownClass()


class ExportTest(_FilesTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.qmodel = ks.quantize_model(tiny_resnet(), ks.QuantConfig(4, 4))
        ks.calibrate_activations(cls.qmodel, cls.images)
        cls.float_io = ks.export_tflite(
            cls.qmodel, os.path.join(cls.folder, "float_io.tflite"), cls.images
        )
        cls.int8_io = ks.export_tflite(
            cls.qmodel,
            os.path.join(cls.folder, "int8_io.tflite"),
            cls.images,
            int8_io=True,
        )

    def test_weight_integers_and_scales_are_the_models(self):
        interpreter = Interpreter(model_path=self.float_io)
        interpreter.allocate_tensors()
        constants = _constant_tensors(interpreter)
        layers = weight_layers(self.qmodel)
        self.assertLen(layers, 7)
        for layer in layers:
            expected = _tflite_layout(layer)
            matches = [
                d
                for d, t in constants
                if t.dtype == np.int8
                and t.shape == expected.shape
                and np.array_equal(t, expected)
            ]
            self.assertLen(matches, 1, msg=layer.name)
            (details,) = matches
            steps = keras.ops.convert_to_numpy(layer.weight_step).reshape(-1)
            scales = details["quantization_parameters"]["scales"].astype(np.float32)
            # Integers are exact; the converter derives each scale from the
            # fake-quant range in float arithmetic, which cannot land on every
            # float32 step: at most one unit in the last place off.
            np.testing.assert_array_max_ulp(scales, steps, maxulp=1)
            np.testing.assert_array_equal(
                details["quantization_parameters"]["zero_points"], 0
            )

    def test_every_op_is_integer(self):
        for path, io_dtype in ((self.float_io, np.float32), (self.int8_io, np.int8)):
            interpreter = Interpreter(model_path=path)
            interpreter.allocate_tensors()
            self.assertEqual(interpreter.get_input_details()[0]["dtype"], io_dtype)
            self.assertEqual(interpreter.get_output_details()[0]["dtype"], io_dtype)
            ops = private_api.tflite_ops(interpreter)
            self.assertIn("CONV_2D", {op["op_name"] for op in ops})
            self.assertIn("DEPTHWISE_CONV_2D", {op["op_name"] for op in ops})
            for op in ops:
                if op["op_name"] in _BOUNDARY_OPS:
                    continue
                dtypes = {
                    private_api.tflite_tensor(interpreter, i)["dtype"]
                    for i in list(op["inputs"]) + list(op["outputs"])
                    if i >= 0
                }
                self.assertLessEqual(dtypes, {np.int8, np.int32}, msg=op["op_name"])
            if io_dtype == np.int8:
                self.assertNotIn("QUANTIZE", {op["op_name"] for op in ops})

    def test_one_delegate_partition(self):
        # Unsigned activation grids only: XNNPACK takes the whole file.
        self.assertEqual(ks.export.delegate_partitions(self.float_io), 1)

    def test_verify_agrees_with_the_keras_model(self):
        test_images = random_images(40, seed=1)
        for path in (self.float_io, self.int8_io):
            agreement = ks.verify_tflite(path, self.qmodel, test_images)
            self.assertEqual(agreement.num_images, 40)
            # With every tensor on a grid (`int8_tensors`, the default) the
            # file computes the Keras model's integers: 0 steps of difference
            # on both backends here; one step leaves room for a tie that
            # another CPU's float rounding resolves the other way.
            self.assertEqual(agreement.top1_agreement, 1.0)
            self.assertLessEqual(agreement.max_error_steps, 1.0)
            self.assertLess(agreement.mean_error_steps, 0.01)
            self.assertIn("top-1 agreement", str(agreement))

    def test_low_bit_weights_pack_symmetric_4_bit_layers(self):
        qmodel = ks.quantize_model(
            tiny_resnet(), ks.QuantConfig(4, 4, weight_symmetric=True)
        )
        ks.calibrate_activations(qmodel, self.images)
        folder = self.temp_dir()
        plain = ks.export_tflite(
            qmodel, os.path.join(folder, "int8.tflite"), self.images
        )
        packed = ks.export_tflite(
            qmodel,
            os.path.join(folder, "int4.tflite"),
            self.images,
            low_bit_weights=True,
        )
        # Five 4-bit layers hold 3 104 weights: int4 saves about 1.5 KB.
        self.assertLess(os.path.getsize(packed), os.path.getsize(plain) - 1000)
        agreement = ks.verify_tflite(packed, qmodel, random_images(20, seed=1))
        self.assertEqual(agreement.top1_agreement, 1.0)

    def test_low_bit_weights_keep_depthwise_layers_int8(self):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.Conv2D(8, 1)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(3)(x))
        qmodel = ks.quantize_model(
            model, ks.QuantConfig(3, 4), calibration_data=random_images(4, (8, 8, 3))
        )
        graph = FakeQuantGraph(qmodel, low_bit_weights=True)
        num_bits = {
            type(layer).__name__ + ("_first" if i == 0 else ""): graph.weights[
                id(layer)
            ][3]
            for i, layer in enumerate(weight_layers(qmodel))
        }
        # 3-bit integers fit int4, but TFLite's int4 depthwise kernel is not
        # exact; first and last layers have 8-bit weights.
        self.assertEqual(
            num_bits,
            {
                "QuantConv2D_first": 8,
                "QuantDepthwiseConv2D": 8,
                "QuantConv2D": 4,
                "QuantDense": 8,
            },
        )

    def test_input_range_sets_the_input_quantization(self):
        # Representative images in [0, 100] only; the model takes [0, 255].
        path = ks.export_tflite(
            self.qmodel,
            os.path.join(self.temp_dir(), "r.tflite"),
            self.images * 100 / 255,
            input_range=(0, 255),
        )
        interpreter = Interpreter(model_path=path)
        interpreter.allocate_tensors()
        first = private_api.tflite_ops(interpreter)[0]
        self.assertEqual(first["op_name"], "QUANTIZE")
        scale, zero_point = private_api.tflite_tensor(interpreter, first["outputs"][0])[
            "quantization"
        ]
        self.assertAlmostEqual(scale, 1.0, places=5)  # 255 / 255 levels
        self.assertEqual(zero_point, -128)

    def test_default_input_range(self):
        # tiny_resnet starts with Rescaling(1/255): [0, 255] pixels are covered
        # even when the representative images stop at 100.
        images = np.linspace(0, 100, 12 * 12 * 3 * 2, dtype="float32").reshape(
            2, 12, 12, 3
        )
        self.assertEqual(
            ks.export.default_input_range(self.qmodel, images), (0.0, 255.0)
        )
        inputs = keras.Input((4, 4, 1))
        x = keras.layers.Conv2D(2, 1)(inputs)
        plain = ks.quantize_model(keras.Model(inputs, keras.layers.Dense(2)(x)))
        cases = [
            ((0.01, 0.8), (0.0, 1.0)),  # GENIE images of a [0, 1] model
            ((-0.01, 0.8), (0.0, 1.0)),  # within the 2 % tolerance
            ((-0.6, 0.9), (-1.0, 1.0)),
            ((3.0, 200.0), (0.0, 255.0)),
            ((-0.8, 2.2), (-1.55, 2.95)),  # standardized: widened by 3 / 4
        ]
        for (low, high), expected in cases:
            with self.subTest(low=low, high=high):
                data = np.linspace(low, high, 32, dtype="float32").reshape(2, 4, 4, 1)
                result = ks.export.default_input_range(plain, data)
                self.assertAllClose(np.array(result), np.array(expected), atol=1e-5)
        # The file's input grid follows it: 255 / 255 per level.
        path = ks.export_tflite(
            self.qmodel, os.path.join(self.temp_dir(), "d.tflite"), images
        )
        interpreter = Interpreter(model_path=path)
        first = private_api.tflite_ops(interpreter)[0]
        scale, _ = private_api.tflite_tensor(interpreter, first["outputs"][0])[
            "quantization"
        ]
        self.assertAlmostEqual(scale, 1.0, places=4)
        self.assertAllClose(
            np.array(ks.export.input_range_of(path)), np.array([0.0, 255.0]), atol=1e-4
        )

    @parameterized.named_parameters(
        ("unit", 0.29, 0.35, (0.0, 1.0)),  # Fashion-MNIST in [0, 1]
        ("signed", -0.4, 0.7, (-1.0, 1.0)),
        ("pixels", 73.0, 90.0, (0.0, 255.0)),
    )
    def test_default_input_range_from_a_normalization_layer(self, mean, std, expected):
        inputs = keras.Input((4, 4, 1))
        x = keras.layers.Normalization(mean=mean, variance=std**2)(inputs)
        x = keras.layers.Conv2D(2, 1)(x)
        qmodel = ks.quantize_model(keras.Model(inputs, keras.layers.Dense(2)(x)))
        # Synthetic images overshoot the pixel range; the declaration wins.
        data = np.linspace(mean - 3 * std, mean + 3 * std, 32, dtype="float32")
        low, high, reason = ks.export.choose_input_range(
            qmodel, data.reshape(2, 4, 4, 1)
        )
        self.assertEqual((low, high), expected)
        # The quantized model holds the Normalization as a Rescaling.
        self.assertIn("mean and std", reason)

    def test_conversion_timeout_is_a_clear_error(self):
        from keras_sagdq.export import tflite

        path = os.path.join(self.temp_dir(), "t.tflite")
        with self.assertRaisesRegex(RuntimeError, "conversion_timeout=0.01"):
            tflite._export_in_child(self.qmodel, path, self.images, {}, timeout=0.01)
        self.assertFalse(os.path.exists(path))

    def test_errors(self):
        path = os.path.join(self.temp_dir(), "x.tflite")
        with self.assertRaisesRegex(ValueError, "input_range"):
            ks.export_tflite(self.qmodel, path, self.images, input_range=(1, 0))
        with self.assertRaisesRegex(ValueError, "representative_data=None"):
            ks.export_tflite(self.qmodel, path)
        with self.assertRaisesRegex(ValueError, "shape"):
            ks.export_tflite(self.qmodel, path, np.zeros((4, 8, 8, 3), "float32"))
        with self.assertRaisesRegex(ValueError, "no quantized layer"):
            ks.export_tflite(tiny_resnet(), path, self.images)
        self.assertFalse(os.path.exists(path))

    def test_asymmetric_8_bit_weights_do_not_fit_int8(self):
        layer = QuantConv2D(4, 1, weight_bits=8, weight_symmetric=False, mode="hard")
        layer.build((None, 4, 4, 2))
        # All-positive weights: zero point 0, integers up to 255.
        layer.kernel.assign(np.linspace(0.1, 1.0, 8).reshape(1, 1, 2, 4))
        layer.initialize_weight_quantizer(weight_range="minmax")
        with self.assertRaisesRegex(
            ValueError, r"outside \[-127, 127\].*weight_symmetric=False"
        ):
            deployed_weights(layer)

    def test_eight_bit_layers_are_symmetric(self):
        for layer in weight_layers(self.qmodel):
            if layer.weight_bits == 8:
                self.assertTrue(layer.weight_symmetric, msg=layer.name)
                self.assertLessEqual(np.abs(layer.integer_kernel()).max(), 127)


class Int8TensorsTest(_FilesTest):
    """`QuantConfig(int8_tensors=True)`: the file computes the Keras model."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.models = {}
        cls.files = {}
        cls.float_model = tiny_resnet()
        for int8_tensors in (False, True):
            qmodel = ks.quantize_model(
                cls.float_model, ks.QuantConfig(4, 4, int8_tensors=int8_tensors)
            )
            ks.calibrate_activations(qmodel, cls.images)
            cls.models[int8_tensors] = qmodel
            cls.files[int8_tensors] = ks.export_tflite(
                qmodel, os.path.join(cls.folder, f"{int8_tensors}.tflite"), cls.images
            )

    def test_quantizers_cover_every_tensor_the_file_holds(self):
        plain = {q.name for q in ks.layers.activation_quantizers(self.models[False])}
        full = {q.name for q in ks.layers.activation_quantizers(self.models[True])}
        self.assertLess(plain, full)
        # The input, the standardized input, the convolutions feeding the
        # additions (named after the convolution their BatchNorm folded
        # into), the last ReLU (read by the pooling), the logits. Not the
        # pooled features: the Dropout after them is quantized already (the
        # head's 8-bit input); not the outputs read only by a ReLU.
        rescaling = self.float_model.layers[1].name
        last_relu = [
            layer.name
            for layer in self.float_model.layers
            if isinstance(layer, keras.layers.ReLU)
        ][-1]
        self.assertEqual(
            full - plain,
            {
                f"{name}_act_quant"
                for name in (
                    "input",
                    rescaling,
                    "b1_c2",
                    "b1_short",
                    "b2_pw",
                    last_relu,
                    "head",
                )
            },
        )

    def test_input_grid_is_the_pixel_grid_and_stays_fixed(self):
        qmodel = self.models[True]
        first = ks.input_range.input_quantizer(qmodel)
        self.assertFalse(first.signed)
        self.assertFalse(first.trainable)
        self.assertAllClose(to_numpy(first.step), 1.0, atol=1e-6)  # [0, 255] / 255
        self.assertAllClose(
            np.array(ks.export.input_range_of(self.files[True])),
            np.array([0.0, 255.0]),
            atol=1e-4,
        )

    def test_biases_are_in_int32_units_and_float_mode_is_untouched(self):
        qmodel = self.models[True]
        layer = qmodel.get_layer("b2_pw")
        unit = to_numpy(layer.input_step) * to_numpy(layer.weight_step).reshape(-1)
        self.assertGreater(float(to_numpy(layer.input_step)), 0.0)
        units = to_numpy(layer.aligned_bias()) / unit
        self.assertAllClose(units, np.round(units), atol=1e-3)
        with ks.layers.quantization_off(qmodel):
            twin = to_numpy(qmodel.predict(self.images[:8], verbose=0))
        # The float twin still computes the float model (its Rescaling has no
        # offset to round).
        expected = to_numpy(self.float_model.predict(self.images[:8], verbose=0))
        self.assertAllClose(twin, expected, atol=1e-4, rtol=1e-4)
        hard = to_numpy(qmodel.predict(self.images[:8], verbose=0))
        layer.input_step.assign(0.0)  # float biases again
        ks.layers.reset_compiled_functions(qmodel)
        unaligned = to_numpy(qmodel.predict(self.images[:8], verbose=0))
        ks.align_biases(qmodel)
        ks.layers.reset_compiled_functions(qmodel)
        self.assertFalse(np.array_equal(hard, unaligned))
        self.assertAllClose(
            to_numpy(qmodel.predict(self.images[:8], verbose=0)), hard, atol=0, rtol=0
        )

    def test_file_matches_the_keras_model(self):
        test_images = random_images(100, seed=1)
        exact = ks.verify_tflite(self.files[True], self.models[True], test_images)
        rough = ks.verify_tflite(self.files[False], self.models[False], test_images)
        self.assertEqual(exact.top1_agreement, 1.0)
        self.assertLess(exact.max_error_steps, 1.01)  # a tie at most
        self.assertLess(exact.mean_error_steps, 0.05)
        # Without the 8-bit grids the file rounds tensors the model does not.
        self.assertGreater(rough.mean_error_steps, 4 * exact.mean_error_steps)

    def test_quantizer_after_the_standardization_covers_real_inputs(self):
        # Like the reference models: [0, 1] pixels standardized by a Rescaling.
        inputs = keras.Input((8, 8, 1))
        x = keras.layers.Rescaling(1 / 0.35, offset=-0.29 / 0.35)(inputs)
        x = keras.layers.Conv2D(4, 3)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, keras.layers.Dense(3)(x))
        qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4, int8_tensors=True))
        # Synthetic-like images that stop at 0.6: real pixels reach 1.
        dim = np.random.default_rng(0).uniform(0, 0.6, (16, 8, 8, 1))
        ks.calibrate_activations(qmodel, dim.astype("float32"))
        after = [
            q
            for q in ks.layers.activation_quantizers(qmodel)
            if q.name.startswith("rescaling")
        ][0]
        qmin, qmax = after.integer_range
        step = float(to_numpy(after.step))
        self.assertGreaterEqual(qmax * step, (1 - 0.29) / 0.35 - 1e-4)
        self.assertLessEqual(qmin * step, -0.29 / 0.35 + 1e-4)
        # Reconstruction on the dim images keeps the covering step.
        ks.reconstruct(qmodel, model, dim.astype("float32"), steps=20, verbose=0)
        self.assertEqual(float(to_numpy(after.step)), step)


def _linear_bottleneck(input_shape=(12, 12, 3), classes=5, padded=False):
    """Two MobileNetV2-style blocks: the projections and the sum are signed.

    With `padded`, the second depthwise convolution reads a ZeroPadding2D of
    a ReLU6 (as in keras.applications' strided blocks).
    """
    layers = keras.layers
    inputs = keras.Input(input_shape)
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.Conv2D(8, 3, padding="same", name="stem")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    for block in (1, 2):
        y = layers.Conv2D(16, 1, name=f"b{block}_expand")(x)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU(6.0)(y)
        if padded and block == 2:
            y = layers.ZeroPadding2D(1)(y)
            y = layers.DepthwiseConv2D(3, name=f"b{block}_dw")(y)
        else:
            y = layers.DepthwiseConv2D(3, padding="same", name=f"b{block}_dw")(y)
        y = layers.BatchNormalization()(y)
        y = layers.ReLU(6.0)(y)
        y = layers.Conv2D(8, 1, name=f"b{block}_project")(y)
        y = layers.BatchNormalization()(y)
        # No ReLU: the projection and the sum read by the next block are signed.
        x = y if block == 1 else layers.Add()([x, y])
    x = layers.Conv2D(16, 1, name="last")(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, name="head")(x)
    return randomize_batchnorms(keras.Model(inputs, outputs))


class SignedGridTest(_FilesTest):
    """Signed 4-bit grids (linear bottlenecks) convert exactly into one partition."""

    def test_signed_grids_stay_in_the_delegate_and_match_keras(self):
        qmodel = ks.quantize_model(
            _linear_bottleneck(), ks.QuantConfig(4, 4, int8_tensors=True)
        )
        ks.calibrate_activations(qmodel, self.images)
        signed = [
            q.name
            for q in ks.layers.activation_quantizers(qmodel)
            if q.signed and q.bits == 4
        ]
        # The first block's projection and the sum (the inputs of b2_expand
        # and of the last convolution).
        self.assertLen(signed, 2)
        path = ks.export_tflite(
            qmodel, os.path.join(self.folder, "signed.tflite"), self.images
        )
        interpreter = Interpreter(model_path=path)
        ops = {op["op_name"] for op in interpreter._get_ops_details()}
        self.assertNotIn("MAXIMUM", ops)
        self.assertEqual(ks.export.delegate_partitions(path), 1)
        agreement = ks.verify_tflite(path, qmodel, random_images(100, seed=1))
        self.assertEqual(agreement.top1_agreement, 1.0)
        self.assertLess(agreement.max_error_steps, 1.01)  # a tie at most

    def test_padded_relu_outputs_need_no_relu_op(self):
        # The quantizer after a ZeroPadding2D of a ReLU6: a ReLU op there
        # cannot be fused into the PAD, and XNNPACK does not take it.
        qmodel = ks.quantize_model(
            _linear_bottleneck(padded=True), ks.QuantConfig(4, 4, int8_tensors=True)
        )
        ks.calibrate_activations(qmodel, self.images)
        path = ks.export_tflite(
            qmodel, os.path.join(self.folder, "padded.tflite"), self.images
        )
        interpreter = Interpreter(model_path=path)
        ops = [op["op_name"] for op in interpreter._get_ops_details()]
        self.assertNotIn("RELU", ops)
        self.assertEqual(ks.export.delegate_partitions(path), 1)
        agreement = ks.verify_tflite(path, qmodel, random_images(100, seed=1))
        self.assertEqual(agreement.top1_agreement, 1.0)
        self.assertLess(agreement.max_error_steps, 1.01)


class PoolingHeadTest(_FilesTest):
    def test_raw_pixel_vgg_with_a_batchnorm_head_is_exact(self):
        # Raw [0, 255] pixels, max pooling before convolutions and before the
        # Flatten, and a Dense -> ReLU -> BatchNorm -> Dropout head: the
        # biases after a pooling need the quantizer before it as their unit.
        inputs = keras.Input((12, 12, 1))
        x = keras.layers.Rescaling(1 / 255.0)(inputs)
        for width in (8, 16):
            x = keras.layers.Conv2D(width, 3, padding="same")(x)
            x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
            x = keras.layers.MaxPooling2D(2, name=f"pool{width}")(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(16, activation="relu")(x)
        x = keras.layers.BatchNormalization(name="head_bn")(x)
        x = keras.layers.Dropout(0.3)(x)
        model = randomize_batchnorms(
            keras.Model(inputs, keras.layers.Dense(4, name="logits")(x))
        )
        images = random_images(64, (12, 12, 1), seed=0, scale=255.0)
        qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4), calibration_data=images)
        rows = {row.name: row for row in qmodel.quantization_report}
        self.assertIn("as a Rescaling", rows["head_bn"].reason)
        after_pool = ks.layers.weight_layers(qmodel)[1]
        self.assertGreater(float(to_numpy(after_pool.input_step)), 0.0)
        path = os.path.join(self.temp_dir(), "vgg.tflite")
        ks.export_tflite(qmodel, path, representative_data=images)
        test_images = random_images(64, (12, 12, 1), seed=1, scale=255.0)
        agreement = ks.verify_tflite(path, qmodel, test_images)
        self.assertLessEqual(agreement.max_error_steps, 1.0)
        self.assertLess(agreement.mean_error_steps, 0.05)
        self.assertEqual(agreement.partitions, 1)

    def test_negative_learned_steps_export_exactly(self):
        # Reconstruction can carry a channel's step below zero (seen on the
        # zoo's se_hardswish at W3A3); the file stores |step| and negated
        # integers, and the bias unit is positive in both.
        model = tiny_resnet()
        images = random_images(32)
        qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4), calibration_data=images)
        layer = weight_layers(qmodel)[1]
        steps = to_numpy(layer.weight_step).copy()
        steps[..., ::2] *= -1.0
        layer.weight_step.assign(steps)
        ks.calibrate_activations(qmodel, images)
        path = os.path.join(self.temp_dir(), "negative.tflite")
        ks.export_tflite(qmodel, path, representative_data=images)
        agreement = ks.verify_tflite(path, qmodel, random_images(32, seed=1))
        self.assertEqual(agreement.top1_agreement, 1.0)
        self.assertLessEqual(agreement.max_error_steps, 1.0)

    def test_strided_1x1_pooling_stays_in_the_delegate(self):
        # ResNetV2's shortcuts subsample with MaxPooling2D(1, strides=2);
        # XNNPACK takes no 1x1 pooling, the file writes it as an identity
        # strided depthwise convolution.
        inputs = keras.Input((12, 12, 3))
        x = keras.layers.Conv2D(8, 3, padding="same")(inputs)
        pre = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        shortcut = keras.layers.MaxPooling2D(1, strides=2)(x)
        y = keras.layers.Conv2D(8, 3, strides=2, padding="same")(pre)
        x = keras.layers.Add()([shortcut, y])
        x = keras.layers.GlobalAveragePooling2D()(x)
        model = randomize_batchnorms(keras.Model(inputs, keras.layers.Dense(4)(x)))
        qmodel = ks.quantize_model(
            model, ks.QuantConfig(4, 4), calibration_data=self.images
        )
        path = os.path.join(self.temp_dir(), "subsample.tflite")
        ks.export_tflite(qmodel, path, representative_data=self.images)
        agreement = ks.verify_tflite(path, qmodel, random_images(32, seed=1))
        self.assertEqual(agreement.partitions, 1)
        self.assertEqual(agreement.top1_agreement, 1.0)
        self.assertLessEqual(agreement.max_error_steps, 1.0)
