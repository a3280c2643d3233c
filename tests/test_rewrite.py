import keras
import numpy as np
from absl.testing import parameterized
from keras import layers

import keras_sagdq as ks
from keras_sagdq import private_api
from keras_sagdq.layers import activation_quantizers
from keras_sagdq.layers import weight_layers
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import randomize_batchnorms
from tests.test_case import tiny_resnet
from tests.test_case import to_numpy


class RewriteTest(TestCase):
    def setUp(self):
        super().setUp()
        self.model = tiny_resnet()
        self.images = random_images(8)

    def test_report_and_layers(self):
        qmodel = ks.quantize_model(self.model, ks.QuantConfig(4, 4))
        report = qmodel.quantization_report
        quantized = {r.name: r for r in report.quantized_layers}
        self.assertEqual(
            sorted(quantized),
            sorted(["stem", "b1_c1", "b1_c2", "b1_short", "b2_dw", "b2_pw", "head"]),
        )
        self.assertEqual(len(report.with_status("folded")), 6)
        self.assertEqual(report.float_layers, [])
        self.assertEqual(
            (quantized["stem"].weight_bits, quantized["stem"].input_bits), (8, None)
        )
        self.assertEqual(
            (quantized["head"].weight_bits, quantized["head"].input_bits), (8, 8)
        )
        self.assertEqual(
            (quantized["b1_c2"].weight_bits, quantized["b1_c2"].input_bits), (4, 4)
        )
        self.assertGreater(
            quantized["head"].weight_sqnr_db, quantized["b1_c2"].weight_sqnr_db
        )
        self.assertIn("folded into 'stem'", str(report))
        self.assertFalse(
            any(isinstance(layer, layers.BatchNormalization) for layer in qmodel.layers)
        )

    def test_float_mode_matches_original(self):
        qmodel = ks.quantize_model(self.model)
        ks.calibrate_activations(qmodel, self.images)
        self.assertFloatTwin(qmodel, self.model, self.images, atol=1e-4, rtol=1e-4)
        ks.set_mode(qmodel, "hard")
        diff = np.abs(to_numpy(qmodel(self.images)) - to_numpy(self.model(self.images)))
        self.assertGreater(diff.max(), 1e-4)

    def test_residual_input_quantized_once(self):
        # The quantizers layers read (int8_tensors' extra grids: test_export).
        qmodel = ks.quantize_model(self.model, ks.QuantConfig(int8_tensors=False))
        quantizers = activation_quantizers(qmodel)
        # stem output (after ReLU) feeds b1_c1 and b1_short: one quantizer.
        # Then: b1_c2 input, block-1 output (b2_dw + identity), b2_pw input, head input.
        self.assertEqual(len(quantizers), 5)
        by_layer = {layer.name: layer for layer in qmodel.layers}
        self.assertIs(
            private_api.producing_layer(by_layer["b1_c1"].input),
            private_api.producing_layer(by_layer["b1_short"].input),
        )
        # The identity shortcut reads the same quantized tensor as b2_dw.
        add = [layer for layer in qmodel.layers if isinstance(layer, layers.Add)][1]
        self.assertIn(
            private_api.producing_layer(by_layer["b2_dw"].input),
            [private_api.producing_layer(t) for t in add.input],
        )
        self.assertEqual(sorted(q.bits for q in quantizers), [4, 4, 4, 4, 8])

    def test_original_untouched(self):
        before = [len(layer._inbound_nodes) for layer in self.model.layers]
        weights = [to_numpy(w).copy() for w in self.model.weights]
        ks.quantize_model(self.model)
        self.assertEqual(
            before, [len(layer._inbound_nodes) for layer in self.model.layers]
        )
        for w, v in zip(weights, self.model.weights):
            np.testing.assert_array_equal(w, to_numpy(v))

    def test_config_knobs(self):
        config = ks.QuantConfig(
            weight_bits=2,
            activation_bits=4,
            first_layer_weight_bits=None,
            last_layer_weight_bits=None,
            last_layer_activation_bits=None,
            quantize_first_layer_input=True,
            skip_layers=("b2_pw",),
        )
        qmodel = ks.quantize_model(self.model, config)
        report = qmodel.quantization_report
        self.assertEqual({r.weight_bits for r in report.quantized_layers}, {2})
        self.assertEqual({r.input_bits for r in report.quantized_layers}, {4})
        reasons = {r.name: r.reason for r in report.float_layers}
        self.assertEqual(reasons["b2_pw"], "listed in skip_layers")
        # Its BatchNorm cannot fold into a float layer and stays float too.
        self.assertIn("no quantized", reasons["b2_bn2"])
        self.assertEqual(len(reasons), 2)

    def test_sequential_and_nested(self):
        inner = keras.Sequential(
            [
                keras.Input((8, 8, 2)),
                layers.Conv2D(4, 3),
                layers.BatchNormalization(),
                layers.ReLU(),
            ],
            name="backbone",
        )
        randomize_batchnorms(inner)
        outer = keras.Sequential(
            [keras.Input((8, 8, 2)), inner, layers.Flatten(), layers.Dense(3)]
        )
        qmodel = ks.quantize_model(outer)
        names = [r.name for r in qmodel.quantization_report.quantized_layers]
        self.assertEqual(len(names), 2)
        x = random_images(4, (8, 8, 2), scale=1.0)
        self.assertFloatTwin(qmodel, outer, x)

    def test_concatenate_and_reshape_pass_through(self):
        inputs = keras.Input((8, 8, 3))
        a = layers.Conv2D(4, 3, padding="same", name="a")(inputs)
        b = layers.Conv2D(4, 1, name="b")(inputs)
        x = layers.Concatenate(name="cat")([layers.ReLU()(a), layers.ReLU()(b)])
        x = layers.Conv2D(2, 1, name="c")(x)
        x = layers.Reshape((8 * 8 * 2,), name="reshape")(x)
        outputs = layers.Dense(3, name="d")(x)
        model = keras.Model(inputs, outputs)
        qmodel = ks.quantize_model(model, ks.QuantConfig(int8_tensors=False))
        statuses = {r.name: r.status for r in qmodel.quantization_report}
        self.assertEqual(statuses["cat"], "passthrough")
        self.assertEqual(statuses["reshape"], "passthrough")
        # Both branches read the float input (first layers); the concatenation
        # feeding `c` is quantized once.
        by_position = {
            r.name: r.reason for r in qmodel.quantization_report.quantized_layers
        }
        self.assertEqual(
            by_position,
            {"a": "first layer", "b": "first layer", "c": "", "d": "last layer"},
        )
        self.assertEqual(len(activation_quantizers(qmodel)), 2)
        x = random_images(2, (8, 8, 3), scale=1.0)
        self.assertFloatTwin(qmodel, model, x)

    def test_unsupported_layer_kept_float(self):
        inputs = keras.Input((8, 8, 3))
        x = layers.Conv2D(4, 3, name="c1")(inputs)
        x = layers.Conv2DTranspose(4, 3, name="tconv")(x)
        x = layers.LayerNormalization(name="ln")(x)
        outputs = layers.Dense(2, name="d")(layers.Flatten()(x))
        model = keras.Model(inputs, outputs)
        qmodel = ks.quantize_model(model)
        reasons = {r.name: r.reason for r in qmodel.quantization_report.float_layers}
        self.assertEqual(sorted(reasons), ["ln", "tconv"])
        self.assertIn("Conv2DTranspose is not a supported layer type", reasons["tconv"])
        x = random_images(2, (8, 8, 3), scale=1.0)
        self.assertFloatTwin(qmodel, model, x)

    def test_bn_after_activation_not_folded(self):
        inputs = keras.Input((6, 6, 2))
        x = layers.Conv2D(3, 3, activation="relu", name="c")(inputs)
        x = layers.BatchNormalization(name="bn")(x)
        outputs = layers.Conv2D(2, 1, name="out")(x)
        model = randomize_batchnorms(keras.Model(inputs, outputs))
        # It cannot fold into 'c' (the ReLU is in between): it becomes a
        # per-channel affine, quantized on its own (graph/lowering.py).
        qmodel = ks.quantize_model(model)
        self.assertEqual(qmodel.quantization_report.float_layers, [])
        rows = {row.name: row for row in qmodel.quantization_report}
        self.assertIn("per-channel affine", rows["bn_affine"].reason)
        x = random_images(2, (6, 6, 2), scale=1.0)
        self.assertFloatTwin(qmodel, model, x)
        # With folding off it stays float, with the reason.
        qmodel = ks.quantize_model(model, ks.QuantConfig(fold_batchnorm=False))
        (row,) = qmodel.quantization_report.float_layers
        self.assertEqual(row.name, "bn")
        self.assertIn("fold_batchnorm=False", row.reason)

    def test_saving_round_trip(self):
        qmodel = ks.quantize_model(self.model, ks.QuantConfig(3, 3))
        ks.calibrate_activations(qmodel, self.images)
        path = self.temp_dir() + "/q.keras"
        qmodel.save(path)
        loaded = keras.models.load_model(path)
        self.assertEqual(len(weight_layers(loaded)), 7)
        self.assertAllClose(loaded(self.images), qmodel(self.images), atol=0)


