"""Calibration-gradient alignment: batch-mean gradients against autodiff."""

import keras
import numpy as np
from keras import ops

import keras_sagdq as ks
from keras_sagdq import alignment
from keras_sagdq import backend
from keras_sagdq.graph.blocks import find_blocks
from keras_sagdq.graph.head import pre_activation_logits
from keras_sagdq.layers import set_layer_modes
from keras_sagdq.synthesis import BatchNormProbe
from keras_sagdq.synthesis.refinement import HeadPair
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import tiny_resnet
from tests.test_case import to_numpy


class GradientAlignmentTest(TestCase):
    def setUp(self):
        super().setUp()
        self.model = tiny_resnet()
        self.images = random_images(12)
        self.qmodel = ks.quantize_model(self.model, ks.QuantConfig(3, 3))
        ks.calibrate_activations(self.qmodel, self.images)
        ks.set_mode(self.qmodel, "hard")

    def test_head_gradient_is_autodiff_of_the_logit_disagreement(self):
        pair = HeadPair(BatchNormProbe(self.model), self.qmodel)
        _, h, r = pair(self.images)
        head = pair.q_head.layer
        kernel = keras.Variable(to_numpy(head.quantized_kernel()))
        q_logits = pre_activation_logits(head, h)
        f_logits = q_logits + r

        def loss():
            logits = ops.matmul(h, kernel.value) + head.quantized_bias()
            return 0.5 * ops.mean(ops.sum(ops.square(f_logits - logits), -1))

        _, (expected,) = backend.value_and_grad(loss, [kernel])
        got = alignment.head_gradient(pair, self.images, batch_size=5)
        np.testing.assert_allclose(
            got, to_numpy(expected).ravel(), atol=1e-4, rtol=1e-3
        )

    def test_block_gradients_are_the_mean_over_batches_of_autodiff(self):
        # 5 is made 6: two batches, the second padded.
        got = alignment.block_gradients(self.qmodel, self.images, batch_size=5)
        _, blocks = find_blocks(self.qmodel)
        self.assertEqual([g["name"] for g in got], [b.name for b in blocks])
        # One pass over all images, by hand, for the second block.
        block = blocks[1]
        stream = self.images
        for earlier in blocks[:1]:
            stream = to_numpy(earlier(stream))
        with ks.quantization_off(self.qmodel):
            target = self.images
            for b in blocks[:2]:
                target = to_numpy(b(target))
        stream, target = ops.convert_to_tensor(stream), ops.convert_to_tensor(target)
        set_layer_modes(block.layers, "soft")
        groups = alignment._groups(block)
        variables = [v for name in alignment.GROUPS for v in groups[name]]

        def loss():
            return ops.mean(ops.sum(ops.square(block(stream) - target), axis=-1))

        _, grads = backend.value_and_grad(loss, variables)
        set_layer_modes(block.layers, "hard")
        expected = np.concatenate([to_numpy(g).ravel() for g in grads])
        got_flat = np.concatenate(
            [got[1][name] for name in alignment.GROUPS if got[1][name] is not None]
        )
        np.testing.assert_allclose(got_flat, expected, atol=1e-5, rtol=1e-3)
        self.assertGreater(np.abs(got[1]["rounding"]).max(), 0)

    def test_modes_are_restored_and_same_images_align_perfectly(self):
        modes = [getattr(layer, "mode", None) for layer in self.qmodel.layers]
        pair = HeadPair(BatchNormProbe(self.model), self.qmodel)
        result = alignment.gradient_alignment(
            pair, self.qmodel, self.images, self.images.copy(), batch_size=6
        )
        self.assertEqual(
            [getattr(layer, "mode", None) for layer in self.qmodel.layers], modes
        )
        self.assertAlmostEqual(result["head"], 1.0, places=6)
        for name, value in result["mean"].items():
            self.assertAlmostEqual(value, 1.0, places=5, msg=name)
        # Other images: cosines strictly inside (-1, 1).
        other = alignment.gradient_alignment(
            pair, self.qmodel, self.images, random_images(12, seed=1)
        )
        self.assertLess(other["mean"]["all"], 0.9999)
        self.assertGreater(other["mean"]["all"], -1.0)

    def test_cosine_of_missing_or_zero_vectors_is_none(self):
        self.assertIsNone(alignment.cosine(None, np.ones(3)))
        self.assertIsNone(alignment.cosine(np.zeros(3), np.ones(3)))
        self.assertAlmostEqual(
            alignment.cosine(np.ones(2), np.float64([1, 0])), 0.5**0.5
        )
