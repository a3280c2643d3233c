import numpy as np

from keras_sagdq.synthesis.losses import bn_statistics_loss
from keras_sagdq.synthesis.losses import input_prior_loss
from tests.test_case import TestCase
from tests.test_case import to_numpy


class BnStatisticsLossTest(TestCase):
    def test_zero_when_statistics_match(self):
        rng = np.random.default_rng(0)
        a = rng.standard_normal((16, 5, 5, 4)).astype("float32")
        mean = a.mean(axis=(0, 1, 2))
        std = np.sqrt(a.var(axis=(0, 1, 2)) + 1e-5)
        self.assertAllClose(bn_statistics_loss([a], [mean], [std]), 0.0, atol=1e-6)

    def test_hand_computed_value(self):
        # Channel 0 all ones: mean 1, std sqrt(eps); channel 1: +-2, mean 0, std ~2.
        a = np.zeros((2, 1, 2, 2), "float32")
        a[..., 0] = 1.0
        a[0, 0, :, 1], a[1, 0, :, 1] = 2.0, -2.0
        mean, std = np.zeros(2, "float32"), np.ones(2, "float32")
        expected = (
            (1 - 0) ** 2 + (np.sqrt(1e-5) - 1) ** 2 + 0 + (np.sqrt(4 + 1e-5) - 1) ** 2
        ) / 2
        self.assertAllClose(bn_statistics_loss([a], [mean], [std]), expected, rtol=1e-5)
        # Two layers add up.
        self.assertAllClose(
            bn_statistics_loss([a, a], [mean] * 2, [std] * 2), 2 * expected, rtol=1e-5
        )

    def test_per_sample_statistics(self):
        # Each image constant: per image std is ~0, though over the batch it is 1.
        a = np.concatenate(
            [np.full((1, 3, 3, 1), 1.0), np.full((1, 3, 3, 1), -1.0)]
        ).astype("float32")
        mean, std = np.zeros(1, "float32"), np.ones(1, "float32")
        batch = to_numpy(bn_statistics_loss([a], [mean], [std]))
        per_sample = to_numpy(bn_statistics_loss([a], [mean], [std], per_sample=True))
        self.assertAllClose(batch, (np.sqrt(1 + 1e-5) - 1) ** 2, atol=1e-6)
        self.assertAllClose(per_sample, 1.0 + (np.sqrt(1e-5) - 1) ** 2, rtol=1e-5)

    def test_input_prior(self):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((4, 6, 6, 3)).astype("float32")
        x = (x - x.mean(axis=(1, 2), keepdims=True)) / np.sqrt(
            x.var(axis=(1, 2), keepdims=True) + 1e-5
        )
        self.assertAllClose(input_prior_loss(x), 0.0, atol=1e-5)
        # Shifting every pixel by 2 adds 2^2 per channel, averaged over channels.
        self.assertAllClose(input_prior_loss(x + 2.0), 4.0, atol=1e-4)


class BlockMatchingLossTest(TestCase):
    def test_the_cosine_is_the_mean_over_head_and_blocks(self):
        from keras_sagdq.synthesis.losses import gradient_diversity_loss
        from keras_sagdq.synthesis.losses import gradient_matching_loss

        h = np.float32([[1, 0], [0, 1]])
        r = np.float32([[1, 0], [1, 0]])
        # Two blocks of width 2, unit per block: sample 0's neighbor agrees
        # on block 1 (cos 1) and is orthogonal on block 2 (cos 0); sample
        # 1's agrees on both.
        b = np.float32([[1, 0, 0, 1], [0, 1, 0, 1]])
        b_neighbor = np.float32([[1, 0, 1, 0], [0, 1, 0, 1]])
        # Head cosines: 1 for both samples (neighbors are the samples).
        loss = gradient_matching_loss(h, r, h, r, b, b_neighbor, block_count=2)
        # cos_0 = (1 + 1 + 0) / 3, cos_1 = (1 + 1 + 1) / 3.
        self.assertAllClose(loss, 1.0 - (2 / 3 + 1) / 2, atol=1e-6)
        head_only = gradient_matching_loss(h, r, h, r)
        self.assertAllClose(head_only, 0.0, atol=1e-6)
        # Diversity between the two samples: head cos 0 * 1 = 0; blocks:
        # block 1 orthogonal, block 2 the same: |(0 + 0 + 1) / 3|.
        diversity = gradient_diversity_loss(h, r, blocks=b, block_count=2)
        self.assertAllClose(diversity, 1 / 3, atol=1e-6)
