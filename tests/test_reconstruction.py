import gc

import keras
import numpy as np

import keras_sagdq as ks
from keras_sagdq.graph.blocks import find_blocks
from keras_sagdq.layers import activation_quantizers
from keras_sagdq.layers import weight_layers
from keras_sagdq.reconstruction import BlockTrainer
from keras_sagdq.reconstruction import ReconstructionConfig
from keras_sagdq.reconstruction import _set_block_mode
from keras_sagdq.reconstruction import batch_indices
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import tiny_resnet
from tests.test_case import to_numpy


class BlockTrainerTest(TestCase):
    def test_one_block_loss_falls_and_hardens(self):
        model = tiny_resnet()
        x = random_images(64)
        qmodel = ks.quantize_model(model, ks.QuantConfig(2, 4))
        ks.calibrate_activations(qmodel, x)
        _, blocks = find_blocks(qmodel)
        stem, block = blocks[0], blocks[1]  # the strided residual block
        _set_block_mode(stem, "float", 0.0)
        inputs = to_numpy(stem(x))
        _set_block_mode(block, "float", 0.0)
        target = to_numpy(block(inputs))

        def error():
            return float(np.mean(np.sum((to_numpy(block(inputs)) - target) ** 2, -1)))

        def undecided():
            h = [
                to_numpy(ks.quantizers.rectified_sigmoid(layer.rounding_logits))
                for layer in block.weight_layers
            ]
            return np.mean(
                np.concatenate([((v > 0.01) & (v < 0.99)).ravel() for v in h])
            )

        _set_block_mode(block, "hard", 0.0)
        before, undecided_before = error(), undecided()
        # 600 steps at the paper rate (1e-3) move a logit by at most 0.6; a
        # higher rate lets the offsets reach 0 or 1 within a short test.
        config = ReconstructionConfig(steps=600, batch_size=16, rounding_lr=1e-2)
        _set_block_mode(block, "soft", config.qdrop_probability)
        history = BlockTrainer(block, config, seed=0).run(
            inputs, inputs, target, seed=0, verbose=0
        )
        self.assertEqual(len(history.history["loss"]), 1)
        _set_block_mode(block, "hard", 0.0)
        after = error()
        self.assertLess(after, 0.7 * before)
        # The regularizer has pushed most rounding offsets to 0 or 1, so soft
        # and hard rounding give nearly the same block.
        self.assertGreater(undecided_before, 0.9)
        self.assertLess(undecided(), 0.02)
        _set_block_mode(block, "soft", 0.0)
        self.assertLess(abs(error() - after), 0.1 * after + 1e-6)

    def test_weight_steps_stay_positive(self):
        model = tiny_resnet()
        x = random_images(32)
        qmodel = ks.quantize_model(model, ks.QuantConfig(4, 8))
        ks.calibrate_activations(qmodel, x)
        _, blocks = find_blocks(qmodel)
        block = blocks[1]
        _set_block_mode(block, "soft", 0.0)
        inputs = to_numpy(blocks[0](x))
        # Steps near 0.01-0.1 and an Adam rate of 0.5 per update: without
        # the floor, every step is pushed through zero within a few updates.
        target = np.zeros_like(to_numpy(block(inputs)))
        starts = [to_numpy(layer.weight_step) for layer in block.weight_layers]
        config = ReconstructionConfig(steps=20, batch_size=8, weight_step_lr=0.5)
        BlockTrainer(block, config, seed=0).run(inputs, inputs, target, verbose=0)
        for layer, start in zip(block.weight_layers, starts):
            step = to_numpy(layer.weight_step)
            self.assertTrue(np.all(step >= 0.01 * start * (1 - 1e-6)), layer.name)
            self.assertFalse(np.allclose(step, start), layer.name)


class BatchIndicesTest(TestCase):
    def test_shape_distinct_within_a_batch_and_seeded(self):
        config = ReconstructionConfig(steps=50, batch_size=8)
        indices = batch_indices(20, config, seed=3)
        self.assertEqual(indices.shape, (50, 8))
        self.assertEqual(indices.dtype, np.int32)
        self.assertTrue(all(len(set(row)) == 8 for row in indices))
        self.assertEqual(set(indices.ravel()), set(range(20)))
        self.assertTrue(np.array_equal(indices, batch_indices(20, config, seed=3)))
        self.assertFalse(np.array_equal(indices, batch_indices(20, config, seed=4)))
        # Fewer samples than the batch size: every batch holds all of them,
        # but an odd count is rounded down to an even batch, and one image
        # is drawn twice.
        self.assertEqual(batch_indices(6, config, seed=0).shape, (50, 6))
        self.assertEqual(batch_indices(5, config, seed=0).shape, (50, 4))
        self.assertEqual(set(batch_indices(1, config, seed=0).ravel()), {0})
        self.assertEqual(batch_indices(1, config, seed=0).shape, (50, 2))
        odd = ReconstructionConfig(steps=3, batch_size=7)
        self.assertEqual(batch_indices(20, odd, seed=0).shape, (3, 6))

    def test_an_odd_image_count_reconstructs_a_strided_shortcut(self):
        # oneDNN's filter gradient of `b1_short` (1x1, stride 2) aborted or
        # crashed the process on odd batches (7 images: batch 7).
        model = tiny_resnet()
        qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4))
        histories = ks.reconstruct(qmodel, model, random_images(7), steps=5, verbose=0)
        self.assertTrue(all(np.isfinite(h.history["loss"][-1]) for h in histories))