class RewriteErrorsTest(TestCase):
    def test_subclassed_model(self):
        class Net(keras.Model):
            def __init__(self):
                super().__init__()
                self.dense = layers.Dense(2)

            def call(self, x):
                return self.dense(x)

        net = Net()
        net(np.ones((1, 3), "float32"))
        with self.assertRaisesRegex(
            TypeError, "subclassed.*Received: model of type Net"
        ):
            ks.quantize_model(net)

    def test_not_a_model(self):
        with self.assertRaisesRegex(TypeError, "Received: model of type Dense"):
            ks.quantize_model(layers.Dense(2))

    def test_unbuilt_model(self):
        with self.assertRaisesRegex(ValueError, "not built"):
            ks.quantize_model(keras.Sequential([layers.Dense(2)]))

    def test_no_quantizable_layer(self):
        inputs = keras.Input((4, 4, 2))
        model = keras.Model(
            inputs, layers.GlobalAveragePooling2D()(layers.ReLU()(inputs))
        )
        with self.assertRaisesRegex(ValueError, "no layer that can be quantized"):
            ks.quantize_model(model)

    @parameterized.parameters(
        dict(weight_bits=9),
        dict(activation_bits=1),
        dict(last_layer_activation_bits=16),
    )
    def test_bad_bits(self, **kwargs):
        ((name, value),) = kwargs.items()
        with self.assertRaisesRegex(ValueError, f"Received: {name}={value}"):
            ks.QuantConfig(**kwargs)

    def test_bad_config_type(self):
        with self.assertRaisesRegex(TypeError, "QuantConfig"):
            ks.quantize_model(tiny_resnet(), config={"weight_bits": 4})


