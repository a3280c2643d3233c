import keras
from keras import layers

import keras_sagdq as ks
from tests.test_case import TestCase


def _model():
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, use_bias=False, name="conv")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.LayerNormalization(name="ln")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, layers.Dense(3, name="head")(x))


class QuantizationReportTest(TestCase):
    def test_rows_statuses_and_reasons(self):
        report = ks.quantize_model(_model(), ks.QuantConfig(4, 4)).quantization_report
        status = {r.name: r.status for r in report}
        self.assertEqual(status["conv"], "quantized")
        self.assertEqual(status["bn"], "folded")
        self.assertEqual(status["relu"], "passthrough")
        self.assertEqual(status["ln"], "float")
        self.assertEqual([r.name for r in report.float_layers], ["ln"])
        self.assertIn("not a supported layer type", report.float_layers[0].reason)
        self.assertEqual({r.name for r in report.quantized_layers}, {"conv", "head"})
        head = [r for r in report if r.name == "head"][0]
        self.assertEqual((head.weight_bits, head.input_bits), (8, 8))
        self.assertGreater(head.weight_sqnr_db, 10.0)
        self.assertEqual(len(report), len(list(report)))

    def test_str_is_a_table_with_every_layer(self):
        report = ks.quantize_model(_model()).quantization_report
        text = str(report)
        self.assertTrue(text.splitlines()[0].startswith("layer"))
        for row in report:
            self.assertIn(row.name, text)
