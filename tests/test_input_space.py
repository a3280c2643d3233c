import warnings

import keras
import numpy as np
from keras import layers

from keras_sagdq.models.zoo import reestimate_batchnorm
from keras_sagdq.synthesis import BatchNormProbe
from keras_sagdq.synthesis import declared_input_space
from keras_sagdq.synthesis import infer_input_space
from keras_sagdq.synthesis import resolve_input_space
from keras_sagdq.synthesis import synthesis_config
from keras_sagdq.synthesis.input_space import affine_estimate
from tests.test_case import TestCase

_QUICK = dict(batch_size=16, latent_dim=16, input_space_steps=150)


def known_images(mean, std, n=256, shape=(12, 12, 1), seed=0):
    """Smooth random images with exactly the given per-channel mean and std."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, shape[0] // 4, shape[1] // 4, shape[2]))
    x = np.kron(coarse, np.ones((1, 4, 4, 1))) + 0.3 * rng.standard_normal((n, *shape))
    x = (x - x.mean(axis=(0, 1, 2))) / x.std(axis=(0, 1, 2))
    return (np.asarray(mean) + np.asarray(std) * x).astype("float32")


def small_cnn(front=None, channels=1, bias=False):
    """conv-BN-ReLU x3 with a stride; `front` layers go before the first conv."""
    inputs = keras.Input((12, 12, channels))
    x = inputs
    for layer in front or []:
        x = layer(x)
    for width, strides in ((8, 1), (12, 2), (16, 1)):
        x = layers.Conv2D(width, 3, strides, "same", use_bias=bias)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(4)(x))


def model_for(images, front=None, bias=False):
    """A small CNN whose BatchNorm statistics are those of `images`."""
    model = small_cnn(front, images.shape[-1], bias)
    reestimate_batchnorm(model, images)
    return model


class DeclaredInputSpaceTest(TestCase):
    def test_normalization_layer_declares(self):
        inputs = keras.Input((4, 4, 2))
        x = layers.Rescaling(1 / 255.0)(inputs)
        x = layers.Normalization(mean=[0.5, 0.25], variance=[0.04, 0.01])(x)
        model = keras.Model(inputs, layers.BatchNormalization()(x))
        space = declared_input_space(model)
        self.assertEqual(space.source, "normalization layer")
        self.assertAllClose(space.mean, [127.5, 63.75], rtol=1e-5)
        self.assertAllClose(space.std, [51.0, 25.5], rtol=1e-5)

    def test_rescaling_alone_declares_nothing(self):
        inputs = keras.Input((4, 4, 1))
        x = layers.Rescaling(1 / 255.0)(inputs)
        model = keras.Model(inputs, layers.BatchNormalization()(x))
        self.assertIsNone(declared_input_space(model))
        plain = keras.Model(inputs, layers.BatchNormalization()(inputs))
        self.assertIsNone(declared_input_space(plain))


class InferInputSpaceTest(TestCase):
    # (convention, the model's front layers, true per-channel mean and std)
    CONVENTIONS = (
        ("unit_range", None, 0.3, 0.35),
        ("raw_pixels", lambda: [layers.Rescaling(1 / 255.0)], 76.5, 89.0),
        ("standardized", None, 0.0, 1.0),
        ("signed", None, -0.4, 0.7),
        # MobileNet's convention: the offset makes the first BatchNorm's input
        # large against a tiny test image's response (float32 rounding).
        (
            "centered_raw_pixels",
            lambda: [layers.Rescaling(1 / 127.5, offset=-1.0)],
            73.0,
            90.0,
        ),
    )

    def test_affine_estimate_finds_the_mean(self):
        for name, front, mean, std in self.CONVENTIONS:
            with self.subTest(name):
                model = model_for(
                    known_images(mean, std), front() if front else None, bias=True
                )
                estimate_mean, estimate_std = affine_estimate(BatchNormProbe(model))
                self.assertAllClose(estimate_mean, [mean], atol=0.05 * std)
                # The first guess of the scale assumes the generator's pixel
                # correlations: right to within a factor of two.
                self.assertBetween(float(estimate_std[0]), std / 2, std * 2)

    def test_infer_input_space_close_to_the_truth(self):
        config = synthesis_config("genie", **_QUICK)
        for name, front, mean, std in self.CONVENTIONS[:2]:
            with self.subTest(name):
                model = model_for(known_images(mean, std), front() if front else None)
                space = infer_input_space(model, config, seed=0)
                self.assertEqual(space.source, "inferred")
                self.assertAllClose(space.mean, [mean], atol=0.1 * std)
                self.assertAllClose(space.std, [std], rtol=0.2)

    def test_three_channels(self):
        mean, std = [0.5, 0.4, 0.3], [0.25, 0.2, 0.3]
        model = model_for(known_images(mean, std, shape=(12, 12, 3)))
        estimate_mean, _ = affine_estimate(BatchNormProbe(model))
        self.assertAllClose(estimate_mean, mean, atol=0.03)

    def test_given_values_are_kept(self):
        model = model_for(known_images(0.3, 0.35))
        config = synthesis_config("genie", **dict(_QUICK, input_space_steps=5))
        space = resolve_input_space(
            model, input_mean=0.3, input_std=[0.35], config=config
        )
        self.assertEqual(space.source, "given")
        space = resolve_input_space(model, input_mean=0.25, config=config)
        self.assertEqual(space.source, "given mean, inferred std")
        self.assertAllClose(space.mean, [0.25])
        with self.assertRaisesRegex(ValueError, "input_std"):
            resolve_input_space(model, input_std=-1.0)
        with self.assertRaisesRegex(ValueError, "input_mean"):
            resolve_input_space(model, input_mean=[1.0, 2.0])

    def test_declared_space_checked_against_the_batchnorms(self):
        config = synthesis_config("genie", **dict(_QUICK, input_space_steps=5))
        pixels = known_images(73.0, 90.0)
        for name, stats in (("right", (0.286, 0.353)), ("raw_pixels", (73.0, 90.0))):
            with self.subTest(name):
                # Rescaling(1/255), then a Normalization adapted to `stats`:
                # "raw_pixels" is the slip of adapting it to the model input.
                mean, std = stats
                front = [
                    layers.Rescaling(1 / 255.0),
                    layers.Normalization(mean=mean, variance=std**2),
                ]
                model = model_for(pixels, front)
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    space = resolve_input_space(model, config=config)
                messages = [str(w.message) for w in caught]
                if name == "right":
                    self.assertEqual(space.source, "normalization layer")
                    self.assertAllClose(space.mean, [72.93], rtol=1e-4)
                    self.assertFalse(any("adapted to other" in m for m in messages))
                else:
                    self.assertEqual(space.source, "inferred")
                    self.assertTrue(any("adapted to other" in m for m in messages))
                    self.assertAllClose(space.mean, [73.0], atol=0.1 * 90.0)

    def test_no_affine_path_falls_back(self):
        # A ReLU before the first BatchNorm: the closed form does not apply.
        model = model_for(
            known_images(0.3, 0.35), front=[layers.Conv2D(4, 3), layers.ReLU()]
        )
        self.assertIsNone(affine_estimate(BatchNormProbe(model)))
        config = synthesis_config("genie", **dict(_QUICK, input_space_steps=5))
        space = infer_input_space(model, config)
        self.assertTrue(np.all(np.isfinite(space.mean)) and np.all(space.std > 0))
