import importlib
import os
from unittest import mock

import keras
import numpy as np
from keras import layers

import keras_sagdq as ks
from keras_sagdq.synthesis import BatchNormProbe
from keras_sagdq.synthesis import synthesis_config
from keras_sagdq.synthesis.losses import bn_statistics_loss
from keras_sagdq.synthesis.trainer import SynthesisTrainer
from tests.test_case import TestCase
from tests.test_case import tiny_resnet
from tests.test_case import to_numpy

# The module, which the package's `synthesize` function shadows.
synthesize_module = importlib.import_module("keras_sagdq.synthesis.synthesize")
# Small and quick: 8 images of 12x12x3 per batch, a 16-dim latent.
_QUICK = dict(batch_size=4, latent_dim=16, input_space_steps=10)
# tiny_resnet's BatchNorm statistics are random, not from data: tests that
# are not about the input space give it.
_SPACE = dict(input_mean=127.5, input_std=64.0)


def _bn_loss(model, images):
    probe = BatchNormProbe(model)
    _, bn_inputs = probe(images)
    return float(to_numpy(bn_statistics_loss(bn_inputs, probe.means, probe.stds)))


class _Interrupt(keras.callbacks.Callback):
    """Raises KeyboardInterrupt at a given (fit call, step)."""

    def __init__(self, at_fit, at_step):
        super().__init__()
        self.at_fit, self.at_step, self.fits = at_fit, at_step, 0

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_train_batch_end(self, step, logs=None):
        if self.fits == self.at_fit and step + 1 == self.at_step:
            raise KeyboardInterrupt


class _Record(keras.callbacks.Callback):
    """Keeps one log value per step (History keeps one per epoch)."""

    def __init__(self, key):
        super().__init__()
        self.key, self.values = key, []

    def on_train_batch_end(self, step, logs=None):
        self.values.append(float(logs[self.key]))


class SynthesisTrainerTest(TestCase):
    def test_genie_bn_loss_falls(self):
        model = tiny_resnet()
        # Without swing shifts the loss is a deterministic function of the
        # latents and generator, so its fall is not hidden by the jitter.
        config = synthesis_config("genie", steps=30, swing=False, **_QUICK)
        trainer = SynthesisTrainer(
            BatchNormProbe(model), config, 8, np.zeros(3), np.full(3, 255.0), seed=0
        )
        before = _bn_loss(model, trainer.images())
        trainer.fit(np.zeros((config.steps, 1)), batch_size=1, verbose=0)
        after = _bn_loss(model, trainer.images())
        self.assertLess(after, 0.8 * before)

    def test_zeroq_loss_falls(self):
        model = tiny_resnet()
        config = synthesis_config("zeroq", steps=20, batch_size=4)
        trainer = SynthesisTrainer(
            BatchNormProbe(model), config, 4, np.zeros(3), np.full(3, 255.0)
        )
        before = _bn_loss(model, trainer.images())
        trainer.fit(np.zeros((config.steps, 1)), batch_size=1, verbose=0)
        # ZeroQ's loss uses per-image statistics; the batch statistics fall too.
        self.assertLess(_bn_loss(model, trainer.images()), 0.8 * before)

    def test_plateau_lowers_latent_rate(self):
        model = tiny_resnet()
        # Patience 0: the first step without a 1e-4 relative improvement
        # halves the rate.
        config = synthesis_config(
            "genie", steps=6, plateau_patience=0, plateau_factor=0.5, **_QUICK
        )
        trainer = SynthesisTrainer(
            BatchNormProbe(model), config, 4, np.zeros(3), np.ones(3)
        )
        recorder = _Record("latent_lr")
        trainer.fit(np.zeros((6, 1)), batch_size=1, verbose=0, callbacks=[recorder])
        rates = recorder.values
        self.assertAlmostEqual(rates[0], 0.1, places=6)
        self.assertLess(min(rates), 0.1)
        self.assertGreaterEqual(min(rates), config.min_latent_lr)

    def test_reset_gives_what_a_new_trainer_gives(self):
        model = tiny_resnet()
        # Swing shifts and a plateau rule that fires: every piece of state
        # a batch changes must restart.
        config = synthesis_config("genie", steps=4, plateau_patience=0, **_QUICK)

        def run(trainer):
            trainer.run(config.steps, "test", verbose=0)
            return trainer.images(), trainer.state(), trainer.input_space()

        def new(seed):
            probe = BatchNormProbe(model, swing=True, seed=seed)
            return SynthesisTrainer(
                probe,
                config,
                4,
                127.5,
                64.0,
                seed=seed,
                learn_mean=True,
                learn_std=True,
            )

        reused = new(1)
        run(reused)
        first, state, space = run(reused.reset(2))
        fresh, fresh_state, fresh_space = run(new(2))
        self.assertAllClose(first, fresh, atol=1e-4)
        for name in fresh_state:
            self.assertAllClose(state[name], fresh_state[name], atol=1e-5)
        self.assertAllClose(space, fresh_space, atol=1e-6)
        # Keeping the initial state adds nothing to the model's weights.
        self.assertLen(reused.weights, len(new(4).weights))
        # A different seed gives another batch.
        self.assertGreater(np.abs(run(reused.reset(3))[0] - fresh).max(), 1.0)