class ReconstructTest(TestCase):
    def test_reconstruct_beats_round_to_nearest(self):
        model = tiny_resnet()
        x = random_images(64)
        rtn = ks.quantize_model(model, ks.QuantConfig(2, 4))
        ks.calibrate_activations(rtn, x)
        qmodel = ks.quantize_model(model, ks.QuantConfig(2, 4))
        histories = ks.reconstruct(
            qmodel, model, x, steps=150, batch_size=16, verbose=0
        )
        self.assertEqual(len(histories), 4)
        reference = to_numpy(model(x))

        def mse(m):
            return float(np.mean((to_numpy(m(x)) - reference) ** 2))

        self.assertLess(mse(qmodel), 0.8 * mse(rtn))
        self.assertEqual({layer.mode for layer in weight_layers(qmodel)}, {"hard"})
        path = self.temp_dir() + "/r.keras"
        qmodel.save(path)
        self.assertAllClose(keras.models.load_model(path)(x), qmodel(x), atol=0)

    def test_same_seed_same_model_whatever_the_global_random_state(self):
        # QDrop masks, input mixing and batch order depend on `seed` only.
        model = tiny_resnet()
        x = random_images(16)
        outputs = []
        for global_seed in (1, 2):
            keras.utils.set_random_seed(global_seed)
            qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4))
            ks.reconstruct(qmodel, model, x, steps=5, batch_size=8, seed=3, verbose=0)
            self.assertEqual(
                {q.qdrop_probability for q in activation_quantizers(qmodel)}, {0.0}
            )
            outputs.append(to_numpy(qmodel(x)))
        self.assertAllClose(outputs[0], outputs[1], atol=1e-6)

    def test_repeated_calls_leave_nothing_behind(self):
        # Every call traces three optimizers per block; on TensorFlow, Keras'
        # single-replica all-reduce used to register a global custom gradient
        # per traced step, keeping each step's graph alive (~20 MB per call
        # of ResNet-20). After the first call, nothing may accumulate.
        model = tiny_resnet()
        x = random_images(16)
        qmodel = ks.quantize_model(model, ks.QuantConfig(4, 4))

        def live():
            gc.collect()
            names = [type(o).__name__ for o in gc.get_objects()]
            graphs = names.count("FuncGraph")
            registry = 0
            if keras.backend.backend() == "tensorflow":
                from tensorflow.python.framework import ops

                registry = len(ops._gradient_registry.list())
            return names.count("BlockTrainer"), graphs, registry

        ks.reconstruct(qmodel, model, x, steps=2, batch_size=8, verbose=0)
        first = live()
        self.assertEqual(first[0], 0)
        for _ in range(2):
            ks.reconstruct(qmodel, model, x, steps=2, batch_size=8, verbose=0)
        self.assertEqual(live(), first)

    def test_interrupted_run_resumes_to_the_same_model(self):
        model = tiny_resnet()
        x = random_images(16)

        def run(directory, callbacks=None):
            qmodel = ks.quantize_model(model, ks.QuantConfig(3, 4))
            histories = ks.reconstruct(
                qmodel,
                model,
                x,
                steps=6,
                batch_size=8,
                seed=1,
                verbose=0,
                directory=directory,
                callbacks=callbacks,
            )
            return qmodel, histories

        uninterrupted, _ = run(self.temp_dir() + "/a")

        class StopAtThirdBlock(keras.callbacks.Callback):
            calls = 0

            def on_train_begin(self, logs=None):
                StopAtThirdBlock.calls += 1
                if StopAtThirdBlock.calls == 3:
                    raise KeyboardInterrupt

        directory = self.temp_dir() + "/b"
        with self.assertRaises(KeyboardInterrupt):
            run(directory, [StopAtThirdBlock()])
        resumed, histories = run(directory)
        self.assertLen(histories, 2)  # blocks 3 and 4 of 4
        self.assertAllClose(resumed(x), uninterrupted(x), atol=1e-6)
        with self.assertRaisesRegex(
            ValueError, "other settings.*seed: stored 1, now 2"
        ):
            ks.reconstruct(
                ks.quantize_model(model, ks.QuantConfig(3, 4)),
                model,
                x,
                steps=6,
                batch_size=8,
                seed=2,
                verbose=0,
                directory=directory,
            )

    def test_errors(self):
        model = tiny_resnet()
        qmodel = ks.quantize_model(model)
        x = random_images(8)
        with self.assertRaisesRegex(ValueError, "profile='slow'"):
            ks.reconstruct(qmodel, model, x, profile="slow")
        with self.assertRaisesRegex(
            ValueError, "Unknown ReconstructionConfig field.*stepz=3"
        ):
            ks.reconstruct(qmodel, model, x, stepz=3)
        with self.assertRaisesRegex(ValueError, "steps=0"):
            ks.reconstruct(qmodel, model, x, steps=0)
        bad = x.copy()
        bad[0, 0, 0, 0] = np.nan
        with self.assertRaisesRegex(ValueError, "finite"):
            ks.reconstruct(qmodel, model, bad)
        with self.assertRaisesRegex(ValueError, "does not reproduce"):
            ks.reconstruct(qmodel, tiny_resnet(), x, steps=1)
