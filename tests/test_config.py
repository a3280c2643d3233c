import dataclasses

import numpy as np

import keras_sagdq as ks
from keras_sagdq.config import parse_overrides
from keras_sagdq.config import resolve_config
from keras_sagdq.reconstruction import PROFILES as RECONSTRUCTION_PRESETS
from keras_sagdq.synthesis import synthesis_config
from tests.test_case import TestCase
from tests.test_case import random_images
from tests.test_case import tiny_resnet


class QuantConfigTest(TestCase):
    def test_bits_out_of_range_name_the_argument(self):
        with self.assertRaisesRegex(ValueError, "weight_bits.*9"):
            ks.QuantConfig(weight_bits=9)
        with self.assertRaisesRegex(ValueError, "last_layer_activation_bits.*1"):
            ks.QuantConfig(last_layer_activation_bits=1)

    def test_positions(self):
        config = ks.QuantConfig(weight_bits=3, activation_bits=3)
        self.assertEqual(config.weight_bits_for("first"), 8)
        self.assertEqual(config.weight_bits_for("inner"), 3)
        self.assertIsNone(config.input_bits_for("first"))
        self.assertEqual(config.input_bits_for("last"), 8)
        self.assertEqual(config.input_bits_for("inner"), 3)

    def test_skip_layers_must_be_a_list(self):
        with self.assertRaisesRegex(TypeError, "skip_layers"):
            ks.QuantConfig(skip_layers="conv1")


class ResolveConfigTest(TestCase):
    def test_presets_are_configs_and_overrides_apply(self):
        config = resolve_config(None, "paper", RECONSTRUCTION_PRESETS, {"steps": 7})
        self.assertIsInstance(config, ks.ReconstructionConfig)
        self.assertEqual(config.steps, 7)
        self.assertEqual(
            resolve_config(None, None, RECONSTRUCTION_PRESETS, {}).steps, 1000
        )

    def test_a_given_config_is_used_and_not_modified(self):
        given = ks.ReconstructionConfig(steps=11, batch_size=4)
        config = resolve_config(given, None, RECONSTRUCTION_PRESETS, {"batch_size": 8})
        self.assertEqual((config.steps, config.batch_size), (11, 8))
        self.assertEqual(given.batch_size, 4)

    def test_errors_name_the_config(self):
        with self.assertRaisesRegex(
            ValueError, "Unknown ReconstructionConfig field.*'stepz'"
        ):
            resolve_config(None, None, RECONSTRUCTION_PRESETS, {"stepz": 1})
        with self.assertRaisesRegex(TypeError, "ReconstructionConfig.*SynthesisConfig"):
            resolve_config(ks.SynthesisConfig(), None, RECONSTRUCTION_PRESETS, {})
        with self.assertRaisesRegex(ValueError, "not both"):
            resolve_config(
                ks.ReconstructionConfig(), "fast", RECONSTRUCTION_PRESETS, {}
            )
        with self.assertRaisesRegex(ValueError, "profile='slow'"):
            resolve_config(None, "slow", RECONSTRUCTION_PRESETS, {})
        with self.assertRaisesRegex(ValueError, "Unknown SynthesisConfig field"):
            synthesis_config("genie", "fast", stepz=1)


class StepsAcceptConfigsTest(TestCase):
    def test_synthesize_and_reconstruct_take_config_objects(self):
        model = tiny_resnet()
        config = dataclasses.replace(
            synthesis_config("genie"), steps=2, batch_size=4, latent_dim=8
        )
        images = ks.synthesize(
            model, 4, config=config, input_mean=127.5, input_std=64.0, verbose=0
        )
        self.assertEqual(images.shape, (4, 12, 12, 3))
        self.assertTrue(np.all(np.isfinite(images)))
        qmodel = ks.quantize_model(model)
        histories = ks.reconstruct(
            qmodel,
            model,
            random_images(8),
            config=ks.ReconstructionConfig(steps=3),
            batch_size=4,
            verbose=0,
        )
        self.assertEqual({h.params["steps"] for h in histories}, {3})

    def test_gaussian_refuses_a_config(self):
        with self.assertRaisesRegex(ValueError, "gaussian.*config"):
            ks.synthesize(
                tiny_resnet(), 4, method="gaussian", config=ks.SynthesisConfig()
            )


class ParseOverridesTest(TestCase):
    def test_types_and_errors(self):
        self.assertEqual(
            parse_overrides(
                ["steps=500", "rho=-2.5", "swing=False", "neighbor=random"]
            ),
            {"steps": 500, "rho": -2.5, "swing": False, "neighbor": "random"},
        )
        self.assertEqual(parse_overrides([]), {})
        with self.assertRaisesRegex(ValueError, "key=value.*'steps'"):
            parse_overrides(["steps"])
        with self.assertRaisesRegex(ValueError, "key=value.*'=3'"):
            parse_overrides(["=3"])
