"""`synthesize(method="sadag")`: the pipeline, its storage and its errors."""

import os

import keras
import numpy as np
from keras import layers

import keras_sagdq as ks
from tests.test_case import TestCase
from tests.test_case import tiny_resnet
from tests.test_synthesize import _Interrupt

_QUICK = dict(
    num_samples=8,
    batch_size=4,
    latent_dim=16,
    steps=3,
    refine_steps=3,
    warmup_reconstruction_steps=2,
    seed=7,
    verbose=0,
    input_mean=127.5,
    input_std=64.0,
    quant_config=ks.QuantConfig(4, 4),
)


def _files(directory):
    return sorted(f for f in os.listdir(directory) if not f.endswith(".json"))


class SadagPipelineTest(TestCase):
    def test_resume_matches_uninterrupted_run(self):
        model = tiny_resnet()
        full_dir = os.path.join(self.temp_dir(), "full")
        full = ks.synthesize(model, method="sadag", directory=full_dir, **_QUICK)
        self.assertEqual(full.shape, (8, 12, 12, 3))
        self.assertTrue(np.all(np.isfinite(full)))
        # The refinement moved the warm-up images.
        warmup = ks.synthesize(
            model,
            method="genie",
            directory=os.path.join(full_dir, "warmup"),
            callbacks=[_Interrupt(1, 1)],  # loads only: nothing to optimize
            **{k: v for k, v in _QUICK.items() if k not in _SADAG_ONLY},
        )
        self.assertGreater(np.abs(full - warmup).max(), 1e-3)

        # fit calls with callbacks: warm-up batches 1-2, refinement 3-4.
        directory = os.path.join(self.temp_dir(), "resumed")
        with self.assertRaises(KeyboardInterrupt):
            ks.synthesize(
                model,
                method="sadag",
                directory=directory,
                callbacks=[_Interrupt(4, 2)],
                **_QUICK,
            )
        self.assertEqual(_files(directory), ["batch_00000.npy", "q0.keras", "warmup"])
        self.assertEqual(
            _files(os.path.join(directory, "warmup")),
            [
                "batch_00000.npy",
                "batch_00001.npy",
                "state_00000.npz",
                "state_00001.npz",
            ],
        )
        resumed = ks.synthesize(model, method="sadag", directory=directory, **_QUICK)
        np.testing.assert_allclose(resumed, full, rtol=1e-5, atol=1e-4)

        with self.assertRaisesRegex(ValueError, "config.rho: stored 2.0, now 3.0"):
            ks.synthesize(
                model, method="sadag", directory=directory, **dict(_QUICK, rho=3.0)
            )

    def test_block_matching_through_synthesize_and_its_saved_setting(self):
        model = tiny_resnet()
        directory = os.path.join(self.temp_dir(), "blocks")
        images = ks.synthesize(
            model, method="sadag", directory=directory, match="blocks", **_QUICK
        )
        self.assertEqual(images.shape, (8, 12, 12, 3))
        self.assertTrue(np.all(np.isfinite(images)))
        # A directory made with one matching is not resumed with the other.
        with self.assertRaisesRegex(ValueError, "match"):
            ks.synthesize(model, method="sadag", directory=directory, **_QUICK)

    def test_quant_config_required_by_sadag_only(self):
        model = tiny_resnet()
        kwargs = {k: v for k, v in _QUICK.items() if k != "quant_config"}
        with self.assertRaisesRegex(ValueError, "quant_config.*method='sadag'"):
            ks.synthesize(model, method="sadag", **kwargs)
        with self.assertRaisesRegex(ValueError, "quant_config"):
            ks.synthesize(
                model, num_samples=4, steps=1, quant_config=ks.QuantConfig(4, 4)
            )
        with self.assertRaisesRegex(TypeError, "QuantConfig"):
            ks.synthesize(model, method="sadag", **dict(kwargs, quant_config=(4, 4)))
        with self.assertRaisesRegex(ValueError, "neighbor"):
            ks.synthesize(model, method="sadag", **dict(_QUICK, neighbor="far"))

    def test_model_without_dense_head_is_refused_before_synthesis(self):
        inputs = keras.Input((12, 12, 3))
        x = layers.Conv2D(4, 3)(inputs)
        x = layers.BatchNormalization()(x)
        outputs = layers.GlobalAveragePooling2D()(x)
        model = keras.Model(inputs, outputs, name="headless")
        with self.assertRaisesRegex(ValueError, "Dense.*'headless'"):
            ks.synthesize(model, method="sadag", callbacks=[_Interrupt(1, 1)], **_QUICK)


_SADAG_ONLY = ("quant_config", "refine_steps", "warmup_reconstruction_steps")
