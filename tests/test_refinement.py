"""SADAG refinement: the closed-form gradient cosine and the trainer's terms."""

import keras
import numpy as np
from keras import layers
from keras import ops

import keras_sagdq as ks
from keras_sagdq import backend
from keras_sagdq.synthesis import BatchNormProbe
from keras_sagdq.synthesis import synthesis_config
from keras_sagdq.synthesis.losses import gradient_cosine
from keras_sagdq.synthesis.losses import unit_rows
from keras_sagdq.synthesis.refinement import HeadPair
from keras_sagdq.synthesis.refinement import RefinementTrainer
from keras_sagdq.synthesis.trainer import SynthesisTrainer
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import tiny_resnet
from tests.test_case import to_numpy
from tests.test_synthesize import _Record

_QUICK = dict(batch_size=4, latent_dim=16, swing=False)
_SPACE = (127.5, 64.0)
# A far neighbor and a direction kept for the whole run: the objective is
# fixed, so the cosine's rise is not hidden by a new neighbor every step.
_RISING = dict(steps=20, rho=16.0, gm_weight=10.0, div_weight=0.0, neighbor_every=1000)


def _classifier(seed, softmax_inline):
    """Conv-BN-ReLU-pool-Dense; the softmax inside the Dense or as its own layer."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(6, 3)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    if softmax_inline:
        outputs = layers.Dense(4, activation="softmax", name="head")(x)
    else:
        outputs = layers.Softmax()(layers.Dense(4, name="head")(x))
    model = keras.Model(inputs, outputs)
    bn = model.layers[2]
    bn.moving_mean.assign(np.full(6, 0.1, "float32"))
    bn.moving_variance.assign(np.full(6, 0.5, "float32"))
    return model


class GradientCosineTest(TestCase):
    def test_closed_form_equals_cosine_of_autodiff_per_sample_gradients(self):
        f = _classifier(0, softmax_inline=True)
        q = _classifier(1, softmax_inline=False)
        x = np.random.default_rng(0).normal(size=(5, 8, 8, 1)).astype("float32")
        _, h, r = HeadPair(BatchNormProbe(f), q)(x)
        # The float model's logits before its softmax, by switching it off.
        head = f.get_layer("head")
        head.activation = keras.activations.linear
        f_logits = to_numpy(f(x))
        head.activation = keras.activations.softmax
        q_logits = keras.Model(q.inputs, q.get_layer("head").output)
        kernel = q.get_layer("head").kernel
        gradients = []
        for i in range(len(x)):

            def loss_i(i=i):
                residual = ops.convert_to_tensor(f_logits[i : i + 1]) - q_logits(
                    x[i : i + 1]
                )
                return 0.5 * ops.sum(ops.square(residual))

            _, (g,) = backend.value_and_grad(loss_i, [kernel])
            gradients.append(to_numpy(g).ravel())
        g = np.stack(gradients)
        g /= np.linalg.norm(g, axis=1, keepdims=True)
        autodiff = g @ g.T
        h, r = to_numpy(unit_rows(h)), to_numpy(unit_rows(r))
        self.assertAllClose((h @ h.T) * (r @ r.T), autodiff, atol=1e-5)
        order = [4, 2, 0, 1, 3]
        pairs = gradient_cosine(h, r, h[order], r[order])
        self.assertAllClose(pairs, autodiff[np.arange(5), order], atol=1e-5)
        # r is a difference of logits, not of probabilities.
        self.assertGreater(np.abs(r).max(), 0)


class RefinementTrainerTest(TestCase):
    """Each configuration is refined once per class (a trainer traces a new
    function), and the tests compare the results."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        keras.utils.set_random_seed(0)
        cls.model = tiny_resnet()
        # The setting the thresholds below were measured with.
        cls.q0 = ks.quantize_model(cls.model, ks.QuantConfig(4, 4, int8_tensors=False))
        ks.calibrate_activations(cls.q0, random_images(16))
        # Weight quantization only: hard activation quantizers make `h` and
        # `r` piecewise constant in the images, and the cosine then jumps
        # from step to step (the pipeline test runs the real q0).
        ks.set_mode(cls.q0, "hard", activations=False)
        cls.pair = HeadPair(BatchNormProbe(cls.model), cls.q0)
        warmup = SynthesisTrainer(
            cls.pair.probe, synthesis_config("genie", steps=5, **_QUICK), 4, *_SPACE
        )
        warmup.run(5, "warm-up", verbose=0)
        cls.state = warmup.state()
        # Earlier samples close to this batch's, so each sample's largest
        # similarity is with one of them and the memory matters.
        noise = np.random.default_rng(5).normal(0.0, 8.0, (4, 12, 12, 3))
        cls.earlier = cls.pair.features((warmup.images() + noise).astype("float32"))
        cls.runs = {}

    def refine(self, steps=3, earlier=False, **overrides):
        key = (steps, earlier, tuple(sorted(overrides.items())))
        if key not in self.runs:
            settings = dict(_QUICK, refine_latent_lr=0.01, refine_generator_lr=0.01)
            config = synthesis_config("sadag", **dict(settings, **overrides))
            trainer = RefinementTrainer(
                self.pair,
                config,
                4,
                *_SPACE,
                earlier=self.earlier if earlier else None,
                seed=3,
            )
            trainer.set_state(self.state)
            record = _Record("cosine")
            trainer.run(steps, "test", verbose=0, callbacks=[record])
            self.runs[key] = (trainer, record.values)
        return self.runs[key]

    def disagreement(self, trainer, codes):
        _, _, r = self.pair(trainer._images_of(codes))
        return float(to_numpy(0.5 * ops.sum(ops.square(r))))

    def test_history_has_every_term(self):
        trainer, _ = self.refine()
        for key in ("loss", "bn", "prior", "gm", "div", "cosine"):
            self.assertIn(key, trainer.history.history)
            self.assertTrue(np.isfinite(trainer.history.history[key][-1]), key)

    def test_matching_cosine_rises(self):
        _, cosines = self.refine(**_RISING)
        # The gap to a perfect match shrinks at least fourfold.
        self.assertLess(1.0 - np.mean(cosines[-5:]), (1.0 - cosines[0]) / 4, cosines)

    def test_direction_kept_for_neighbor_every_steps(self):
        trainer, _ = self.refine(**_RISING)
        kept = to_numpy(trainer._direction.value)
        self.assertGreater(np.abs(kept).max(), 0)
        self.assertAllClose(trainer._direction_now(), kept)

    def test_sam_direction_ascends_the_disagreement(self):
        trainer, _ = self.refine()
        codes = to_numpy(trainer.codes.value)
        u = to_numpy(trainer._disagreement_direction())
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        before = self.disagreement(trainer, codes)
        self.assertGreater(self.disagreement(trainer, codes + 0.05 * u), before)
        self.assertLess(self.disagreement(trainer, codes - 0.05 * u), before)
        random, _ = self.refine(neighbor="random")
        v = to_numpy(unit_rows(random._direction_now()))
        self.assertLess(np.abs(np.sum(v * u, axis=1)).max(), 0.9)

    def test_random_neighbors_give_other_images(self):
        sam, _ = self.refine()
        random, _ = self.refine(neighbor="random")
        self.assertGreater(np.abs(sam.images() - random.images()).max(), 1e-3)

    def test_gm_weight_zero_ignores_the_neighbors(self):
        near, _ = self.refine(rho=0.5, gm_weight=0.0)
        far, _ = self.refine(rho=4.0, gm_weight=0.0)
        self.assertAllClose(near.images(), far.images(), atol=1e-4)
        near, _ = self.refine()
        far, _ = self.refine(rho=4.0)
        self.assertGreater(np.abs(near.images() - far.images()).max(), 1e-3)

    def test_div_weight_zero_ignores_earlier_batches(self):
        alone, _ = self.refine(div_weight=0.0)
        remembered, _ = self.refine(div_weight=0.0, earlier=True)
        self.assertAllClose(alone.images(), remembered.images(), atol=1e-4)
        alone, _ = self.refine()
        remembered, _ = self.refine(earlier=True)
        self.assertGreater(np.abs(alone.images() - remembered.images()).max(), 1e-3)

    def test_jit_compile_refines_to_the_same_images(self):
        # XLA on TensorFlow, torch.compile on PyTorch: the same step, so the
        # same images up to float rounding.
        plain, _ = self.refine(earlier=True)
        compiled, _ = self.refine(earlier=True, jit_compile=True)
        self.assertTrue(compiled.jit_compile)
        self.assertAllClose(compiled.images(), plain.images(), atol=0.05, rtol=1e-3)

    def test_reset_gives_what_a_new_trainer_gives(self):
        config = synthesis_config(
            "sadag",
            **dict(_QUICK, refine_latent_lr=0.01, refine_generator_lr=0.01),
            neighbor="random",
        )
        # Room for twice the earlier samples: the zero rows must not count.
        reused = RefinementTrainer(self.pair, config, 4, *_SPACE, seed=0, memory_size=8)
        reused.set_state(self.state)
        reused.run(2, "first batch", verbose=0)
        reused.reset(3).set_state(self.state)
        reused.set_earlier(self.earlier)
        reused.run(3, "second batch", verbose=0)
        fresh, _ = self.refine(neighbor="random", earlier=True)
        # Round-off only (the zero rows change the matmul shapes): the
        # memory or the neighbor rule each move pixels by ~160 here.
        self.assertAllClose(reused.images(), fresh.images(), atol=0.05)
        with self.assertRaisesRegex(ValueError, "memory_size"):
            reused.set_earlier(tuple(np.concatenate([e] * 3) for e in self.earlier))


