import keras
import numpy as np

import keras_sagdq as ks
from keras_sagdq.fidelity import ends_in_softmax
from tests.test_case import TestCase


def _linear(kernel, bias, activation=None, softmax_layer=False):
    """`x @ kernel + bias` as a Functional model, optionally ending in softmax."""
    inputs = keras.Input((kernel.shape[0],))
    dense = keras.layers.Dense(kernel.shape[1], activation=activation)
    outputs = dense(inputs)
    if softmax_layer:
        outputs = keras.layers.Softmax()(outputs)
    dense.set_weights([kernel, bias])
    return keras.Model(inputs, outputs)


def _kl(p_logits, q_logits):
    p = np.exp(p_logits) / np.exp(p_logits).sum(-1, keepdims=True)
    q = np.exp(q_logits) / np.exp(q_logits).sum(-1, keepdims=True)
    return float(np.mean(np.sum(p * np.log(p / q), -1)))


class OutputFidelityTest(TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.x = rng.normal(size=(37, 4)).astype("float32")
        self.k1 = rng.normal(size=(4, 3)).astype("float32")
        self.k2 = rng.normal(size=(4, 3)).astype("float32")
        self.b = np.float32([0.5, -1.0, 0.25])

    def test_kl_and_logit_mse_of_known_distributions(self):
        p_logits = self.x.astype("float64") @ self.k1 + self.b
        q_logits = self.x.astype("float64") @ self.k2 + self.b
        centred = (p_logits - p_logits.mean(-1, keepdims=True)) - (
            q_logits - q_logits.mean(-1, keepdims=True)
        )
        result = ks.output_fidelity(
            _linear(self.k1, self.b), _linear(self.k2, self.b), self.x, batch_size=8
        )
        self.assertAlmostEqual(result["kl"], _kl(p_logits, q_logits), places=5)
        self.assertAlmostEqual(
            result["logit_mse"], float(np.mean(centred**2)), places=4
        )
        agree = np.mean(p_logits.argmax(-1) == q_logits.argmax(-1))
        self.assertAlmostEqual(result["top1_agreement"], agree)
        self.assertEqual(result["count"], 37)
        self.assertGreater(result["kl"], 0.01)

    def test_a_softmax_output_gives_the_same_numbers_as_its_logits(self):
        logits = ks.output_fidelity(
            _linear(self.k1, self.b), _linear(self.k2, self.b), self.x
        )
        for options in ({"activation": "softmax"}, {"softmax_layer": True}):
            p_model = _linear(self.k1, self.b, **options)
            self.assertTrue(ends_in_softmax(p_model))
            probabilities = ks.output_fidelity(
                p_model, _linear(self.k2, self.b, **options), self.x
            )
            for key in ("kl", "logit_mse", "top1_agreement"):
                self.assertAlmostEqual(probabilities[key], logits[key], places=4)

    def test_identical_models_and_shifted_logits_cost_nothing(self):
        same = ks.output_fidelity(
            _linear(self.k1, self.b), _linear(self.k1, self.b), self.x
        )
        self.assertAlmostEqual(same["kl"], 0.0, places=7)
        self.assertEqual(same["top1_agreement"], 1.0)
        # Adding 3 to every logit changes no probability.
        shifted = ks.output_fidelity(
            _linear(self.k1, self.b), _linear(self.k1, self.b + 3.0), self.x
        )
        self.assertAlmostEqual(shifted["kl"], 0.0, places=6)
        self.assertAlmostEqual(shifted["logit_mse"], 0.0, places=6)

    def test_bad_arguments_are_named(self):
        model = _linear(self.k1, self.b)
        with self.assertRaisesRegex(ValueError, "batch_size=0"):
            ks.output_fidelity(model, model, self.x, batch_size=0)
        with self.assertRaisesRegex(ValueError, "empty"):
            ks.output_fidelity(model, model, self.x[:0])
        other = _linear(np.ones((4, 5), "float32"), np.zeros(5, "float32"))
        with self.assertRaisesRegex(ValueError, "differ in shape"):
            ks.output_fidelity(model, other, self.x)