class SynthesizeTest(TestCase):
    def test_shapes_and_input_space(self):
        model = tiny_resnet()
        images = ks.synthesize(
            model, num_samples=6, steps=3, verbose=0, **_SPACE, **_QUICK
        )
        self.assertEqual(images.shape, (6, 12, 12, 3))
        self.assertEqual(images.dtype, np.float32)
        # The generator's standardized output is mapped to mean 127.5, std 64.
        self.assertAllClose(images.mean(), 127.5, atol=1.0)
        self.assertAllClose(images.std(), 64.0, rtol=0.02)
        noise = ks.synthesize(
            model, num_samples=500, method="gaussian", seed=1, **_SPACE
        )
        self.assertAllClose(noise.std(), 64.0, rtol=0.02)
        self.assertAllClose(noise.mean(), 127.5, atol=1.0)
        shifted = ks.synthesize(
            model, 4, method="gaussian", input_mean=[1, 2, 3], input_std=0.5
        )
        self.assertAllClose(shifted.mean(axis=(0, 1, 2)), [1, 2, 3], atol=0.2)

    def test_one_trainer_per_batch_size(self):
        built = []

        class Counted(SynthesisTrainer):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                built.append(self.codes.shape[0])

        model = tiny_resnet()
        with mock.patch.object(synthesize_module, "SynthesisTrainer", Counted):
            images = ks.synthesize(model, 10, steps=2, verbose=0, **_SPACE, **_QUICK)
        # Batches of 4, 4 and 2: the second batch of 4 reuses the first trainer.
        self.assertEqual(sorted(built), [2, 4])
        self.assertEqual(images.shape, (10, 12, 12, 3))
        self.assertGreater(np.abs(images[:4] - images[4:8]).max(), 1.0)

    def test_resume_matches_uninterrupted_run(self):
        model = tiny_resnet()
        # The input space is inferred once and saved with the batches.
        kwargs = dict(num_samples=10, steps=4, seed=7, verbose=0, **_QUICK)
        full = ks.synthesize(
            model, directory=os.path.join(self.temp_dir(), "full"), **kwargs
        )
        directory = os.path.join(self.temp_dir(), "resumed")
        with self.assertRaises(KeyboardInterrupt):
            ks.synthesize(
                model, directory=directory, callbacks=[_Interrupt(2, 3)], **kwargs
            )
        self.assertEqual(
            sorted(f for f in os.listdir(directory) if f.endswith(".npy")),
            ["batch_00000.npy"],
        )
        self.assertTrue(os.path.exists(os.path.join(directory, "input_space.json")))
        resumed = ks.synthesize(model, directory=directory, **kwargs)
        self.assertEqual(resumed.shape, (10, 12, 12, 3))
        np.testing.assert_allclose(resumed, full, rtol=1e-5, atol=1e-4)
        # A third call only loads: nothing is optimized again.
        again = ks.synthesize(
            model, directory=directory, callbacks=[_Interrupt(1, 1)], **kwargs
        )
        np.testing.assert_array_equal(again, resumed)
        # Another seed gives other images.
        other = ks.synthesize(model, **dict(kwargs, seed=8))
        self.assertGreater(np.abs(other - full).mean(), 1.0)

    def test_directory_with_other_settings_or_corrupt_batch(self):
        model = tiny_resnet()
        directory = self.temp_dir()
        ks.synthesize(
            model, 4, steps=2, directory=directory, verbose=0, **_SPACE, **_QUICK
        )
        with self.assertRaisesRegex(ValueError, "other settings.*steps"):
            ks.synthesize(
                model, 4, steps=3, directory=directory, verbose=0, **_SPACE, **_QUICK
            )
        with self.assertRaisesRegex(ValueError, "other settings.*input_std"):
            ks.synthesize(
                model,
                4,
                steps=2,
                directory=directory,
                verbose=0,
                input_mean=127.5,
                input_std=60.0,
                **_QUICK,
            )
        path = os.path.join(directory, "batch_00000.npy")
        with open(path, "wb") as f:
            f.write(b"\x93NUMPY garbage")
        with self.assertRaisesRegex(ValueError, "batch_00000.npy.*unreadable"):
            ks.synthesize(
                model, 4, steps=2, directory=directory, verbose=0, **_SPACE, **_QUICK
            )
        self.assertTrue(os.path.exists(path))  # left for the user to inspect

    def test_generator_channels_is_saved_only_when_changed(self):
        # Directories saved before the field existed hold no such key; at
        # its default it is left out, so they stay valid.
        model = tiny_resnet()
        directory = self.temp_dir()
        kwargs = dict(steps=2, directory=directory, verbose=0, **_SPACE, **_QUICK)
        ks.synthesize(model, 4, **kwargs)
        with open(os.path.join(directory, "synthesis.json")) as f:
            self.assertNotIn("generator_channels", f.read())
        with self.assertRaisesRegex(ValueError, "generator_channels: stored None"):
            ks.synthesize(model, 4, generator_channels=16, **kwargs)
        small = ks.synthesize(
            model, 4, generator_channels=16, **_SPACE, **_QUICK, steps=2, verbose=0
        )
        self.assertEqual(small.shape, (4, 12, 12, 3))

    def test_jit_compile_gives_the_same_images_and_is_not_saved(self):
        model = tiny_resnet()
        directory = self.temp_dir()
        # One batch: one compilation (a minute with torch.compile on 2 cores).
        kwargs = dict(steps=3, verbose=0, **_SPACE, **_QUICK)
        plain = ks.synthesize(model, 4, directory=directory, **kwargs)
        compiled = ks.synthesize(model, 4, jit_compile=True, **kwargs)
        # Float rounding only: pixels span about 64 * 3 here.
        self.assertAllClose(compiled, plain, atol=0.05, rtol=1e-3)
        with open(os.path.join(directory, "synthesis.json")) as f:
            self.assertNotIn("jit_compile", f.read())
        # A run may resume with it switched: the saved batches are reused.
        resumed = ks.synthesize(
            model, 4, directory=directory, jit_compile=True, **kwargs
        )
        np.testing.assert_array_equal(resumed, plain)
        with self.assertRaisesRegex(ValueError, "jit_compile=1"):
            synthesis_config("genie", jit_compile=1)

    def test_nan_statistics_stop_with_batch_and_step(self):
        model = tiny_resnet()
        model.get_layer("b2_bn1").moving_variance.assign(np.full(16, np.nan))
        with self.assertRaisesRegex(FloatingPointError, "batch 0, step 1"):
            ks.synthesize(model, 4, steps=3, verbose=0, **_SPACE, **_QUICK)
        with self.assertRaisesRegex(
            FloatingPointError, "infers the input space, step 1"
        ):
            ks.synthesize(model, 4, steps=3, verbose=0, **_QUICK)

    def test_bad_arguments(self):
        model = tiny_resnet()
        with self.assertRaisesRegex(ValueError, "method=.sadagx"):
            ks.synthesize(model, 4, method="sadagx")
        with self.assertRaisesRegex(ValueError, "num_samples=0"):
            ks.synthesize(model, 0)
        with self.assertRaisesRegex(ValueError, "steps=0"):
            ks.synthesize(model, 4, steps=0)
        with self.assertRaisesRegex(ValueError, "learning_rate"):
            ks.synthesize(model, 4, learning_rate=0.1)
        with self.assertRaisesRegex(ValueError, "profile='slow'"):
            ks.synthesize(model, 4, profile="slow")
        with self.assertRaisesRegex(ValueError, "input_std"):
            ks.synthesize(model, 4, method="gaussian", input_std=[1.0, -1.0, 1.0])
        inputs = keras.Input((8, 8, 1))
        with self.assertRaisesRegex(ValueError, "no BatchNormalization"):
            ks.synthesize(keras.Model(inputs, layers.Conv2D(2, 3)(inputs)), 4)