class ApplicationsTest(TestCase):
    @parameterized.named_parameters(
        # Conv2D + Dense counts of the Keras application graphs.
        ("resnet50", keras.applications.ResNet50, 54, 53),
        ("mobilenet_v2", keras.applications.MobileNetV2, 53, 52),
    )
    def test_rewrite(self, builder, num_quantized, num_folded):
        if builder is keras.applications.ResNet50 and keras.backend.backend() == (
            "tensorflow"
        ):
            # The rewrite reads the Keras graph, the same on both backends;
            # ResNet50's weight search took 38 s of CI's TensorFlow run
            # against 12 s on PyTorch. MobileNetV2 still runs on both.
            self.skipTest("ResNet50's rewrite runs on PyTorch")
        model = builder(weights=None, input_shape=(64, 64, 3))
        qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4))
        report = qmodel.quantization_report
        self.assertEqual(len(report.quantized_layers), num_quantized)
        self.assertEqual(len(report.with_status("folded")), num_folded)
        self.assertEqual(report.float_layers, [])
        self.assertEqual(len(weight_layers(qmodel)), num_quantized)
        x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
        self.assertFloatTwin(qmodel, model, x, atol=1e-4)


class WeightRangeTest(TestCase):
    def test_minmax_range_does_not_clip(self):
        model = tiny_resnet()
        qmodel = ks.quantize_model(model, ks.QuantConfig(3, 3, weight_range="minmax"))
        layer = {layer.name: layer for layer in qmodel.layers}["b1_c2"]
        w = to_numpy(layer.kernel)
        step = to_numpy(layer.weight_step)
        # Full range: every weight within half a step of its grid value.
        self.assertLessEqual(
            np.abs(layer.integer_kernel() * step - w).max(), step.max() / 2 + 1e-6
        )
        searched = ks.quantize_model(model, ks.QuantConfig(3, 3))
        searched_step = to_numpy(
            {layer.name: layer for layer in searched.layers}["b1_c2"].weight_step
        )
        self.assertTrue(np.all(searched_step <= step + 1e-7))

    def test_bad_weight_range(self):
        with self.assertRaisesRegex(ValueError, "weight_range='max'"):
            ks.QuantConfig(weight_range="max")


class AdaptedLayersTest(TestCase):
    def test_adapted_normalization_is_cloned_with_its_statistics(self):
        rng = np.random.default_rng(0)
        data = rng.normal(3.0, 2.0, (64, 6, 6, 1)).astype("float32")
        normalization = layers.Normalization()
        normalization.adapt(data)
        inputs = keras.Input((6, 6, 1))
        x = normalization(inputs)
        x = layers.Conv2D(4, 3, name="conv")(x)
        x = layers.Flatten()(x)
        model = keras.Model(inputs, layers.Dense(2, name="head")(x))
        qmodel = ks.quantize_model(model)
        self.assertFloatTwin(qmodel, model, data[:8], atol=1e-4)