class BlockMatchingTest(TestCase):
    """`match="blocks"`: per-block gradients at each block's output."""

    def setUp(self):
        super().setUp()
        self.model = tiny_resnet()
        self.images = random_images(6)
        self.q0 = ks.quantize_model(self.model, ks.QuantConfig(3, 3))
        ks.calibrate_activations(self.q0, self.images)
        ks.set_mode(self.q0, "hard")

    def test_block_parts_are_autodiff_of_an_output_scale(self):
        pair = HeadPair(BatchNormProbe(self.model), self.q0, blocks=True)
        _, parts = pair.parts(self.images)
        self.assertLen(parts, 3)
        from keras_sagdq.graph.blocks import find_blocks

        _, blocks = find_blocks(self.q0)
        q_stream, f_stream, start = self.images, self.images, 0
        for block in blocks[:-1]:
            q_stream = block(q_stream)
            with ks.quantization_off(self.q0):
                f_stream = block(f_stream)
            channels = q_stream.shape[-1]
            scale = keras.Variable(np.ones(channels, "float32"))
            for i in range(len(self.images)):
                y_q, y_f = q_stream[i : i + 1], f_stream[i : i + 1]

                def loss(y_q=y_q, y_f=y_f, scale=scale):
                    return 0.5 * ops.sum(ops.square(scale.value * y_q - y_f))

                _, (grad,) = backend.value_and_grad(loss, [scale])
                grad = to_numpy(grad)
                expected = grad / np.linalg.norm(grad)
                got = to_numpy(parts[2])[i, start : start + channels]
                self.assertAllClose(got, expected, atol=1e-4, rtol=1e-3)
            start += channels
        self.assertEqual(start, parts[2].shape[-1])
        self.assertEqual(pair.widths[2], start)
        # `__call__` (the SAM direction's path) leaves the blocks out.
        self.assertLen(pair(self.images), 3)

    def test_refinement_with_blocks_runs_and_differs(self):
        probe = BatchNormProbe(self.model)
        pair = HeadPair(probe, self.q0, blocks=True)
        warmup = SynthesisTrainer(
            probe, synthesis_config("genie", steps=3, **_QUICK), 4, *_SPACE
        )
        warmup.run(3, "warm-up", verbose=0)
        earlier = pair.features(self.images[:2])
        images = {}
        for match in ("head", "blocks"):
            config = synthesis_config(
                "sadag", match=match, refine_latent_lr=0.01, **_QUICK
            )
            trainer = RefinementTrainer(
                HeadPair(probe, self.q0, blocks=match == "blocks"),
                config,
                4,
                *_SPACE,
                earlier=earlier if match == "blocks" else earlier[:2],
                seed=3,
            )
            trainer.set_state(warmup.state())
            trainer.run(3, match, verbose=0)
            for key in ("gm", "div", "cosine"):
                self.assertTrue(np.isfinite(trainer.history.history[key][-1]), key)
            images[match] = trainer.images()
        self.assertGreater(np.abs(images["head"] - images["blocks"]).max(), 1e-4)

    def test_unknown_match_is_named(self):
        with self.assertRaisesRegex(ValueError, "match='all'"):
            synthesis_config("sadag", match="all")
