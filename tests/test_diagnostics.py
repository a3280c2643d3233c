import warnings

import numpy as np
from keras import layers

import keras_sagdq as ks
from keras_sagdq.synthesis import BatchNormProbe
from keras_sagdq.synthesis import InputSpace
from keras_sagdq.synthesis import SynthesisWarning
from keras_sagdq.synthesis import check_images
from tests.test_case import TestCase
from tests.test_input_space import known_images
from tests.test_input_space import model_for

_QUICK = dict(batch_size=16, latent_dim=16, steps=120, input_space_steps=150)


class CheckImagesTest(TestCase):
    def setUp(self):
        super().setUp()
        self.images = known_images(76.5, 89.0, n=64)
        self.model = model_for(
            known_images(76.5, 89.0), front=[layers.Rescaling(1 / 255.0)]
        )
        self.probe = BatchNormProbe(self.model)
        self.space = InputSpace([76.5], [89.0], "given")

    def test_images_like_the_training_data_are_healthy(self):
        check = check_images(self.images, self.probe, self.space)
        self.assertTrue(check.healthy, check.problems)
        self.assertLess(check.bn_mismatch, 0.05)

    def test_each_kind_of_broken_batch_is_named(self):
        cases = {
            "far from the model": self.images / 255.0,  # a unit mix-up
            "std from the input mean": np.where(
                np.arange(self.images.size).reshape(self.images.shape) == 7,
                -5000.0,
                self.images,
            ),
            "constant": np.full_like(self.images, 76.5),
            "min or max": np.where(self.images > 76.5, 255.0, 0.0),
        }
        for expected, images in cases.items():
            with self.subTest(expected):
                check = check_images(images.astype(np.float32), self.probe, self.space)
                self.assertFalse(check.healthy)
                self.assertTrue(
                    any(expected in p for p in check.problems), check.problems
                )


class SynthesisWarningTest(TestCase):
    def test_warns_on_a_wrong_input_space_and_not_on_the_inferred_one(self):
        model = model_for(known_images(76.5, 89.0), front=[layers.Rescaling(1 / 255.0)])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ks.synthesize(model, 16, verbose=0, seed=0, **_QUICK)
        self.assertEqual(
            [str(w.message) for w in caught if w.category is SynthesisWarning], []
        )
        # Standardized images for a model of raw [0, 255] pixels: the
        # mistake the library made before it inferred the input space.
        with self.assertWarnsRegex(
            SynthesisWarning, "batch 0 for model .* degenerate.*mismatch"
        ):
            ks.synthesize(model, 16, verbose=0, input_mean=0.0, input_std=1.0, **_QUICK)
