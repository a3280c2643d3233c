import json
import os
import subprocess
import sys
from unittest import mock

import numpy as np

import keras_sagdq as ks
from keras_sagdq.synthesis import Shard
from keras_sagdq.synthesis.sharding import resolve_shard
from tests.test_case import TestCase
from tests.test_case import tiny_resnet

# Three batches (4, 4, 2 images): shard 0 of 2 makes batches 0 and 2.
_RUN = dict(
    num_samples=10, steps=3, seed=7, batch_size=4, latent_dim=16, input_space_steps=10
)

_SHARD_PROCESS = """
import sys
import keras
import numpy as np
import keras_sagdq as ks
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
images = ks.synthesize(model, directory=sys.argv[2], shard=sys.argv[3], verbose=0,
                       **{RUN})
np.save(sys.argv[4], images)
"""


class ShardTest(TestCase):
    def test_parse_own_and_resolve(self):
        shard = Shard.parse("1/3")
        self.assertEqual((shard.index, shard.count), (1, 3))
        self.assertEqual([i for i in range(7) if shard.owns(i)], [1, 4])
        self.assertEqual(resolve_shard((2, 3)), Shard(2, 3))
        self.assertEqual(resolve_shard("0/1"), Shard())
        for bad in ("1-3", "a/b", (3, 3), (-1, 2), (0, 0), 2):
            with self.assertRaisesRegex(ValueError, "shard|index|count"):
                resolve_shard(bad)

    def test_from_the_launchers_environment(self):
        self.assertEqual(Shard.from_environment({}), Shard())
        torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
        self.assertEqual(Shard.from_environment(torchrun), Shard(3, 4))
        tf_config = {
            "cluster": {"worker": ["a:1", "b:1"]},
            "task": {"type": "worker", "index": 1},
        }
        self.assertEqual(
            Shard.from_environment({"TF_CONFIG": json.dumps(tf_config)}), Shard(1, 2)
        )
        with self.assertRaisesRegex(ValueError, "WORLD_SIZE='two'"):
            Shard.from_environment({"RANK": "0", "WORLD_SIZE": "two"})
        with self.assertRaisesRegex(ValueError, "TF_CONFIG"):
            Shard.from_environment({"TF_CONFIG": "{}"})


class ShardedSynthesisTest(TestCase):
    def test_two_processes_make_the_single_process_images(self):
        folder = self.temp_dir()
        model = tiny_resnet()
        model_path = os.path.join(folder, "model.keras")
        model.save(model_path)
        single = ks.synthesize(
            model, directory=os.path.join(folder, "single"), verbose=0, **_RUN
        )
        shared = os.path.join(folder, "shared")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=root)
        script = _SHARD_PROCESS.replace("{RUN}", repr(_RUN))
        outputs = [os.path.join(folder, f"shard{k}.npy") for k in (0, 1)]
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", script, model_path, shared, f"{k}/2", out],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for k, out in enumerate(outputs)
        ]
        for process in processes:
            log, _ = process.communicate(timeout=600)
            self.assertEqual(process.returncode, 0, msg=log.decode()[-3000:])
        for out in outputs:
            np.testing.assert_array_equal(np.load(out), single)
        self.assertEqual(
            sorted(f for f in os.listdir(shared) if f.endswith(".npy")),
            [f"batch_{i:05d}.npy" for i in range(3)],
        )

    def test_a_shard_waits_for_the_others_then_gives_up(self):
        model = tiny_resnet()
        directory = self.temp_dir()
        # Alone, shard 1 has no input space to start from.
        alone = Shard(1, 2, timeout_s=0.2, poll_s=0.05)
        with self.assertRaisesRegex(TimeoutError, "1/2 .*the input space"):
            ks.synthesize(model, directory=directory, shard=alone, verbose=0, **_RUN)
        # Shard 0 makes batches 0 and 2, then waits for batch 1.
        first = Shard(0, 2, timeout_s=0.2, poll_s=0.05)
        with self.assertRaisesRegex(TimeoutError, "batch 1 from shard 1"):
            ks.synthesize(model, directory=directory, shard=first, verbose=0, **_RUN)
        self.assertEqual(
            sorted(f for f in os.listdir(directory) if f.endswith(".npy")),
            ["batch_00000.npy", "batch_00002.npy"],
        )

    def test_a_split_run_needs_a_directory(self):
        model = tiny_resnet()
        with self.assertRaisesRegex(ValueError, "Shard 1/2.*directory=None"):
            ks.synthesize(model, shard="1/2", verbose=0, **_RUN)
        # torchrun's variables split a run too.
        with mock.patch.dict(os.environ, {"RANK": "0", "WORLD_SIZE": "2"}):
            with self.assertRaisesRegex(ValueError, "Shard 0/2"):
                ks.synthesize(model, verbose=0, **_RUN)
        # Gaussian noise is made whole by every process.
        noise = ks.synthesize(
            model, 4, method="gaussian", shard="1/2", input_mean=0.0, input_std=1.0
        )
        self.assertEqual(noise.shape, (4, 12, 12, 3))
